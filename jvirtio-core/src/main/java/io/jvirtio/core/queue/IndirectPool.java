package io.jvirtio.core.queue;

import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemoryException;
import io.jvirtio.core.spec.Feature;

import java.lang.foreign.MemorySegment;

/**
 * A driver queue's indirect tables (§2.7.5.3, §2.8.8): one table of {@link #perTable()} descriptors per buffer
 * (split: per head; packed: per buffer id), allocated once in DMA memory, so adding a buffer never allocates.
 * Both ring formats use 16-byte descriptors in their tables.
 */
public final class IndirectPool {
    private static final int DESC_SIZE = 16;
    private static final IndirectPool NONE = new IndirectPool(MemorySegment.NULL, 0, 0);

    private final MemorySegment segment;
    private final long address;
    private final int perTable;

    private IndirectPool(MemorySegment segment, long address, int perTable) {
        this.segment = segment;
        this.address = address;
        this.perTable = perTable;
    }

    /**
     * {@code tables} tables of {@code maxIndirect} descriptors from {@code allocator}, or no pool when
     * INDIRECT_DESC is not in {@code features} or a table would hold one descriptor (no gain).
     */
    public static IndirectPool allocate(GuestAllocator allocator, int tables, long features, int maxIndirect) {
        if (!Feature.INDIRECT_DESC.isSet(features) || maxIndirect <= 1) {
            return NONE;
        }
        long bytes = (long) tables * maxIndirect * DESC_SIZE;
        long address = allocator.allocate(bytes, 16);
        try {
            return new IndirectPool(allocator.memory().slice(address, bytes), address, maxIndirect);
        } catch (GuestMemoryException e) {
            throw new AssertionError("allocator handed out memory outside guest memory", e);
        }
    }

    /** Descriptors per table; 0 without a pool. */
    public int perTable() {
        return perTable;
    }

    /** The tables, for writing descriptors at {@link #tableOffset(int)}. */
    public MemorySegment segment() {
        return segment;
    }

    /** Where table {@code n} starts in {@link #segment()}. */
    public long tableOffset(int n) {
        return (long) n * perTable * DESC_SIZE;
    }

    /** The guest address of table {@code n}, for the descriptor that points to it. */
    public long tableAddress(int n) {
        return address + tableOffset(n);
    }

    /** Gives the tables back (after the device was reset). */
    public void free(GuestAllocator allocator) {
        if (perTable > 0) {
            allocator.free(address, segment.byteSize());
        }
    }
}
