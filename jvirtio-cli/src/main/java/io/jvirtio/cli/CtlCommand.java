package io.jvirtio.cli;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** {@code jvirtio ctl PATH COMMAND [key=value …] [--json]}: the client of {@code serve --control PATH}. */
final class CtlCommand implements Command {
    @Override
    public String name() {
        return "ctl";
    }

    @Override
    public String summary() {
        return "talk to a running jvirtio serve through its control socket (stats, resize, drain, ...)";
    }

    @Override
    public String usage() {
        return """
                Usage: jvirtio ctl CONTROL-SOCKET COMMAND [KEY=VALUE ...] [--json]

                Sends one request to a `jvirtio serve --control CONTROL-SOCKET` and prints the answer (as
                "key: value" lines; --json prints the JSON line itself).

                Commands:
                  stats                         per export: connections, messages; blk: capacity, back-end,
                                                and per device reads, writes, flushes, bytes, errors, write
                                                cache
                  connections                   connections so far and open now
                  export-add spec=TYPE,socket=PATH[,KEY=VALUE...]
                                                serve one more device (the keys of serve --export)
                  export-del socket=PATH        stop serving one (its guests' sessions end)
                  resize size=SIZE [socket=PATH] [shrink=true]
                                                blk: grow the disk (SIZE in bytes or with k, m, g, t); each
                                                guest sees the new capacity at once. Shrinking cuts off the
                                                disk's tail and needs shrink=true: only when no guest uses it
                  drain                         stop accepting, finish what is in flight, flush, exit
                  log-level level=LEVEL         error, warning, info or debug, from now on

                Example:
                  jvirtio serve blk --socket /tmp/blk.sock --image disk.img --control /tmp/blk.ctl &
                  jvirtio ctl /tmp/blk.ctl stats
                  jvirtio ctl /tmp/blk.ctl resize size=20g
                """;
    }

    @Override
    public int run(List<String> args, PrintStream out, PrintStream err) throws Exception {
        if (args.isEmpty() || args.getFirst().equals("--help") || args.getFirst().equals("-h")) {
            if (args.isEmpty()) {
                throw new UsageException("which control socket, and which command?");
            }
            out.print(usage());
            return 0;
        }
        if (args.size() < 2) {
            throw new UsageException("which command? stats, connections, resize, drain or log-level");
        }
        Path socket = Path.of(args.get(0));
        Map<String, Object> request = new LinkedHashMap<>();
        request.put("command", args.get(1));
        boolean json = false;
        for (String a : args.subList(2, args.size())) {
            if (a.equals("--json")) {
                json = true;
                continue;
            }
            int eq = a.indexOf('=');
            if (eq <= 0) {
                throw new UsageException("argument '" + a + "' is not KEY=VALUE");
            }
            request.put(a.substring(0, eq), a.substring(eq + 1));
        }
        String answer;
        try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            ch.connect(UnixDomainSocketAddress.of(socket));
            ch.write(ByteBuffer.wrap((Json.write(request) + "\n").getBytes(StandardCharsets.UTF_8)));
            answer = new BufferedReader(new InputStreamReader(Channels.newInputStream(ch), StandardCharsets.UTF_8))
                    .readLine();
        } catch (IOException e) {
            throw new UsageException("control socket " + socket + ": " + e.getMessage());
        }
        if (answer == null) {
            err.println("jvirtio ctl: " + socket + " closed the connection without an answer");
            return 1;
        }
        boolean ok = answer.startsWith("{\"ok\":true");
        if (json) {
            out.println(answer);
        } else {
            out.print(pretty(answer));
        }
        return ok ? 0 : 1;
    }

    /** The answer's JSON as indented "key: value" lines (lists and objects nested). */
    static String pretty(String jsonLine) {
        StringBuilder b = new StringBuilder();
        int depth = 0;
        StringBuilder token = new StringBuilder();
        boolean inString = false;
        for (int i = 0; i < jsonLine.length(); i++) {
            char c = jsonLine.charAt(i);
            if (inString) {
                if (c == '\\' && i + 1 < jsonLine.length()) {
                    token.append(jsonLine.charAt(++i));
                } else if (c == '"') {
                    inString = false;
                } else {
                    token.append(c);
                }
                continue;
            }
            switch (c) {
                case '"' -> inString = true;
                case ':' -> {
                    b.append("  ".repeat(Math.max(0, depth - 1))).append(token).append(':');
                    token.setLength(0);
                }
                case '{', '[' -> {
                    if (depth > 0 && !b.isEmpty() && b.charAt(b.length() - 1) != '\n') {
                        b.append('\n');
                    }
                    depth++;
                }
                case '}', ']', ',' -> {
                    if (!token.isEmpty()) {
                        b.append(' ').append(token).append('\n');
                        token.setLength(0);
                    }
                    if (c != ',') {
                        depth--;
                    }
                }
                default -> token.append(c);
            }
        }
        return b.toString();
    }
}
