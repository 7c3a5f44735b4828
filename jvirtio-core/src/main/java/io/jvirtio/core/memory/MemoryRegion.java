package io.jvirtio.core.memory;

import java.lang.foreign.MemorySegment;

/**
 * One contiguous piece of guest-physical address space.
 *
 * @param guestAddress first guest-physical address of the region
 * @param size         length in bytes
 * @param segment      the host memory behind it, exactly {@code size} bytes
 * @param fd           a file descriptor a second process can map to see the same bytes, or -1
 *                     for private (arena) memory
 * @param fdOffset     where the region starts inside {@code fd}
 */
public record MemoryRegion(long guestAddress, long size, MemorySegment segment, int fd, long fdOffset) {
    public MemoryRegion {
        if (size <= 0 || segment.byteSize() != size) {
            throw new IllegalArgumentException("region size " + size + " does not match segment of "
                    + segment.byteSize() + " bytes");
        }
        if (Long.compareUnsigned(guestAddress + size - 1, guestAddress) < 0) {
            throw new IllegalArgumentException("region at 0x" + Long.toHexString(guestAddress)
                    + " of " + size + " bytes wraps the 64-bit address space");
        }
    }

    /** Last guest-physical address inside the region (inclusive, so a region may end at 2^64-1). */
    public long lastAddress() {
        return guestAddress + size - 1;
    }

    /** True when {@code [address, address+length)} lies wholly inside this region; overflow-safe, unsigned. */
    public boolean contains(long address, long length) {
        long offset = address - guestAddress;
        return Long.compareUnsigned(address, guestAddress) >= 0
                && Long.compareUnsigned(length, size) <= 0
                && Long.compareUnsigned(offset, size - length) <= 0;
    }

    /** True when the file descriptor behind this region can be shared with another process. */
    public boolean shareable() {
        return fd >= 0;
    }
}
