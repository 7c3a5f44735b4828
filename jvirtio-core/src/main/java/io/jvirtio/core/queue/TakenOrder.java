package io.jvirtio.core.queue;

/**
 * VIRTIO_F_IN_ORDER on the device side: the buffers taken, in the order they were taken, so that each one
 * used is checked to be the oldest (VIRTIO 1.2 §6.2: "a device MUST use buffers in the same order in which
 * they have been available"). A device using them otherwise is a bug in the device, not in the driver: it
 * gets an {@link IllegalStateException}. Both ring formats keep one; it neither allocates nor locks.
 */
public final class TakenOrder {
    private final int[] ids;
    private final int queueIndex;
    private int oldest;
    private int count;

    public TakenOrder(int queueSize, int queueIndex) {
        this.ids = new int[queueSize];
        this.queueIndex = queueIndex;
    }

    /** The device took buffer {@code id} (split: its head; packed: its buffer id). */
    public void taken(int id) {
        int at = oldest + count;
        ids[at >= ids.length ? at - ids.length : at] = id;
        count++;
    }

    /** The buffer taken last was given back (an undone pop). */
    public void untaken() {
        count--;
    }

    /**
     * Buffer {@code id} is used: it must be the oldest taken.
     *
     * @throws IllegalStateException if it is not
     */
    public void used(int id) {
        if (count == 0 || ids[oldest] != id) {
            throw new IllegalStateException("queue " + queueIndex + ": IN_ORDER negotiated, but buffer " + id
                    + " is used before " + (count == 0 ? "being taken" : "buffer " + ids[oldest] + ", taken earlier"));
        }
        if (++oldest == ids.length) {
            oldest = 0;
        }
        count--;
    }
}
