/**
 * virtio over PCI (VIRTIO 1.2 §4.1), both sides: the device function a VMM emulates
 * ({@code VirtioPciDevice}) and the driver that probes it ({@code VirtioPciDriver}, Linux's
 * {@code virtio_pci}). They meet only through the PCI abstractions of this package: configuration
 * space accesses, BAR accesses and interrupt messages.
 */
module io.jvirtio.transport {
    requires transitive io.jvirtio.core;
    requires transitive io.jvirtio.bus;
    exports io.jvirtio.transport.pci;
    exports io.jvirtio.transport.mmio;
}
