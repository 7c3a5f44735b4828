package io.jvirtio.core.memory;

/**
 * Hands out guest-physical ranges from a window of {@link GuestMemory} — the driver's role of
 * allocating DMA memory for rings, indirect tables and buffers. A bump allocator: drivers allocate
 * their rings and buffer pools once at setup and recycle them, so nothing is freed piecemeal.
 */
public final class GuestAllocator {
    private final GuestMemory memory;
    private final long end;
    private long next;

    /** Allocates from {@code [start, start+length)}, which must lie inside one region of {@code memory}. */
    public GuestAllocator(GuestMemory memory, long start, long length) {
        if (!memory.contains(start, length)) {
            throw new IllegalArgumentException(String.format("window 0x%x+%d is not inside %s", start, length, memory));
        }
        this.memory = memory;
        this.next = start;
        this.end = start + length;
    }

    /** Allocates {@code size} bytes aligned to {@code align} (a power of two), zero-filled. */
    public synchronized long allocate(long size, long align) {
        if (Long.bitCount(align) != 1 || size <= 0) {
            throw new IllegalArgumentException("size " + size + ", align " + align);
        }
        long at = (next + align - 1) & -align;
        if (at < next || end - at < size) {
            throw new IllegalStateException("guest allocator exhausted: " + size + " bytes wanted, "
                    + Math.max(0, end - at) + " left");
        }
        next = at + size;
        try {
            memory.slice(at, size).fill((byte) 0);
        } catch (GuestMemoryException e) {
            throw new AssertionError(e);
        }
        return at;
    }

    public GuestMemory memory() {
        return memory;
    }

    /** Bytes still free. */
    public synchronized long remaining() {
        return end - next;
    }
}
