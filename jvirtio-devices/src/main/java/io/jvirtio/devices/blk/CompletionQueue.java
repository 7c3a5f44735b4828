package io.jvirtio.devices.blk;

import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.locks.LockSupport;

/**
 * Completions posted by any thread (an engine's pool, a socket reader) for one queue's thread to reap: a
 * bounded multi-producer, single-consumer ring of {@code (tag, result)} words, allocation-free, plus the
 * park/unpark that {@link BlockQueue#await()} and {@link BlockQueue#wakeup()} need. Sized for the queue's
 * depth: a tag completes at most once per start, so the ring never fills.
 */
public final class CompletionQueue {
    private final Thread owner = Thread.currentThread();
    private final BlockRequest[] requests;
    private final AtomicLongArray slots;
    private final int mask;
    private final AtomicLong tail = new AtomicLong();
    private long head;

    /** A queue for {@code depth} tags, owned (reaped and awaited) by the calling thread. */
    public CompletionQueue(int depth) {
        int capacity = Integer.highestOneBit(Math.max(1, depth - 1)) << 1;
        this.slots = new AtomicLongArray(capacity);
        this.mask = capacity - 1;
        this.requests = new BlockRequest[depth];
    }

    /** Posts {@code request}'s result and wakes the owner. Any thread. */
    public void post(BlockRequest request, int result) {
        int tag = request.tag();
        requests[tag] = request; // published by the volatile store below
        long t = tail.getAndIncrement();
        slots.set((int) (t & mask), ((long) result << 32) | (tag + 1L));
        LockSupport.unpark(owner);
    }

    public boolean ready() {
        return slots.getAcquire((int) (head & mask)) != 0;
    }

    /** Delivers every posted completion to {@code completion}, in posting order; returns how many. */
    public int reap(BlockCompletion completion) {
        int n = 0;
        for (;;) {
            int i = (int) (head & mask);
            long v = slots.getAcquire(i);
            if (v == 0) {
                return n;
            }
            slots.setRelease(i, 0);
            head++;
            n++;
            int tag = (int) (v & 0xffff_ffffL) - 1;
            completion.complete(requests[tag], (int) (v >> 32));
        }
    }

    /** Parks the owner until something is posted or {@link #wakeup()}; may return early. */
    public void await() {
        if (!ready()) {
            LockSupport.park(this);
        }
    }

    public void wakeup() {
        LockSupport.unpark(owner);
    }
}
