/**
 * jvirtio core: the VIRTIO 1.2 constants, the guest-physical memory model and the virtqueues.
 * Nothing here knows a transport or a device type's semantics.
 */
module io.jvirtio.core {
    exports io.jvirtio.core.spec;
    exports io.jvirtio.core.memory;
    exports io.jvirtio.core.os;
    exports io.jvirtio.core.queue;
    exports io.jvirtio.core.queue.split;
    exports io.jvirtio.core.queue.packed;
    exports io.jvirtio.core.device;
}
