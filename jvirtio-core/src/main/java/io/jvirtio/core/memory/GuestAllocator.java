package io.jvirtio.core.memory;

import java.lang.foreign.MemorySegment;
import java.util.Map;
import java.util.TreeMap;

/**
 * Hands out guest-physical ranges from a window of {@link GuestMemory} — the driver's role of allocating
 * DMA memory for rings, indirect tables and buffers. First fit over a free list that coalesces on
 * {@link #free}, so queues torn down at reset, unbind or hot-unplug give their memory back. Drivers
 * allocate at setup, never per buffer, so a lock here costs nothing on the data path.
 */
public final class GuestAllocator {
    private final GuestMemory memory;
    private final TreeMap<Long, Long> free = new TreeMap<>(Long::compareUnsigned);
    private final long start;
    private final long length;
    private long used;

    /** Allocates from {@code [start, start+length)}, which must lie inside one region of {@code memory}. */
    public GuestAllocator(GuestMemory memory, long start, long length) {
        if (!memory.contains(start, length)) {
            throw new IllegalArgumentException(String.format("window 0x%x+%d is not inside %s", start, length, memory));
        }
        this.memory = memory;
        this.start = start;
        this.length = length;
        free.put(start, length);
    }

    /** Allocates {@code size} bytes aligned to {@code align} (a power of two), zero-filled. */
    public synchronized long allocate(long size, long align) {
        if (Long.bitCount(align) != 1 || size <= 0) {
            throw new IllegalArgumentException("size " + size + ", align " + align);
        }
        for (Map.Entry<Long, Long> e : free.entrySet()) {
            long start = e.getKey();
            long len = e.getValue();
            long at = (start + align - 1) & -align;
            long pad = at - start;
            if (pad < 0 || pad >= len || len - pad < size) {
                continue;
            }
            free.remove(start);
            if (pad > 0) {
                free.put(start, pad);
            }
            long tail = len - pad - size;
            if (tail > 0) {
                free.put(at + size, tail);
            }
            used += size;
            slice(at, size).fill((byte) 0);
            return at;
        }
        throw new IllegalStateException("guest allocator exhausted: " + size + " bytes (align " + align
                + ") wanted, " + (length - used) + " free in pieces");
    }

    /**
     * The guest memory at {@code [address, address+length)}, which must lie in this allocator's window — the
     * driver's own memory, a range it allocated. Asking for anything else is the caller's bug (unchecked); the
     * window itself lies in guest memory (checked when the allocator was made), so no guest-memory error can
     * come of it.
     */
    public MemorySegment slice(long address, long length) {
        if (length < 0 || Long.compareUnsigned(address - start, this.length) > 0
                || Long.compareUnsigned(length, this.length - (address - start)) > 0) {
            throw new IllegalArgumentException(String.format("0x%x+%d is outside the allocator's window 0x%x+%d",
                    address, length, start, this.length));
        }
        try {
            return memory.slice(address, length);
        } catch (GuestMemoryException e) {
            throw new AssertionError("the allocator's window lies in guest memory", e);
        }
    }

    /** Returns {@code [address, address+size)}, which must be exactly a range {@link #allocate} returned. */
    public synchronized void free(long address, long size) {
        Map.Entry<Long, Long> before = free.floorEntry(address);
        if (before != null && before.getKey() + before.getValue() > address) {
            throw new IllegalArgumentException(String.format("double free of 0x%x+%d", address, size));
        }
        long start = address;
        long len = size;
        if (before != null && before.getKey() + before.getValue() == address) {
            start = before.getKey();
            len += before.getValue();
            free.remove(start);
        }
        Long after = free.get(address + size);
        if (after != null) {
            free.remove(address + size);
            len += after;
        }
        free.put(start, len);
        used -= size;
    }

    public GuestMemory memory() {
        return memory;
    }

    /** Bytes currently allocated. */
    public synchronized long used() {
        return used;
    }

    /** Bytes still free (possibly in several pieces). */
    public synchronized long remaining() {
        return length - used;
    }
}
