package io.jvirtio.transport.pci;

import io.jvirtio.core.memory.GuestAllocator;

/**
 * The platform as a PCI driver sees it — what a guest kernel gets from its architecture code:
 * configuration space accesses, MMIO/PIO accesses, interrupt vectors and DMA memory. The in-process
 * machine implements it; driver code uses nothing else.
 */
public interface PciHost {
    /** Functions on bus 0 are at device numbers 0..31, function 0. */
    int configRead(int device, int offset, int size);

    void configWrite(int device, int offset, int size, int value);

    long mmioRead(long address, int size);

    void mmioWrite(long address, int size, long value);

    long pioRead(long port, int size);

    void pioWrite(long port, int size, long value);

    /** Address space for BARs: where firmware (the enumerator) may place a BAR of {@code size} bytes. */
    long allocateBarSpace(long size, boolean io);

    /** A message-signalled interrupt vector whose delivery runs {@code handler}. */
    MsiVector allocateMsi(Runnable handler);

    void freeMsi(MsiVector vector);

    /** Runs {@code handler} while device {@code device}'s INTx line is asserted (shared-line semantics). */
    void attachIntx(int device, Runnable handler);

    void detachIntx(int device);

    /** Guest memory the driver may use for rings and buffers. */
    GuestAllocator dma();

    /** The MSI message to program into a table entry. */
    record MsiVector(long address, int data) {
    }
}
