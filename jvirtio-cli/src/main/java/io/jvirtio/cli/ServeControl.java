package io.jvirtio.cli;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * What {@code jvirtio serve}'s control socket answers: {@code stats}, {@code connections}, {@code resize}
 * (blk), {@code export-add}, {@code export-del}, {@code drain} and {@code log-level}.
 */
final class ServeControl implements ControlSocket.Handler {
    private final Map<String, Export> exports;
    private final Shared shared;
    private final Runnable drain;

    /** @param exports the process's exports by socket path; guarded by itself */
    ServeControl(Map<String, Export> exports, Shared shared, Runnable drain) {
        this.exports = exports;
        this.shared = shared;
        this.drain = drain;
    }

    @Override
    public Map<String, Object> handle(Map<String, String> request) throws Exception {
        String command = request.get("command");
        if (command == null) {
            throw new IllegalArgumentException("no \"command\" in the request");
        }
        Map<String, Object> out = new LinkedHashMap<>();
        switch (command) {
            case "connections" -> {
                synchronized (exports) {
                    out.put("connections", exports.values().stream().mapToLong(e -> e.backend.connections()).sum());
                    out.put("open", exports.values().stream().mapToInt(e -> e.backend.activeSessions()).sum());
                }
            }
            case "stats" -> {
                List<Object> list = new ArrayList<>();
                synchronized (exports) {
                    for (Export e : exports.values()) {
                        list.add(e.stats());
                    }
                }
                out.put("exports", list);
            }
            case "resize" -> {
                String size = request.get("size");
                if (size == null) {
                    throw new IllegalArgumentException("resize needs \"size\" (bytes, or with k, m, g, t)");
                }
                out.putAll(export(request.get("socket"), "blk").resize(parseSize(size),
                        Boolean.parseBoolean(request.getOrDefault("shrink", "false"))));
            }
            case "export-add" -> {
                String spec = request.get("spec");
                if (spec == null) {
                    throw new IllegalArgumentException("export-add needs \"spec\": TYPE,socket=PATH[,key=value...]");
                }
                Map<String, String> parsed = Export.parse(spec);
                synchronized (exports) {
                    String path = parsed.getOrDefault("socket", parsed.get("connect"));
                    if (path != null && exports.containsKey(path)) {
                        throw new IllegalArgumentException("an export on " + path + " exists already");
                    }
                    Export e = Export.open(parsed, shared);
                    exports.put(e.socket, e);
                    out.put("socket", e.socket);
                    out.put("serving", e.describe());
                }
            }
            case "export-del" -> {
                String socket = request.get("socket");
                if (socket == null) {
                    throw new IllegalArgumentException("export-del needs \"socket\"");
                }
                Export e;
                synchronized (exports) {
                    e = exports.remove(socket);
                }
                if (e == null) {
                    throw new IllegalArgumentException("no export on " + socket);
                }
                e.close(); // its guests' sessions end; their requests in flight finish first
                out.put("removed", socket);
            }
            case "drain" -> {
                out.put("draining", true);
                drain.run();
            }
            case "log-level" -> {
                String level = request.get("level");
                if (level == null) {
                    throw new IllegalArgumentException("log-level needs \"level\" (error, warning, info, debug)");
                }
                java.util.logging.Level l = switch (level.toLowerCase(Locale.ROOT)) {
                    case "error" -> java.util.logging.Level.SEVERE;
                    case "warning" -> java.util.logging.Level.WARNING;
                    case "info" -> java.util.logging.Level.INFO;
                    case "debug" -> java.util.logging.Level.FINE;
                    default -> throw new IllegalArgumentException("log level '" + level + "' is not error, warning, info or debug");
                };
                java.util.logging.Logger root = java.util.logging.Logger.getLogger("");
                root.setLevel(l);
                for (java.util.logging.Handler h : root.getHandlers()) {
                    h.setLevel(l);
                }
                out.put("level", level.toLowerCase(Locale.ROOT));
            }
            default -> throw new IllegalArgumentException("unknown command '" + command
                    + "' (stats, connections, resize, export-add, export-del, drain, log-level)");
        }
        return out;
    }

    /** The export on {@code socket}, or the only one of {@code type} when no socket is named. */
    private Export export(String socket, String type) {
        synchronized (exports) {
            if (socket != null) {
                Export e = exports.get(socket);
                if (e == null) {
                    throw new IllegalArgumentException("no export on " + socket);
                }
                return e;
            }
            List<Export> of = exports.values().stream().filter(e -> e.type.equals(type)).toList();
            if (of.size() != 1) {
                throw new IllegalArgumentException("name the export: socket=PATH (" + of.size() + " " + type + " exports)");
            }
            return of.getFirst();
        }
    }

    /** A byte count: a number, or with a k, m, g or t suffix (powers of 1024). */
    static long parseBytes(String s) {
        String t = s.trim().toLowerCase(Locale.ROOT);
        long unit = 1;
        int i = "kmgt".indexOf(t.isEmpty() ? ' ' : t.charAt(t.length() - 1));
        if (i >= 0) {
            unit = 1L << (10 * (i + 1));
            t = t.substring(0, t.length() - 1);
        }
        try {
            return Math.multiplyExact(Long.parseLong(t), unit);
        } catch (NumberFormatException | ArithmeticException e) {
            throw new IllegalArgumentException("'" + s + "' is not a byte count (like 4096, 4k, 512m, 20g)");
        }
    }

    /** A disk size: {@link #parseBytes}, positive and a multiple of 512. */
    static long parseSize(String s) {
        long n;
        try {
            n = parseBytes(s);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("size " + e.getMessage());
        }
        if (n <= 0 || n % 512 != 0) {
            throw new IllegalArgumentException("size '" + s + "' is not a positive multiple of 512 bytes");
        }
        return n;
    }
}
