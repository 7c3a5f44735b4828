/** Device drivers (the guest side) and the Java APIs they offer: block I/O, entropy. */
module io.jvirtio.drivers {
    requires transitive io.jvirtio.bus;
    exports io.jvirtio.drivers.rng;
    exports io.jvirtio.drivers.blk;
    exports io.jvirtio.drivers.console;
    exports io.jvirtio.drivers.net;
}
