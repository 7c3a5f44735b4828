/**
 * Device models (the VMM side): each is configuration space + queues + a backend, carried by any
 * transport through {@link io.jvirtio.core.device.VirtioDeviceModel}.
 */
module io.jvirtio.devices {
    requires transitive io.jvirtio.core;
    requires jdk.jfr;
    exports io.jvirtio.devices;
    exports io.jvirtio.devices.rng;
    exports io.jvirtio.devices.blk;
    exports io.jvirtio.devices.blk.nbd;
    exports io.jvirtio.devices.console;
    exports io.jvirtio.devices.net;
}
