package io.jvirtio.core.queue;

import io.jvirtio.core.memory.DirtyLog;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.packed.PackedDeviceQueue;
import io.jvirtio.core.queue.split.SplitDeviceQueue;
import io.jvirtio.core.spec.Feature;

import java.lang.foreign.MemorySegment;

/**
 * The device side of a virtqueue — what a VMM or a vhost-user back-end runs — in either ring format: the
 * split ring (§2.7, {@link SplitDeviceQueue}) or the packed ring (§2.8, {@link PackedDeviceQueue}), chosen
 * by the negotiated VIRTIO_F_RING_PACKED. Devices and transports use only this contract.
 *
 * <p>The loop a device runs (the same for both formats, on every transport):
 * <pre>{@code
 * do {
 *     queue.disableNotifications();
 *     while (queue.pop(chain)) {
 *         int written = process(chain);
 *         queue.addUsed(chain, written);
 *     }
 *     queue.publishUsed();
 *     if (queue.needsNotification()) interrupt.raise();
 * } while (queue.enableNotifications());   // true: the driver added more meanwhile
 * }</pre>
 *
 * <p>Everything read from the ring is untrusted. A violation raises a {@link VirtqueueException} naming the
 * {@link RingError} and leaves the queue broken — every later call throws the same error — so the device
 * sets DEVICE_NEEDS_RESET. One thread owns a queue; the per-buffer path neither allocates nor locks.
 */
public interface DeviceQueue {
    /**
     * A device queue over the ring the driver placed at {@code addresses} (split: descriptor table, available
     * ring, used ring; packed: descriptor ring, driver and device event suppression areas).
     *
     * @param features the negotiated features (RING_PACKED, EVENT_IDX, INDIRECT_DESC matter here)
     * @param state    where to resume; {@link QueueState#initial(long)} after a reset
     * @throws VirtqueueException if a ring part is outside guest memory or misaligned
     */
    static DeviceQueue create(GuestMemory memory, int queueIndex, int size, RingAddresses addresses, long features,
                              QueueState state) throws VirtqueueException {
        return Feature.RING_PACKED.isSet(features)
                ? PackedDeviceQueue.create(memory, queueIndex, size, addresses, features, state)
                : SplitDeviceQueue.create(memory, queueIndex, size, addresses, features, state);
    }

    int index();

    int size();

    /**
     * Logs every byte this queue writes into guest memory from now on (live migration), or stops when
     * {@code log} is null: each used chain's writable data up to its used length and — with {@code ringToo} —
     * the ring's own writes.
     */
    void logTo(DirtyLog log, boolean ringToo);

    /** Where the queue stands, for GET_VRING_BASE, migration or a restart (see {@link QueueState}). */
    QueueState state();

    /** The error that broke this queue, or null. */
    VirtqueueException error();

    /**
     * Takes the next available chain into {@code chain}, walked and validated.
     *
     * @return false if the driver has made nothing more available
     * @throws VirtqueueException if the chain breaks a rule of the ring format
     */
    boolean pop(DescriptorChain chain) throws VirtqueueException;

    /**
     * Reads the next chains the driver made available — walked and validated as {@link #pop} does — into
     * {@code chains[0..max)} without taking them: {@link #take} then takes them, in order, as far as the device
     * wants; the rest stay available, as if never read (no giving back). For a device that reads a batch of chains
     * before it writes into any buffer, so that the cache misses of its writes overlap instead of waiting behind
     * each chain's walk (a receive ring filled from a burst of frames). Any {@link #pop} or other {@code peek}
     * makes chains peeked before stale. Returns 0 while chains a previous device left in flight wait to be handed
     * out again: {@link #pop} them.
     *
     * @return how many chains were read (0: nothing available)
     * @throws VirtqueueException if one of them breaks a rule of the ring format: the queue is broken, as a
     *                            {@link #pop} of it would have left it
     */
    int peek(DescriptorChain[] chains, int max) throws VirtqueueException;

    /**
     * Takes {@code chain}, the first chain {@link #peek}ed and not taken yet, as {@link #pop} would have taken it.
     *
     * @throws IllegalStateException if it is not that chain (a device bug)
     * @throws VirtqueueException    if taking it breaks a rule (packed: its buffer id is already in flight)
     */
    void take(DescriptorChain chain) throws VirtqueueException;

    /**
     * Gives back the chain popped last, unused: the next {@link #pop} returns it again. Not on a split ring with an
     * in-flight log ({@link IllegalStateException}): a device that gives buffers back is never offered one
     * ({@code VirtioDeviceModel.resubmitsInflight}).
     */
    void undoPop();

    /**
     * Keeps an in-flight log in {@code region} (vhost-user INFLIGHT_SHMFD, "Inflight I/O tracking", in the
     * layout of this queue's format, {@link #inflightBytes} long) and recovers from it; call before the first
     * {@link #pop}. A region never used (version 0) is formatted and the queue keeps its position. One a
     * previous device left sets the position, and the buffers that device took but never used are handed out
     * again by {@link #pop} first, oldest first.
     *
     * @throws VirtqueueException ({@link RingError.InflightLogInvalid}) if the region is not a log this queue
     *                            can resume from; the queue is then unusable
     */
    void trackInflight(MemorySegment region) throws VirtqueueException;

    /** Bytes of one queue's in-flight log for a ring of {@code size} in the format {@code features} choose. */
    static long inflightBytes(long features, int size) {
        return Feature.RING_PACKED.isSet(features) ? PackedDeviceQueue.inflightBytes(size)
                : SplitDeviceQueue.inflightBytes(size);
    }

    /**
     * Stages a used buffer: the chain whose {@link DescriptorChain#head()} is {@code id} (split: its head
     * descriptor; packed: its buffer id) is done and the device wrote {@code len} bytes into it. Not visible
     * to the driver until {@link #publishUsed()}.
     */
    void addUsed(int id, int len);

    /**
     * {@link #addUsed(int, int)} for {@code chain}, whose writable buffers the device filled with {@code len}
     * bytes from their start: while logging, their pages are marked dirty first.
     */
    void addUsed(DescriptorChain chain, int len);

    /** Publishes every staged used buffer to the driver, in the order they were added. */
    void publishUsed();

    /** Whether the driver wants a used-buffer notification for what was published since the last one. */
    boolean needsNotification();

    /** Asks the driver not to send available-buffer notifications. */
    void disableNotifications();

    /**
     * Asks the driver to notify again, then checks for buffers added in the meantime: true when there is more
     * to pop, so the device does not sleep on a notification the driver decided not to send.
     */
    boolean enableNotifications() throws VirtqueueException;
}
