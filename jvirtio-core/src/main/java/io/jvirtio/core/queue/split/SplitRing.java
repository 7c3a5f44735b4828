package io.jvirtio.core.queue.split;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.RingAddresses;
import io.jvirtio.core.queue.RingError;
import io.jvirtio.core.queue.RingPart;
import io.jvirtio.core.queue.VirtqueueException;

import java.lang.foreign.MemorySegment;

/**
 * The three parts of a split virtqueue translated once from guest-physical addresses into host segments,
 * so the per-buffer path indexes segments directly and never translates a ring address again.
 * Translation checks every part lies inside guest memory and at its §2.7.1 alignment, which also makes
 * the acquire/release accesses to {@code idx} fields naturally aligned.
 */
public final class SplitRing {
    final int size;
    final MemorySegment desc;
    final MemorySegment avail;
    final MemorySegment used;
    private final RingAddresses addresses;

    private SplitRing(int size, RingAddresses addresses, MemorySegment desc, MemorySegment avail, MemorySegment used) {
        this.size = size;
        this.addresses = addresses;
        this.desc = desc;
        this.avail = avail;
        this.used = used;
    }

    /**
     * Maps a queue of {@code size} entries at {@code addresses}.
     *
     * @throws VirtqueueException with {@link RingError.RingOutsideMemory} or {@link RingError.RingMisaligned}
     */
    public static SplitRing map(GuestMemory memory, int queueIndex, int size, RingAddresses addresses)
            throws VirtqueueException {
        SplitLayout.checkSize(size);
        return new SplitRing(size, addresses,
                RingPart.map(memory, queueIndex, "descriptor table", addresses.descTable(), SplitLayout.descTableBytes(size), 16),
                RingPart.map(memory, queueIndex, "available ring", addresses.availRing(), SplitLayout.availRingBytes(size), 2),
                RingPart.map(memory, queueIndex, "used ring", addresses.usedRing(), SplitLayout.usedRingBytes(size), 4));
    }

    public int size() {
        return size;
    }

    public RingAddresses addresses() {
        return addresses;
    }
}
