package io.jvirtio.core.memory;

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
    private final long length;
    private long used;

    /** Allocates from {@code [start, start+length)}, which must lie inside one region of {@code memory}. */
    public GuestAllocator(GuestMemory memory, long start, long length) {
        if (!memory.contains(start, length)) {
            throw new IllegalArgumentException(String.format("window 0x%x+%d is not inside %s", start, length, memory));
        }
        this.memory = memory;
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
            try {
                memory.slice(at, size).fill((byte) 0);
            } catch (GuestMemoryException ex) {
                throw new AssertionError(ex);
            }
            return at;
        }
        throw new IllegalStateException("guest allocator exhausted: " + size + " bytes (align " + align
                + ") wanted, " + (length - used) + " free in pieces");
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
