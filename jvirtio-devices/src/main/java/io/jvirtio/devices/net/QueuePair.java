package io.jvirtio.devices.net;

import io.jvirtio.devices.RxWorker;

import java.util.concurrent.atomic.AtomicLong;

/** One queue pair's state in a {@link NetDevice}: frames waiting for its receive buffers, its counters. */
final class QueuePair {
    final FrameRing inbound;
    /** The last change of the active pairs this pair's receive thread has acted on. */
    volatile long seenPairsChange;
    /** The pair's receive thread, which senders may deliver through directly; null before the first. */
    volatile RxWorker receiver;
    /**
     * Frames delivered and sent on this pair: each written only by whoever serves the ring at the time (one
     * at a time), so a plain ordered store — no locked instruction, which would wait for every store to guest
     * memory before it, per frame.
     */
    final AtomicLong rxFrames = new AtomicLong();
    final AtomicLong txFrames = new AtomicLong();
    /** Of {@code rxFrames}, those a backend read straight into the ring's buffers ({@link DirectRead}). */
    final AtomicLong rxRead = new AtomicLong();

    QueuePair(int frames, int frameSize) {
        inbound = new FrameRing(frames, frameSize);
    }
}
