package io.jvirtio.core.queue.packed;

import io.jvirtio.core.queue.RingError;
import io.jvirtio.core.queue.VirtqueueException;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.util.Arrays;

import static io.jvirtio.core.memory.GuestMemory.U16;
import static io.jvirtio.core.memory.GuestMemory.U32;
import static io.jvirtio.core.memory.GuestMemory.U64;
import static io.jvirtio.core.queue.packed.Packed.DESC_ADDR;
import static io.jvirtio.core.queue.packed.Packed.DESC_FLAGS;
import static io.jvirtio.core.queue.packed.Packed.DESC_ID;
import static io.jvirtio.core.queue.packed.Packed.DESC_LEN;
import static io.jvirtio.core.queue.packed.Packed.DESC_SIZE;

/**
 * The in-flight log of one packed ring in memory that outlives the device (vhost-user
 * {@code VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD}, "Inflight I/O tracking", packed layout). Unlike the split
 * ring's, it keeps a copy of every descriptor the device took: used descriptors are written over the
 * available ones, so after a restart the ring no longer holds the lists still in flight.
 *
 * <pre>
 * struct QueueRegionPacked { u64 features; u16 version; u16 desc_num; u16 free_head; u16 old_free_head;
 *                            u16 used_idx; u16 old_used_idx; u8 used_wrap_counter; u8 old_used_wrap_counter;
 *                            u8 padding[7]; struct DescStatePacked desc[desc_num]; }      // desc at 32
 * struct DescStatePacked  { u8 inflight; u8 padding; u16 next; u16 last; u16 num; u64 counter;
 *                            u16 id; u16 flags; u32 len; u64 addr; }                      // 32 bytes
 * </pre>
 *
 * Entries form a free list from {@code free_head}; a buffer takes one entry per ring descriptor, the first
 * (its head) recording the count, the last entry and the order taken. A batch of used buffers returns their
 * entries, moves {@code used_idx}, writes the ring, clears the heads, and only then copies the new values to
 * the {@code old_*} fields: a device that dies in between is rolled back or forward by {@link #attach}
 * according to whether the driver could already see the batch.
 */
final class PackedInflight {
    static final int HEADER = 32;
    static final int ENTRY = 32;
    static final int VERSION = 1;
    private static final long OFF_VERSION = 8;
    private static final long OFF_DESC_NUM = 10;
    private static final long OFF_FREE_HEAD = 12;
    private static final long OFF_OLD_FREE_HEAD = 14;
    private static final long OFF_USED_IDX = 16;
    private static final long OFF_OLD_USED_IDX = 18;
    private static final long OFF_USED_WRAP = 20;
    private static final long OFF_OLD_USED_WRAP = 21;
    private static final long E_INFLIGHT = 0;
    private static final long E_NEXT = 2;
    private static final long E_LAST = 4;
    private static final long E_NUM = 6;
    private static final long E_COUNTER = 8;
    private static final long E_ID = 16;
    private static final long E_FLAGS = 18;
    private static final long E_LEN = 20;
    private static final long E_ADDR = 24;

    private final MemorySegment region;
    private final int size;
    private final int queueIndex;
    private long counter;
    /** Formatted by {@link #attach}: no previous device used it, the queue's own position stands. */
    private boolean fresh;
    /** {@code free_head}, mirrored: the device owns the log while it runs. */
    private int freeHead;

    private PackedInflight(MemorySegment region, int size, int queueIndex) {
        this.region = region;
        this.size = size;
        this.queueIndex = queueIndex;
    }

    /** Bytes one queue of {@code size} entries needs. */
    static long bytes(int size) {
        return HEADER + (long) ENTRY * size;
    }

    private static long entry(int e) {
        return HEADER + (long) ENTRY * e;
    }

    /**
     * The log in {@code region}. A region never used (version 0) is formatted — every entry free, linked in
     * order — and starts at the queue's position ({@code usedSlot}, {@code usedWrap}) from SET_VRING_BASE;
     * {@link #recover} then returns nothing. One a previous device left is checked by {@link #recover}.
     */
    static PackedInflight attach(MemorySegment region, int size, int queueIndex, int usedSlot, boolean usedWrap)
            throws VirtqueueException {
        PackedInflight log = new PackedInflight(region, size, queueIndex);
        if (region.byteSize() < bytes(size)) {
            throw log.invalid(region.byteSize() + " bytes for a packed queue of " + size + " needing " + bytes(size));
        }
        int version = Short.toUnsignedInt(region.get(U16, OFF_VERSION));
        if (version == 0) {
            region.asSlice(0, bytes(size)).fill((byte) 0);
            for (int e = 0; e < size; e++) {
                region.set(U16, entry(e) + E_NEXT, (short) (e + 1)); // the last links to desc_num: the end
            }
            region.set(U16, OFF_DESC_NUM, (short) size);
            log.setPosition(usedSlot, usedWrap);
            log.commit();
            region.set(U16, OFF_VERSION, (short) VERSION);
            log.fresh = true;
            return log;
        }
        int num = Short.toUnsignedInt(region.get(U16, OFF_DESC_NUM));
        if (version != VERSION || num != size) {
            throw log.invalid("version " + version + " with " + num + " descriptors, expected version " + VERSION
                    + " with " + size);
        }
        return log;
    }

