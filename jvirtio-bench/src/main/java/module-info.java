/**
 * JMH benchmarks of jvirtio. Built into a shaded {@code benchmarks.jar} that runs on the class path
 * (the shade step drops this descriptor), so this module descriptor only checks the dependencies at
 * compile time.
 */
module io.jvirtio.bench {
    requires io.jvirtio.core;
    requires io.jvirtio.machine;
    requires io.jvirtio.devices;
    requires io.jvirtio.drivers;
    requires io.jvirtio.vhostuser;
    requires jmh.core;
    opens io.jvirtio.bench;
}
