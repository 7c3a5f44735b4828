package io.jvirtio.transport.mmio;

import io.jvirtio.core.memory.GuestAllocator;

/**
 * The platform as a virtio-mmio driver sees it: register accesses, interrupt lines, DMA memory — what a
 * guest kernel learns from its device tree or {@code virtio_mmio.device=} parameters.
 */
public interface MmioHost {
    long mmioRead(long address, int size);

    void mmioWrite(long address, int size, long value);

    /** Runs {@code handler} (on the interrupt thread) while line {@code irq} is asserted. */
    void attachIrq(int irq, Runnable handler);

    void detachIrq(int irq);

    GuestAllocator dma();
}
