/**
 * The virtio bus (the driver side's core, Linux {@code drivers/virtio/virtio.c}): drivers register
 * with an id table, transports register devices, the bus matches them and runs probe and remove with
 * the status and feature sequence of VIRTIO 1.2 §3.1.1.
 */
module io.jvirtio.bus {
    requires transitive io.jvirtio.core;
    exports io.jvirtio.bus;
}
