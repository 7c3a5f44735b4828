package io.jvirtio.devices.net;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;

/**
 * A bounded queue of frames from many producers (the threads that switch frames to a NIC) to one
 * consumer (the NIC's receive worker), in fixed off-heap slots: offering copies the frame into a slot,
 * so the queue allocates nothing per frame and takes no lock (a sequence per slot, as in Vyukov's
 * bounded MPMC queue, used here with one consumer).
 */
final class FrameRing {
    private final int mask;
    private final long slotSize;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment slots;
    private final int[] lengths;
    private final AtomicLongArray sequence;
    private final AtomicLong tail = new AtomicLong();
    private long head;

    FrameRing(int capacity, int slotSize) {
        if (Integer.bitCount(capacity) != 1) {
            throw new IllegalArgumentException("capacity " + capacity + " is not a power of two");
        }
        this.mask = capacity - 1;
        this.slotSize = slotSize;
        this.slots = arena.allocate((long) capacity * slotSize, 64);
        this.lengths = new int[capacity];
        this.sequence = new AtomicLongArray(capacity);
        for (int i = 0; i < capacity; i++) {
            sequence.set(i, i);
        }
    }

    /**
     * Copies the frame ({@code length} bytes at {@code offset} of {@code buffer}) in; false when the queue is full
     * or the frame is larger than a slot.
     */
    boolean offer(MemorySegment buffer, long offset, long length) {
        if (length > slotSize) {
            return false;
        }
        long t;
        int idx;
        while (true) {
            t = tail.get();
            idx = (int) (t & mask);
            long d = sequence.get(idx) - t;
            if (d == 0) {
                if (tail.compareAndSet(t, t + 1)) {
                    break;
                }
            } else if (d < 0) {
                return false;
            }
        }
        MemorySegment.copy(buffer, offset, slots, idx * slotSize, length);
        lengths[idx] = (int) length;
        // publishes slot and length to the consumer, whose read of the sequence is an acquire: a release store is
        // enough (a volatile one would add a fence, waiting for every store before it to leave the CPU)
        sequence.lazySet(idx, t + 1);
        return true;
    }

    /** True when the next {@link #offer} would find no free slot (any thread; a moment's view). */
    boolean isFull() {
        long t = tail.get();
        return sequence.get((int) (t & mask)) - t < 0;
    }

    /** True when a frame is waiting (consumer only). */
    boolean isEmpty() {
        return sequence.get((int) (head & mask)) != head + 1;
    }

    /**
     * True when no producer has so much as reserved a slot: stronger than {@link #isEmpty()}, which looks at
     * the head slot only — a producer may have filled the slot after it while the head's is still being
     * written. Whoever would hand a frame to the consumer's ring ahead of this queue checks this (as the
     * consumer, or holding the consumer's place), or it could overtake a frame already queued.
     */
    boolean isDrained() {
        return tail.get() == head;
    }

    /** The slots; the head frame is at {@link #headOffset()}, {@link #headLength()} bytes (consumer only). */
    MemorySegment slots() {
        return slots;
    }

    long headOffset() {
        return (head & mask) * slotSize;
    }

    int headLength() {
        return lengths[(int) (head & mask)];
    }

    /** Drops the head frame, freeing its slot for producers (consumer only). */
    void poll() {
        int idx = (int) (head & mask);
        sequence.lazySet(idx, head + mask + 1); // release: the slot is free once the producers see this
        head++;
    }

    /** Drops everything (only while no producer or consumer runs). */
    void clear() {
        while (!isEmpty()) {
            poll();
        }
    }

    /** Frees the slots; only once no producer or consumer can use the queue again. */
    void close() {
        arena.close();
    }
}
