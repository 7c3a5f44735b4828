package io.jvirtio.cli;

import java.io.PrintStream;
import java.util.List;

/** {@code jvirtio <command> [options]}. */
public final class Main {
    private static final List<Command> COMMANDS = List.of(new DemoCommand(), new ServeCommand(), new RingCommand(),
            new ConformCommand(), new BenchCommand(), new CtlCommand());

    private Main() {
    }

    /**
     * One line per log record — time, level, message (which names its export or connection, e.g.
     * {@code vhost-user#3:}) — instead of java.util.logging's two-line default; a logging configuration
     * of the operator's own ({@code -Djava.util.logging.config.file}) wins.
     */
    static final String LOG_FORMAT = "%1$tF %1$tT.%1$tL %4$-7s %5$s%6$s%n";

    public static void main(String[] args) {
        if (System.getProperty("java.util.logging.config.file") == null
                && System.getProperty("java.util.logging.SimpleFormatter.format") == null) {
            System.setProperty("java.util.logging.SimpleFormatter.format", LOG_FORMAT);
        }
        System.exit(run(List.of(args), System.out, System.err));
    }

    /** Runs one command line; returns the exit status (0 ok, 1 failure, 2 usage error). */
    public static int run(List<String> args, PrintStream out, PrintStream err) {
        if (args.isEmpty() || args.getFirst().equals("--help") || args.getFirst().equals("-h")
                || args.getFirst().equals("help") && args.size() == 1) {
            out.print(overview());
            return args.isEmpty() ? 2 : 0;
        }
        String name = args.getFirst();
        List<String> rest = args.subList(1, args.size());
        if (name.equals("help")) {
            name = rest.getFirst();
            rest = List.of("--help");
        }
        for (Command c : COMMANDS) {
            if (c.name().equals(name)) {
                try {
                    return c.run(rest, out, err);
                } catch (UsageException e) {
                    err.println("jvirtio " + c.name() + ": " + e.getMessage());
                    err.println("Try 'jvirtio " + c.name() + " --help'.");
                    return 2;
                } catch (Exception e) {
                    err.println("jvirtio " + c.name() + ": " + e.getMessage());
                    return 1;
                }
            }
        }
        err.println("jvirtio: unknown command '" + name + "'");
        err.print(overview());
        return 2;
    }

    static String overview() {
        StringBuilder sb = new StringBuilder("""
                jvirtio — a virtio stack for the JVM (VIRTIO 1.2)

                Usage: jvirtio <command> [options]
                       jvirtio <command> --help

                Commands:
                """);
        for (Command c : COMMANDS) {
            sb.append(String.format("  %-10s %s%n", c.name(), c.summary()));
        }
        return sb.toString();
    }
}
