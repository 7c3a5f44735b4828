package io.jvirtio.core.queue.split;

/** Field offsets and flag values of the split ring structures, VIRTIO 1.2 §2.7.5, §2.7.6, §2.7.8. */
final class Virtq {
    /** struct virtq_desc: le64 addr, le32 len, le16 flags, le16 next. */
    static final int DESC_SIZE = 16;
    static final int DESC_ADDR = 0;
    static final int DESC_LEN = 8;
    static final int DESC_FLAGS = 12;
    static final int DESC_NEXT = 14;

    static final int DESC_F_NEXT = 1;
    static final int DESC_F_WRITE = 2;
    static final int DESC_F_INDIRECT = 4;

    /** struct virtq_avail: le16 flags, le16 idx, le16 ring[size], le16 used_event. */
    static final int AVAIL_FLAGS = 0;
    static final int AVAIL_IDX = 2;
    static final int AVAIL_RING = 4;
    static final int AVAIL_F_NO_INTERRUPT = 1;

    /** struct virtq_used: le16 flags, le16 idx, struct { le32 id; le32 len; } ring[size], le16 avail_event. */
    static final int USED_FLAGS = 0;
    static final int USED_IDX = 2;
    static final int USED_RING = 4;
    static final int USED_ELEM_SIZE = 8;
    static final int USED_F_NO_NOTIFY = 1;

    /** The largest queue size §2.7 allows. */
    static final int MAX_QUEUE_SIZE = 32768;

    private Virtq() {
    }

    static long availRing(int slot) {
        return AVAIL_RING + 2L * slot;
    }

    static long usedRing(int slot) {
        return USED_RING + (long) USED_ELEM_SIZE * slot;
    }

    /** Offset of used_event: just after avail.ring[size] (§2.7.6). */
    static long usedEvent(int size) {
        return AVAIL_RING + 2L * size;
    }

    /** Offset of avail_event: just after used.ring[size] (§2.7.8). */
    static long availEvent(int size) {
        return USED_RING + (long) USED_ELEM_SIZE * size;
    }

    /**
     * {@code vring_need_event} (§2.7.10, "Helpers for Operating Virtqueues"): whether moving an index from
     * {@code oldIdx} to {@code newIdx} crossed {@code eventIdx}. All arithmetic is modulo 2^16, so it holds
     * across wraparound.
     */
    static boolean needEvent(int eventIdx, int newIdx, int oldIdx) {
        return ((newIdx - eventIdx - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
    }
}
