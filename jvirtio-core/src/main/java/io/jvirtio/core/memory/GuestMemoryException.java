package io.jvirtio.core.memory;

/**
 * A guest-physical range that does not lie inside one region of {@link GuestMemory}: out of range, or
 * overflowing the 64-bit address space. The range came from the guest, so this is the guest's error,
 * and the message names the bad address and length.
 */
public final class GuestMemoryException extends Exception {
    private final long address;
    private final long length;

    public GuestMemoryException(long address, long length) {
        super("guest range [0x" + Long.toHexString(address) + ", +" + Long.toUnsignedString(length)
                + ") is not inside guest memory");
        this.address = address;
        this.length = length;
    }

    public long address() {
        return address;
    }

    public long length() {
        return length;
    }
}
