package io.jvirtio.cli;

import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.BlockBackend;
import io.jvirtio.vhostuser.VhostUserBackend;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * What {@code jvirtio serve}'s control socket answers: {@code stats}, {@code connections}, {@code resize}
 * (blk), {@code drain} and {@code log-level}.
 */
final class ServeControl implements ControlSocket.Handler {
    private final String type;
    private final VhostUserBackend backend;
    private final List<BlkDevice> disks;
    private final BlockBackend disk;
    private final Runnable drain;

    ServeControl(String type, VhostUserBackend backend, List<BlkDevice> disks, BlockBackend disk, Runnable drain) {
        this.type = type;
        this.backend = backend;
        this.disks = disks;
        this.disk = disk;
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
                out.put("connections", backend.connections());
                out.put("open", backend.activeSessions());
            }
            case "stats" -> {
                out.put("type", type);
                out.put("connections", backend.connections());
                out.put("open", backend.activeSessions());
                out.put("messages", backend.messages());
                if (disk != null) {
                    out.put("capacity", disk.capacity());
                    out.put("backend", disk.describe());
                    List<Object> devices = new ArrayList<>();
                    for (BlkDevice d : disks) {
                        if (d.isClosed()) {
                            continue;
                        }
                        Map<String, Object> m = new LinkedHashMap<>();
                        m.put("reads", d.reads.sum());
                        m.put("writes", d.writes.sum());
                        m.put("flushes", d.flushes.sum());
                        m.put("bytes_read", d.bytesRead.sum());
                        m.put("bytes_written", d.bytesWritten.sum());
                        m.put("errors", d.errors.sum());
                        m.put("write_cache", d.writeCacheEnabled());
                        devices.add(m);
                    }
                    out.put("devices", devices);
                }
            }
            case "resize" -> {
                if (disk == null) {
                    throw new IllegalArgumentException("resize: this process serves " + type + ", not blk");
                }
                String size = request.get("size");
                if (size == null) {
                    throw new IllegalArgumentException("resize needs \"size\" (bytes, or with k, m, g, t)");
                }
                long bytes = parseSize(size);
                boolean shrink = Boolean.parseBoolean(request.getOrDefault("shrink", "false"));
                long now = disk.capacity();
                if (bytes < now && !shrink) {
                    throw new IllegalArgumentException("resize from " + now + " to " + bytes
                            + " bytes shrinks the disk and cuts off data the guest may use; add shrink=true if it does not");
                }
                long size2 = disk.resize(bytes);
                for (BlkDevice d : disks) {
                    if (!d.isClosed()) {
                        d.capacityChanged(); // each connected guest gets a configuration change
                    }
                }
                out.put("capacity", size2);
                out.put("previous", now);
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
                    + "' (stats, connections, resize, drain, log-level)");
        }
        return out;
    }

    /** Bytes, or with a k/m/g/t suffix (powers of 1024); a multiple of 512. */
    static long parseSize(String s) {
        String t = s.trim().toLowerCase(Locale.ROOT);
        long unit = 1;
        int i = "kmgt".indexOf(t.isEmpty() ? ' ' : t.charAt(t.length() - 1));
        if (i >= 0) {
            unit = 1L << (10 * (i + 1));
            t = t.substring(0, t.length() - 1);
        }
        long n;
        try {
            n = Math.multiplyExact(Long.parseLong(t), unit);
        } catch (NumberFormatException | ArithmeticException e) {
            throw new IllegalArgumentException("size '" + s + "' is not a byte count (like 1073741824, 512m, 20g)");
        }
        if (n <= 0 || n % 512 != 0) {
            throw new IllegalArgumentException("size '" + s + "' is not a positive multiple of 512 bytes");
        }
        return n;
    }
}
