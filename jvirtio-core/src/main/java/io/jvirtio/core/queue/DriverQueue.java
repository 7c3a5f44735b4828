package io.jvirtio.core.queue;

import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.queue.packed.PackedDriverQueue;
import io.jvirtio.core.queue.split.SplitDriverQueue;
import io.jvirtio.core.queue.split.SplitLayout;
import io.jvirtio.core.spec.Feature;

/**
 * The driver side of a virtqueue — Linux's {@code virtqueue_ops} with Java names — in either ring format:
 * split (§2.7, {@link SplitDriverQueue}) or packed (§2.8, {@link PackedDriverQueue}), chosen by the
 * negotiated VIRTIO_F_RING_PACKED. Transports and drivers use only this contract.
 *
 * <table>
 *   <caption>Linux → jvirtio</caption>
 *   <tr><td>virtqueue_add_sgs</td><td>{@link #addBuf(Scatterlist, Object)}</td></tr>
 *   <tr><td>virtqueue_kick_prepare / virtqueue_notify / virtqueue_kick</td>
 *       <td>{@link #kickPrepare()} / {@link #notifyDevice()} / {@link #kick()}</td></tr>
 *   <tr><td>virtqueue_get_buf</td><td>{@link #getBuf()} + {@link #lastLength()}</td></tr>
 *   <tr><td>virtqueue_disable_cb / enable_cb / enable_cb_prepare / poll / enable_cb_delayed</td>
 *       <td>{@link #disableCallbacks()} / {@link #enableCallbacks()} / {@link #enableCallbacksPrepare()} /
 *       {@link #poll(int)} / {@link #enableCallbacksDelayed()}</td></tr>
 *   <tr><td>virtqueue_detach_unused_buf</td><td>{@link #detachUnused()}</td></tr>
 * </table>
 *
 * <p>As in Linux, the caller serialises calls (one thread, or its own lock). The per-buffer path neither
 * allocates nor locks.
 *
 * @param <T> the token type a caller attaches to each buffer and gets back from {@link #getBuf()}
 */
public interface DriverQueue<T> {
    /**
     * Allocates a ring of {@code size} entries in {@code allocator}'s memory: a packed ring when {@code features}
     * has VIRTIO_F_RING_PACKED (any size up to 2^15), else a split ring in the modern layout (a power of two).
     *
     * @param maxIndirect descriptors per indirect table (0: none), used when INDIRECT_DESC is negotiated
     * @throws IllegalStateException when the memory has no room for the ring
     */
    static <T> DriverQueue<T> allocate(GuestAllocator allocator, int queueIndex, int size, long features,
                                       int maxIndirect, Doorbell doorbell) {
        if (Feature.RING_PACKED.isSet(features)) {
            return PackedDriverQueue.allocate(allocator, queueIndex, size, features, maxIndirect, doorbell);
        }
        return SplitDriverQueue.allocate(allocator, queueIndex, SplitLayout.modern(size), features, maxIndirect, doorbell);
    }

    /**
     * {@link #allocate(GuestAllocator, int, int, long, int, Doorbell)} with the split ring placed as {@code layout}
     * says (the legacy layout of a legacy transport); a packed ring takes only its size.
     */
    static <T> DriverQueue<T> allocate(GuestAllocator allocator, int queueIndex, SplitLayout layout, long features,
                                       int maxIndirect, Doorbell doorbell) {
        if (Feature.RING_PACKED.isSet(features)) {
            return PackedDriverQueue.allocate(allocator, queueIndex, layout.size(), features, maxIndirect, doorbell);
        }
        return SplitDriverQueue.allocate(allocator, queueIndex, layout, features, maxIndirect, doorbell);
    }

    int index();

    /** Frees the ring and the indirect tables (after a reset, when the device no longer uses them). */
    void release();

    int size();

    /** Where the ring's three parts are, for the transport to program. */
    RingAddresses addresses();

    /** Free descriptors (split) or ring slots (packed) left. */
    int numFree();

    boolean isBroken();

    /**
     * Exposes the buffers of {@code sg} (readable first, then writable) as one chain with {@code token}.
     *
     * @return false when the ring has too little room (try again after {@link #getBuf()})
     * @throws IllegalArgumentException if the request could never fit the queue, or exceeds 2^32 bytes
     * @throws IllegalStateException    if the queue is broken or released
     */
    boolean addBuf(Scatterlist sg, T token);

    /** One device-readable buffer (Linux {@code virtqueue_add_outbuf}). */
    boolean addOutBuf(long guestAddress, int len, T token);

    /** One device-writable buffer (Linux {@code virtqueue_add_inbuf}). */
    boolean addInBuf(long guestAddress, int len, T token);

    /** Whether the device wants to be notified of what was added since the last kick. */
    boolean kickPrepare();

    /** Rings the doorbell unconditionally. */
    void notifyDevice();

    /** {@link #kickPrepare()} then, if needed, {@link #notifyDevice()}. Returns whether it notified. */
    boolean kick();

    /** True when the device has used buffers that {@link #getBuf()} has not returned yet. */
    boolean hasUsed();

    /** The next used buffer's token (its length from {@link #lastLength()}), or null when there is none. */
    T getBuf() throws VirtqueueException;

    /** Bytes the device wrote into the buffer {@link #getBuf()} returned last. */
    int lastLength();

    /** Asks the device not to interrupt. */
    void disableCallbacks();

    /** Re-enables interrupts and returns the position to {@link #poll(int)} for later used buffers. */
    int enableCallbacksPrepare();

    /** Whether buffers were used after {@code position}. */
    boolean poll(int position);

    /** Re-enables interrupts; false when buffers were used meanwhile (process them first). */
    boolean enableCallbacks();

    /** Re-enables interrupts for when most of what is in flight is used; false as {@link #enableCallbacks()}. */
    boolean enableCallbacksDelayed();

    /** Takes back a buffer the device never used — only after a reset. Null when none is left. */
    T detachUnused();
}
