package io.jvirtio.cli;

import io.jvirtio.cli.conform.Fuzzer;
import io.jvirtio.cli.conform.Grader;
import io.jvirtio.cli.conform.Result;
import io.jvirtio.core.spec.DeviceType;

import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/** {@code jvirtio conform}: grades any vhost-user back-end against the protocol and the device's rules. */
final class ConformCommand implements Command {
    @Override
    public String name() {
        return "conform";
    }

    @Override
    public String summary() {
        return "grade a vhost-user back-end (any implementation) against vhost-user.rst and VIRTIO 1.2";
    }

    @Override
    public String usage() {
        return """
                Usage: jvirtio conform --socket PATH --device blk|net|console|rng [--json FILE]
                                       [--fuzz N [--seed S] [--pid PID]]

                Connects to the vhost-user back-end listening on PATH as a front-end and runs each check on
                connections of its own: the protocol's rules (features, REPLY_ACK, config, memory tables, ring
                start/stop), the device's behaviour through real requests, and hostile messages and rings —
                after each hostile one the back-end must still serve a fresh connection. One line per check
                (PASS, FAIL or SKIP, the id, what happened), then a summary; exit 0 only if nothing failed.

                Options:  --socket PATH   the back-end's socket (required)
                          --device TYPE   what it serves: blk, net, console or rng (required)
                          --json FILE     also write the results as JSON
                          --fuzz N        after the checks, N seeded fuzz sessions (malformed messages and
                                          rings); each failure is printed with the seed that replays it
                          --seed S        the fuzzer's first seed (default 1)
                          --pid PID       the back-end's process: also check after each fuzz session that its
                                          descriptors and guest-memory mappings are back to where they were and
                                          its RSS stays bounded (needs permission to read /proc/PID)
                          -h, --help      this text

                Example:
                  jvirtio serve blk --socket /tmp/blk.sock --image disk.img &
                  jvirtio conform --socket /tmp/blk.sock --device blk --fuzz 200 --pid $!
                """;
    }

    static DeviceType device(String name) throws UsageException {
        return switch (name == null ? "" : name) {
            case "blk" -> DeviceType.BLOCK;
            case "net" -> DeviceType.NET;
            case "console" -> DeviceType.CONSOLE;
            case "rng" -> DeviceType.ENTROPY;
            default -> throw new UsageException("--device " + name + ": expected blk, net, console or rng");
        };
    }

    @Override
    public int run(List<String> args, PrintStream out, PrintStream err) throws Exception {
        Options o = new Options(args, Set.of("--socket", "--device", "--json", "--fuzz", "--seed", "--pid"), Set.of());
        if (o.help()) {
            out.print(usage());
            return 0;
        }
        if (o.value("--socket") == null) {
            throw new UsageException("--socket PATH is required");
        }
        Path socket = Path.of(o.value("--socket"));
        if (!Files.exists(socket)) {
            throw new UsageException("--socket " + socket + ": no such socket");
        }
        if (o.value("--device") == null) {
            throw new UsageException("--device blk|net|console|rng is required");
        }
        DeviceType device = device(o.value("--device"));
        int fuzz = (int) o.number("--fuzz", 0, 0, 10_000_000);
        long seed = o.number("--seed", 1, Long.MIN_VALUE, Long.MAX_VALUE);
        long pid = o.number("--pid", -1, 1, Integer.MAX_VALUE);
        if (pid > 0 && !Files.isDirectory(Path.of("/proc/" + pid))) {
            throw new UsageException("--pid " + pid + ": no such process");
        }

        List<Result> results = new ArrayList<>(new Grader(socket, device, out).run());
        if (fuzz > 0) {
            List<Result> failures = new Fuzzer(socket, device, pid, out).run(fuzz, seed);
            results.addAll(failures);
            if (failures.isEmpty()) {
                results.add(new Result("fuzz", Result.Status.PASS, fuzz + " sessions from seed " + seed));
                out.printf("%-4s %-26s %s%n", "PASS", "fuzz", fuzz + " sessions from seed " + seed);
            }
        }
        if (o.value("--json") != null) {
            Files.writeString(Path.of(o.value("--json")), Grader.json(socket, device, results));
        }
        out.println(Grader.summary(results));
        return results.stream().anyMatch(r -> r.status() == Result.Status.FAIL) ? 1 : 0;
    }
}
