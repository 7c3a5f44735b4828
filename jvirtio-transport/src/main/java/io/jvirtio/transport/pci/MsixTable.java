package io.jvirtio.transport.pci;

import java.util.Arrays;

/**
 * The MSI-X table and pending-bit array of a function (PCI 3.0 §6.8.2, virtio-pci §4.1.5.1.2): per vector a
 * message address, a message data and a mask bit, and the pending bit of a message raised while masked, sent
 * when the mask clears. The function's own mask and enable bits live in its capability, so the function
 * passes them in. Not thread-safe: the function calls it under its own lock.
 */
final class MsixTable {
    private final int entries;
    private final long pbaOffset;
    private final long[] address;
    private final int[] data;
    private final int[] control;
    private final boolean[] pending;

    /** {@code entries} vectors, all masked (as after reset), the PBA at {@code pbaOffset} of the BAR. */
    MsixTable(int entries, long pbaOffset) {
        this.entries = entries;
        this.pbaOffset = pbaOffset;
        this.address = new long[entries];
        this.data = new int[entries];
        this.control = new int[entries];
        this.pending = new boolean[entries];
        Arrays.fill(control, Pci.MSIX_ENTRY_VECTOR_CTRL_MASKBIT);
    }

    int entries() {
        return entries;
    }

    /**
     * A read of the table or the PBA at {@code offset} of the MSI-X BAR, DWORD or QWORD (PCI 3.0 §6.8.2: a QWORD
     * at an entry's offset 0 is the whole address, at offset 8 the data and, above it, the vector control).
     */
    long read(long offset, int size) {
        if (offset >= pbaOffset) {
            // one pending bit per vector, vector n at bit n % 64 of the PBA's QWORD n / 64
            long first = 8 * (offset - pbaOffset);
            long bits = 0;
            for (int i = 0; i < 8 * size && first + i < entries; i++) {
                if (pending[(int) (first + i)]) {
                    bits |= 1L << i;
                }
            }
            return bits;
        }
        int entry = (int) (offset / Pci.MSIX_ENTRY_SIZE);
        if (entry >= entries) {
            return 0;
        }
        return switch ((int) (offset % Pci.MSIX_ENTRY_SIZE)) {
            case 0 -> size == 8 ? address[entry] : address[entry] & 0xffffffffL;
            case 4 -> address[entry] >>> 32;
            case 8 -> (data[entry] & 0xffffffffL) | (size == 8 ? (control[entry] & 0xffffffffL) << 32 : 0);
            case 12 -> control[entry] & 0xffffffffL;
            default -> 0;
        };
    }

    /** A write of a table entry (the PBA is read-only); the caller then sends what became unmasked. */
    void write(long offset, int size, long value) {
        int entry = (int) (offset / Pci.MSIX_ENTRY_SIZE);
        if (offset >= pbaOffset || entry >= entries) {
            return;
        }
        switch ((int) (offset % Pci.MSIX_ENTRY_SIZE)) {
            case 0 -> address[entry] = size == 8 ? value : (address[entry] & ~0xffffffffL) | (value & 0xffffffffL);
            case 4 -> address[entry] = (address[entry] & 0xffffffffL) | (value << 32);
            case 8 -> {
                data[entry] = (int) value;
                if (size == 8) {
                    control[entry] = (int) (value >>> 32) & Pci.MSIX_ENTRY_VECTOR_CTRL_MASKBIT;
                }
            }
            case 12 -> control[entry] = (int) value & Pci.MSIX_ENTRY_VECTOR_CTRL_MASKBIT;
            default -> {
            }
        }
    }

    /**
     * Whether vector {@code v}'s message may be sent now; if it or the whole function is masked, the message
     * is held as pending instead.
     */
    boolean sendable(int v, boolean functionMasked) {
        if (functionMasked || (control[v] & Pci.MSIX_ENTRY_VECTOR_CTRL_MASKBIT) != 0) {
            pending[v] = true;
            return false;
        }
        return true;
    }

    /** Clears and returns vector {@code v}'s pending bit if its message may go now ({@code open}: the function is). */
    boolean takePending(int v, boolean open) {
        if (pending[v] && open && (control[v] & Pci.MSIX_ENTRY_VECTOR_CTRL_MASKBIT) == 0) {
            pending[v] = false;
            return true;
        }
        return false;
    }

    long address(int v) {
        return address[v];
    }

    int data(int v) {
        return data[v];
    }
}
