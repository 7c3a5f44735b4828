package io.jvirtio.core.queue;

/**
 * VIRTIO_F_IN_ORDER on the driver side (§2.7.9, §2.8.8), for both ring formats: the batch one used entry
 * announced — it names the batch's last buffer and carries its length — and the length each buffer of the
 * batch is returned with: the one the entry names its own, every one before it all of its writable bytes
 * (the device skipped them because it filled them). One per driver queue; neither allocates nor locks.
 */
public final class UsedBatch {
    /** Each buffer's writable bytes, by id (split: head descriptor; packed: buffer id). */
    private final int[] writable;
    private int last = -1;
    private int lastLength;

    public UsedBatch(int queueSize) {
        this.writable = new int[queueSize];
    }

    /** Buffer {@code id} was made available with the writable part of {@code sg}. */
    public void added(int id, Scatterlist sg) {
        int in = 0;
        for (int n = sg.readableCount(); n < sg.count(); n++) {
            in += sg.length(n);
        }
        writable[id] = in;
    }

    /** Whether a batch is being returned. */
    public boolean open() {
        return last >= 0;
    }

    /** A used entry announced a batch ending with buffer {@code lastId}, which got {@code length} bytes. */
    public void open(int lastId, int length) {
        last = lastId;
        lastLength = length;
    }

    /** Buffer {@code id}, the batch's oldest, is returned: its length; the batch ends with its last buffer. */
    public int take(int id) {
        if (id == last) {
            last = -1;
            return lastLength;
        }
        return writable[id];
    }

    /** Forgets the batch (the device was reset). */
    public void clear() {
        last = -1;
    }
}
