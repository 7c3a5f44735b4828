/** The {@code jvirtio} command. */
module io.jvirtio.cli {
    requires io.jvirtio.core;
    exports io.jvirtio.cli;
}
