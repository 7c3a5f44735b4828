package io.jvirtio.cli.conform;

import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.vhostuser.VhostUser;

import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

/**
 * Grades a vhost-user back-end: each check on connections of its own, one line per check as it finishes,
 * and after every hostile check a fresh connection that must still be served. A check that throws is a
 * FAIL with the reason, never the end of the run.
 */
public final class Grader {
    private final Path socket;
    private final DeviceType device;
    private final PrintStream out;

    public Grader(Path socket, DeviceType device, PrintStream out) {
        this.socket = socket;
        this.device = device;
        this.out = out;
    }

    static List<Check> checks() {
        return Stream.of(ProtocolChecks.all(), RingChecks.all(), DeviceChecks.all()).flatMap(List::stream).toList();
    }

    /** What the back-end offers, read on a first connection. */
    static Target target(Path socket, DeviceType device) throws Exception {
        try (Session s = Session.open(socket)) {
            long features = s.getU64(VhostUser.GET_FEATURES);
            long protocol = (features & VhostUser.F_PROTOCOL_FEATURES) != 0 ? s.getU64(VhostUser.GET_PROTOCOL_FEATURES) : 0;
            return new Target(socket, device, features, protocol);
        }
    }

    /** True when a fresh connection is answered: the back-end survived whatever came before. */
    static String alive(Path socket) {
        try (Session s = Session.open(socket)) {
            s.getU64(VhostUser.GET_FEATURES);
            return null;
        } catch (Exception e) {
            return "back-end no longer serves a fresh connection: " + e.getMessage();
        }
    }

    public List<Result> run() throws Exception {
        Target t = target(socket, device);
        List<Result> results = new ArrayList<>();
        for (Check c : checks()) {
            Result r;
            if (!c.appliesTo(device)) {
                r = Result.skip(c.id(), "not for " + device.name().toLowerCase());
            } else {
                try {
                    r = c.body().run(t, c.id());
                } catch (Exception | AssertionError e) {
                    r = Result.fail(c.id(), e.toString());
                }
                if (c.hostile()) {
                    String dead = alive(socket);
                    if (dead != null) {
                        r = Result.fail(c.id(), r.detail() + "; then " + dead);
                    }
                }
            }
            results.add(r);
            out.printf("%-4s %-26s %s%n", r.status(), r.id(), r.detail());
        }
        return results;
    }

    /** The closing line: {@code conform: N passed, N failed, N skipped}. */
    public static String summary(List<Result> results) {
        return String.format("conform: %d passed, %d failed, %d skipped", count(results, Result.Status.PASS),
                count(results, Result.Status.FAIL), count(results, Result.Status.SKIP));
    }

    static long count(List<Result> results, Result.Status status) {
        return results.stream().filter(r -> r.status() == status).count();
    }

    /** The results as JSON, for CI. */
    public static String json(Path socket, DeviceType device, List<Result> results) {
        StringBuilder sb = new StringBuilder("{\n  \"socket\": ").append(quote(socket.toString()))
                .append(",\n  \"device\": ").append(quote(device.name().toLowerCase())).append(",\n  \"results\": [\n");
        for (int i = 0; i < results.size(); i++) {
            Result r = results.get(i);
            sb.append("    {\"id\": ").append(quote(r.id())).append(", \"status\": ").append(quote(r.status().name()))
                    .append(", \"detail\": ").append(quote(r.detail())).append(i + 1 < results.size() ? "},\n" : "}\n");
        }
        return sb.append("  ],\n  \"passed\": ").append(count(results, Result.Status.PASS)).append(", \"failed\": ")
                .append(count(results, Result.Status.FAIL)).append(", \"skipped\": ")
                .append(count(results, Result.Status.SKIP)).append("\n}\n").toString();
    }

    static String quote(String s) {
        StringBuilder sb = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                case '\n' -> sb.append("\\n");
                default -> {
                    if (c < 0x20) {
                        sb.append(String.format("\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
                }
            }
        }
        return sb.append('"').toString();
    }
}
