package io.jvirtio.core.queue.packed;

/**
 * The packed virtqueue's wire format (VIRTIO 1.2 §2.8): {@code struct pvirtq_desc} and
 * {@code struct pvirtq_event_suppress}, with their flags, and the ring sizes.
 */
public final class Packed {
    private Packed() {
    }

    /** {@code struct pvirtq_desc}: le64 addr, le32 len, le16 id, le16 flags. */
    public static final int DESC_SIZE = 16;
    public static final int DESC_ADDR = 0;
    public static final int DESC_LEN = 8;
    public static final int DESC_ID = 12;
    public static final int DESC_FLAGS = 14;

    public static final int F_NEXT = 1;
    public static final int F_WRITE = 2;
    public static final int F_INDIRECT = 4;
    /** §2.8.1: set to the driver's wrap counter when made available... */
    public static final int F_AVAIL = 1 << 7;
    /** ...and to the device's when used (with AVAIL equal to it). */
    public static final int F_USED = 1 << 15;

    /** {@code struct pvirtq_event_suppress}: le16 desc (offset : 15, wrap : 1), le16 flags. */
    public static final int EVENT_SIZE = 4;
    public static final int EVENT_DESC = 0;
    public static final int EVENT_FLAGS = 2;
    public static final int EVENT_FLAGS_ENABLE = 0;
    public static final int EVENT_FLAGS_DISABLE = 1;
    /** Only with VIRTIO_F_EVENT_IDX: notify when the descriptor at {@code desc} is made available / used. */
    public static final int EVENT_FLAGS_DESC = 2;

    /** Bit 15 of an event offset, of a {@code QueueState} index, of a poll position: the wrap counter. */
    public static final int WRAP = 1 << 15;

    /** Packed virtqueues have up to 2^15 entries (§2.8); the size need not be a power of two. */
    public static final int MAX_SIZE = 1 << 15;

    public static long descRingBytes(int size) {
        return (long) DESC_SIZE * size;
    }

    /** @throws IllegalArgumentException unless 1 ≤ size ≤ 2^15 */
    public static int checkSize(int size) {
        if (size < 1 || size > MAX_SIZE) {
            throw new IllegalArgumentException("a packed virtqueue has 1 to 32768 entries, not " + size);
        }
        return size;
    }

    /** The flags of a descriptor made available (driver) with wrap counter {@code wrap}: AVAIL = wrap, USED = !wrap. */
    static int availFlags(boolean wrap) {
        return wrap ? F_AVAIL : F_USED;
    }

    /** The flags of a descriptor used (device) with wrap counter {@code wrap}: AVAIL = USED = wrap. */
    static int usedFlags(boolean wrap) {
        return wrap ? F_AVAIL | F_USED : 0;
    }

    /** Whether {@code flags} mark a descriptor available in the lap whose wrap counter is {@code wrap}. */
    static boolean isAvail(int flags, boolean wrap) {
        return ((flags & F_AVAIL) != 0) == wrap && ((flags & F_USED) != 0) != wrap;
    }

    /** Whether {@code flags} mark a descriptor used in the lap whose wrap counter is {@code wrap}. */
    static boolean isUsed(int flags, boolean wrap) {
        return ((flags & F_AVAIL) != 0) == wrap && ((flags & F_USED) != 0) == wrap;
    }

    /**
     * Linux's {@code vring_need_event} for a packed ring (§2.8.10 with EVENT_IDX): whether moving from
     * {@code old} to {@code now} (ring slots, {@code now} in the lap whose wrap counter is {@code wrap}, {@code old}
     * that many slots before it, possibly in the previous lap) crossed the event at {@code offWrap}.
     */
    static boolean needEvent(int offWrap, int now, int old, boolean wrap, int size) {
        int event = offWrap & ~WRAP;
        if (((offWrap & WRAP) != 0) != wrap) {
            event -= size; // the event is in the previous lap
        }
        return ((now - event - 1) & 0xffff) < ((now - old) & 0xffff);
    }
}
