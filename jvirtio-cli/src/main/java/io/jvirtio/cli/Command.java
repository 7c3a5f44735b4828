package io.jvirtio.cli;

import java.io.PrintStream;
import java.util.List;

/** One {@code jvirtio} subcommand. */
interface Command {
    String name();

    /** One line for the command list. */
    String summary();

    /** The full {@code --help} text. */
    String usage();

    /** Runs the command; returns the exit status. */
    int run(List<String> args, PrintStream out, PrintStream err) throws Exception;
}