    /** What a previous device left in flight: the head entries, oldest first, and where the used side stands. */
    record Recovered(int[] heads, int usedSlot, boolean usedWrap) {
    }

    /**
     * After a restart ("When reconnecting"): finishes or undoes a batch the device died publishing — finished
     * if the first used descriptor's flags in {@code desc} show the driver could see it — then frees what the
     * free list holds and returns the buffers still in flight, oldest first, each checked (entries inside the
     * table, lists of the recorded length ending at the recorded last entry, no entry in two lists, distinct
     * buffer ids below the queue size).
     */
    Recovered recover(MemorySegment desc) throws VirtqueueException {
        int usedIdx = u16(OFF_USED_IDX);
        int oldUsedIdx = u16(OFF_OLD_USED_IDX);
        int oldWrap = region.get(ValueLayout.JAVA_BYTE, OFF_OLD_USED_WRAP);
        int wrap = region.get(ValueLayout.JAVA_BYTE, OFF_USED_WRAP);
        if (oldUsedIdx >= size || usedIdx >= size || (oldWrap & ~1) != 0 || (wrap & ~1) != 0) {
            throw invalid("used index " + usedIdx + "/" + oldUsedIdx + " or wrap counter " + wrap + "/" + oldWrap
                    + " outside a ring of " + size);
        }
        if (usedIdx != oldUsedIdx || wrap != oldWrap) {
            // a batch was being published: the descriptor at old_used_idx still carries the available flags
            // of old_used_wrap_counter unless the device wrote the batch's first (last-stored) flags
            int flags = Short.toUnsignedInt(desc.get(U16, (long) oldUsedIdx * DESC_SIZE + DESC_FLAGS));
            int availFlags = Packed.availFlags(oldWrap != 0) & (Packed.F_AVAIL | Packed.F_USED);
            if ((flags & (Packed.F_AVAIL | Packed.F_USED)) != availFlags) {
                commit();
            }
        }
        // roll back whatever was in progress (a list half taken, or a batch the driver never saw)
        freeHead = u16(OFF_OLD_FREE_HEAD);
        region.set(U16, OFF_FREE_HEAD, (short) freeHead);
        setPosition(u16(OFF_OLD_USED_IDX), region.get(ValueLayout.JAVA_BYTE, OFF_OLD_USED_WRAP) != 0);

        boolean[] owned = new boolean[size];
        for (int e = freeHead; e != size; e = u16(entry(e) + E_NEXT)) {
            if (e > size || owned[e]) {
                throw invalid("free list from " + freeHead + " leaves the table or loops at entry " + e);
            }
            owned[e] = true;
            region.set(ValueLayout.JAVA_BYTE, entry(e) + E_INFLIGHT, (byte) 0);
        }
        int[] heads = new int[size];
        int n = 0;
        for (int e = 0; e < size; e++) {
            if (!owned[e] && region.get(ValueLayout.JAVA_BYTE, entry(e) + E_INFLIGHT) != 0) {
                heads[n++] = e;
            }
        }
        heads = Arrays.copyOf(heads, n);
        long[] counters = new long[n];
        boolean[] ids = new boolean[size];
        for (int i = 0; i < n; i++) {
            int head = heads[i];
            int num = num(head);
            if (num < 1 || num > size) {
                throw invalid("entry " + head + " records a list of " + num + " descriptors");
            }
            int e = head;
            for (int k = 0; ; k++) {
                if (e >= size || owned[e]) {
                    throw invalid("the list of entry " + head + " leaves the table or shares entry " + e);
                }
                owned[e] = true;
                if (k == num - 1) {
                    break;
                }
                e = next(e);
            }
            if (e != u16(entry(head) + E_LAST)) {
                throw invalid("the list of entry " + head + " ends at " + e + ", not at its recorded last entry");
            }
            int id = id(e);
            if (id >= size || ids[id]) {
                throw invalid("the list of entry " + head + " has buffer id " + id + (id >= size ? ", not below "
                        + size : ", also in flight in another list"));
            }
            ids[id] = true;
            counters[i] = region.get(U64, entry(head) + E_COUNTER);
            counter = Math.max(counter, counters[i]);
        }
        Integer[] order = new Integer[n];
        for (int i = 0; i < n; i++) {
            order[i] = i;
        }
        Arrays.sort(order, (a, b) -> Long.compare(counters[a], counters[b]));
        int[] oldestFirst = new int[n];
        for (int i = 0; i < n; i++) {
            oldestFirst[i] = heads[order[i]];
        }
        return new Recovered(oldestFirst, u16(OFF_USED_IDX), region.get(ValueLayout.JAVA_BYTE, OFF_USED_WRAP) != 0);
    }

