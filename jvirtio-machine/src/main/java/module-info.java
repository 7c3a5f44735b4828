/**
 * An in-process machine — the VMM's role: guest memory, a PCI bus with virtio-pci functions, MMIO
 * dispatch from addresses to BARs, and interrupt delivery on a vCPU thread. Drivers reach it only
 * through {@link io.jvirtio.transport.pci.PciHost}.
 */
module io.jvirtio.machine {
    requires transitive io.jvirtio.transport;
    exports io.jvirtio.machine;
}
