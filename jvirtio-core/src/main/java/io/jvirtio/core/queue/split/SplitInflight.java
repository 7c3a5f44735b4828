package io.jvirtio.core.queue.split;

import io.jvirtio.core.queue.RingError;
import io.jvirtio.core.queue.VirtqueueException;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

import static io.jvirtio.core.memory.GuestMemory.U16;
import static io.jvirtio.core.memory.GuestMemory.U64;

/**
 * The in-flight log of one split ring in memory that outlives the device (vhost-user
 * {@code VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD}, "Inflight I/O tracking"): which heads the device took
 * and has not yet published as used, in the order it took them, so a restarted device can finish them.
 *
 * <pre>
 * struct QueueRegionSplit { u64 features; u16 version; u16 desc_num; u16 last_batch_head; u16 used_idx;
 *                           struct DescStateSplit { u8 inflight; u8 pad[5]; u16 next; u64 counter; } desc[desc_num]; }
 * </pre>
 */
public final class SplitInflight {
    static final int HEADER = 16;
    static final int ENTRY = 16;
    static final int VERSION = 1;
    private static final long OFF_VERSION = 8;
    private static final long OFF_DESC_NUM = 10;
    private static final long OFF_LAST_BATCH_HEAD = 12;
    private static final long OFF_USED_IDX = 14;

    private final MemorySegment region;
    private final int size;
    private long counter;
    private int batchHead = -1;
    /** Formatted by {@link #attach}: no previous device used it. */
    private boolean fresh;

    private SplitInflight(MemorySegment region, int size) {
        this.region = region;
        this.size = size;
    }

    /** Bytes one queue of {@code size} entries needs. */
    public static long bytes(int size) {
        return HEADER + (long) ENTRY * size;
    }

    /** Formats a region for a queue of {@code size}: all zero but the header. */
    static SplitInflight format(MemorySegment region, int size) {
        region.asSlice(0, bytes(size)).fill((byte) 0);
        region.set(U16, OFF_VERSION, (short) VERSION);
        region.set(U16, OFF_DESC_NUM, (short) size);
        return new SplitInflight(region, size);
    }

    /**
     * The log in {@code region}: formatted when never used (version 0, "an uninitialized buffer" in
     * vhost-user.rst), else one a previous device left, whose header is checked before use.
     *
     * @throws VirtqueueException ({@link RingError.InflightLogInvalid}) if the region is too small or its header
     *                            is not a version-1 log of {@code size} descriptors
     */
    public static SplitInflight attach(MemorySegment region, int size, int queueIndex) throws VirtqueueException {
        if (region.byteSize() < bytes(size)) {
            throw new VirtqueueException(queueIndex, new RingError.InflightLogInvalid(
                    region.byteSize() + " bytes for a queue of " + size + " needing " + bytes(size)));
        }
        int version = Short.toUnsignedInt(region.get(U16, OFF_VERSION));
        int num = Short.toUnsignedInt(region.get(U16, OFF_DESC_NUM));
        if (version == 0) {
            SplitInflight r = format(region, size);
            r.fresh = true;
            return r;
        }
        if (version != VERSION || num != size) {
            throw new VirtqueueException(queueIndex, new RingError.InflightLogInvalid("version " + version + " with "
                    + num + " descriptors, expected version " + VERSION + " with " + size));
        }
        SplitInflight r = new SplitInflight(region, size);
        for (int i = 0; i < size; i++) {
            r.counter = Math.max(r.counter, r.region.get(U64, entry(i) + 8));
        }
        return r;
    }

    boolean fresh() {
        return fresh;
    }

    private static long entry(int head) {
        return HEADER + (long) ENTRY * head;
    }

    /** The device took {@code head} from the available ring. */
    void begin(int head) {
        long e = entry(head);
        region.set(U64, e + 8, ++counter);
        region.set(ValueLayout.JAVA_BYTE, e, (byte) 1);
    }

    /** {@code head} is staged as used: it joins the batch that the next publish completes. */
    void batchAdd(int head) {
        region.set(U16, entry(head) + 6, (short) (batchHead < 0 ? head : batchHead));
        batchHead = head;
        region.set(U16, OFF_LAST_BATCH_HEAD, (short) head);
    }

    /** {@code used.idx} is now {@code usedIdx}: every head of the batch is done. */
    void batchPublished(int usedIdx) {
        int h = batchHead;
        while (h >= 0) {
            long e = entry(h);
            region.set(ValueLayout.JAVA_BYTE, e, (byte) 0);
            int next = Short.toUnsignedInt(region.get(U16, e + 6));
            h = next == h ? -1 : next;
        }
        batchHead = -1;
        region.set(U16, OFF_USED_IDX, (short) usedIdx);
    }

    /**
     * After a restart: clears the last batch if the device died between publishing it and logging that
     * (the ring's {@code used.idx} is ahead of the log's), and returns the heads still in flight, oldest
     * first — the device must finish them before taking new ones.
     */
    public int[] recover(int ringUsedIdx) {
        int logged = Short.toUnsignedInt(region.get(U16, OFF_USED_IDX));
        int batch = (ringUsedIdx - logged) & 0xffff;
        int h = Short.toUnsignedInt(region.get(U16, OFF_LAST_BATCH_HEAD));
        for (int i = 0; i < batch && h < size; i++) {
            long e = entry(h);
            region.set(ValueLayout.JAVA_BYTE, e, (byte) 0);
            int next = Short.toUnsignedInt(region.get(U16, e + 6));
            if (next == h) {
                break;
            }
            h = next;
        }
        region.set(U16, OFF_USED_IDX, (short) ringUsedIdx);
        List<long[]> inflight = new ArrayList<>();
        for (int i = 0; i < size; i++) {
            long e = entry(i);
            if (region.get(ValueLayout.JAVA_BYTE, e) != 0) {
                inflight.add(new long[] {region.get(U64, e + 8), i});
            }
        }
        inflight.sort(Comparator.comparingLong(a -> a[0]));
        int[] heads = new int[inflight.size()];
        for (int i = 0; i < heads.length; i++) {
            heads[i] = (int) inflight.get(i)[1];
        }
        return heads;
    }
}
