/** The {@code jvirtio} command. */
module io.jvirtio.cli {
    requires io.jvirtio.core;
    requires io.jvirtio.machine;
    requires io.jvirtio.devices;
    requires io.jvirtio.drivers;
    requires io.jvirtio.vhostuser;
    requires HdrHistogram;
    requires java.logging;
    exports io.jvirtio.cli;
    exports io.jvirtio.cli.conform;
    exports io.jvirtio.cli.bench;
}