    /**
     * The device took the list of {@code num} descriptors at {@code firstSlot} of {@code desc} (already
     * validated): copies them into entries from the free list. Returns the list's head entry.
     */
    int took(MemorySegment desc, int firstSlot, int num) throws VirtqueueException {
        int head = freeHead;
        int e = head;
        int last = head;
        int slot = firstSlot;
        for (int k = 0; k < num; k++) {
            if (e >= size) {
                throw invalid("free list exhausted at entry " + e + " (changed under the device)");
            }
            long from = (long) slot * DESC_SIZE;
            long to = entry(e);
            region.set(U64, to + E_ADDR, desc.get(U64, from + DESC_ADDR));
            region.set(U32, to + E_LEN, desc.get(U32, from + DESC_LEN));
            region.set(U16, to + E_ID, desc.get(U16, from + DESC_ID));
            region.set(U16, to + E_FLAGS, desc.get(U16, from + DESC_FLAGS));
            last = e;
            e = next(e);
            if (++slot == size) {
                slot = 0;
            }
        }
        long h = entry(head);
        region.set(U16, h + E_LAST, (short) last);
        region.set(U16, h + E_NUM, (short) num);
        region.set(U64, h + E_COUNTER, ++counter);
        region.set(ValueLayout.JAVA_BYTE, h + E_INFLIGHT, (byte) 1);
        freeHead = e;
        region.set(U16, OFF_FREE_HEAD, (short) e);
        // the list is whole before old_free_head moves past it: a device dying earlier rolls it back
        VarHandle.storeStoreFence();
        region.set(U16, OFF_OLD_FREE_HEAD, (short) e);
        return head;
    }

    /** Gives back the list just {@link #took taken} at {@code head} (an undone pop). */
    void untake(int head) {
        region.set(ValueLayout.JAVA_BYTE, entry(head) + E_INFLIGHT, (byte) 0);
        freeHead = head;
        region.set(U16, OFF_FREE_HEAD, (short) head);
        region.set(U16, OFF_OLD_FREE_HEAD, (short) head);
    }

    /** Publishing a batch, step 1: the used list at {@code head} returns its entries to the free list. */
    void returned(int head) {
        region.set(U16, entry(u16(entry(head) + E_LAST)) + E_NEXT, (short) freeHead);
        freeHead = head;
        region.set(U16, OFF_FREE_HEAD, (short) head);
    }

    /** Step 2: the used side moves to {@code slot} and {@code wrap}; the ring's flags are written after this. */
    void usedMoved(int slot, boolean wrap) {
        setPosition(slot, wrap);
        VarHandle.storeStoreFence();
    }

    /** Step 3, after the ring's flags: the batch's heads are no longer in flight. */
    void done(int head) {
        region.set(ValueLayout.JAVA_BYTE, entry(head) + E_INFLIGHT, (byte) 0);
    }

    /** Step 4: the batch is complete; a device dying from here on has nothing to undo. */
    void commit() {
        VarHandle.storeStoreFence();
        region.set(U16, OFF_OLD_FREE_HEAD, region.get(U16, OFF_FREE_HEAD));
        region.set(U16, OFF_OLD_USED_IDX, region.get(U16, OFF_USED_IDX));
        region.set(ValueLayout.JAVA_BYTE, OFF_OLD_USED_WRAP, region.get(ValueLayout.JAVA_BYTE, OFF_USED_WRAP));
        freeHead = u16(OFF_FREE_HEAD);
    }

    boolean fresh() {
        return fresh;
    }

    int num(int head) {
        return u16(entry(head) + E_NUM);
    }

    int next(int e) {
        return u16(entry(e) + E_NEXT);
    }

    int id(int e) {
        return u16(entry(e) + E_ID);
    }

    int flags(int e) {
        return u16(entry(e) + E_FLAGS);
    }

    int len(int e) {
        return region.get(U32, entry(e) + E_LEN);
    }

    long addr(int e) {
        return region.get(U64, entry(e) + E_ADDR);
    }

    /** The entry holding the last descriptor of the list at {@code head}: its id is the buffer's. */
    int last(int head) {
        return u16(entry(head) + E_LAST);
    }

    private void setPosition(int slot, boolean wrap) {
        region.set(U16, OFF_USED_IDX, (short) slot);
        region.set(ValueLayout.JAVA_BYTE, OFF_USED_WRAP, (byte) (wrap ? 1 : 0));
    }

    private int u16(long offset) {
        return Short.toUnsignedInt(region.get(U16, offset));
    }

    private VirtqueueException invalid(String reason) {
        return new VirtqueueException(queueIndex, new RingError.InflightLogInvalid(reason));
    }
}
