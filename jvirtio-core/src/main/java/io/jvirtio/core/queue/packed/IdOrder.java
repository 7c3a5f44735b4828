package io.jvirtio.core.queue.packed;

/**
 * VIRTIO_F_IN_ORDER on a packed ring, driver side: the buffer ids in flight in the order they were made
 * available (§2.8.8). The device uses them in that order, so a used descriptor naming one id also stands for
 * every id before it. A fixed ring of {@code size} ids: no allocation after construction.
 */
final class IdOrder {
    private final int[] ids;
    private int oldest;
    private int count;

    IdOrder(int size) {
        ids = new int[size];
    }

    /** Ids in flight. */
    int count() {
        return count;
    }

    /** {@code id} was made available after every id now in flight. */
    void add(int id) {
        int at = oldest + count;
        ids[at >= ids.length ? at - ids.length : at] = id;
        count++;
    }

    /** The oldest id in flight, taken off the order. */
    int takeOldest() {
        int id = ids[oldest];
        if (++oldest == ids.length) {
            oldest = 0;
        }
        count--;
        return id;
    }

    /**
     * The ring slots the ids from the oldest through {@code id} take ({@code slotsOf} per id), or -1 when
     * {@code id} is not in flight: the batch a used descriptor naming {@code id} closes.
     */
    int slotsThrough(int id, int[] slotsOf) {
        int slots = 0;
        for (int k = 0, i = oldest; k < count; k++) {
            slots += slotsOf[ids[i]];
            if (ids[i] == id) {
                return slots;
            }
            if (++i == ids.length) {
                i = 0;
            }
        }
        return -1;
    }
}
