package io.jvirtio.core.queue.split;

import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.Doorbell;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.IndirectPool;
import io.jvirtio.core.queue.RingAddresses;
import io.jvirtio.core.queue.RingError;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.queue.UsedBatch;
import io.jvirtio.core.queue.VirtqueueException;
import io.jvirtio.core.spec.Feature;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;

import static io.jvirtio.core.queue.split.Virtq.AVAIL_FLAGS;
import static io.jvirtio.core.queue.split.Virtq.AVAIL_F_NO_INTERRUPT;
import static io.jvirtio.core.queue.split.Virtq.AVAIL_IDX;
import static io.jvirtio.core.queue.split.Virtq.DESC_ADDR;
import static io.jvirtio.core.queue.split.Virtq.DESC_FLAGS;
import static io.jvirtio.core.queue.split.Virtq.DESC_F_INDIRECT;
import static io.jvirtio.core.queue.split.Virtq.DESC_F_NEXT;
import static io.jvirtio.core.queue.split.Virtq.DESC_F_WRITE;
import static io.jvirtio.core.queue.split.Virtq.DESC_LEN;
import static io.jvirtio.core.queue.split.Virtq.DESC_NEXT;
import static io.jvirtio.core.queue.split.Virtq.DESC_SIZE;
import static io.jvirtio.core.queue.split.Virtq.USED_FLAGS;
import static io.jvirtio.core.queue.split.Virtq.USED_F_NO_NOTIFY;
import static io.jvirtio.core.queue.split.Virtq.USED_IDX;

/**
 * The driver side of a split virtqueue: Linux's {@code virtqueue_ops} with Java names (VIRTIO 1.2 §2.7.13,
 * §2.7.14).
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
 * <p>As in Linux, the caller serialises calls (one thread, or its own lock); the ring itself is shared
 * with the device only through acquire/release of the two indices. The free-descriptor list is kept in
 * host memory, not in the ring, so a device scribbling on descriptors cannot corrupt it. The per-buffer
 * path neither allocates nor locks.
 *
 * @param <T> the token type a caller attaches to each buffer and gets back from {@link #getBuf()}
 */
public final class SplitDriverQueue<T> implements DriverQueue<T> {
    private final GuestAllocator allocator;
    private final long ringBytes;
    private final int index;
    private final SplitRing ring;
    private final int size;
    private final int mask;
    private final boolean eventIdx;
    private final Doorbell doorbell;

    /** Indirect tables: one per head, allocated once. */
    private final IndirectPool indirect;
    private final int indirectMax;

    private final int[] nextFree;
    private final int[] chainLength;
    private final Object[] tokens;
    /**
     * VIRTIO_F_IN_ORDER: descriptors are used in ring order from 0 (§2.7.5), freed oldest first from
     * {@code oldestHead}; one used element may stand for a batch of them ({@code batch}).
     */
    private final boolean inOrder;
    private final UsedBatch batch;
    private int oldestHead;
    private final Scatterlist scratch = new Scatterlist();
    private int freeHead;
    private int numFree;

    private int availIdxShadow;
    private int availFlagsShadow;
    private int numAdded;
    private int lastUsedIdx;
    private int lastLength;
    private VirtqueueException broken;
    private boolean released;

    private SplitDriverQueue(GuestAllocator allocator, long ringBytes, int index, SplitRing ring, long features,
                        IndirectPool indirect, Doorbell doorbell) {
        this.allocator = allocator;
        this.ringBytes = ringBytes;
        this.index = index;
        this.ring = ring;
        this.size = ring.size;
        this.mask = ring.size - 1;
        this.eventIdx = Feature.EVENT_IDX.isSet(features);
        this.doorbell = doorbell;
        this.indirect = indirect;
        this.indirectMax = indirect.perTable();
        this.nextFree = new int[size];
        this.chainLength = new int[size];
        this.tokens = new Object[size];
        for (int i = 0; i < size; i++) {
            nextFree[i] = i + 1;
        }
        this.inOrder = Feature.IN_ORDER.isSet(features);
        this.batch = inOrder ? new UsedBatch(size) : null;
        if (inOrder) {
            nextFree[size - 1] = 0; // split-drv-5: the table is used as a ring, next of the last entry is 0
        }
        this.numFree = size;
    }

    /**
     * Allocates a queue's ring (and, with INDIRECT_DESC, one indirect table of {@code maxIndirect}
     * descriptors per head) from {@code allocator} and returns the driver side of it. Give the device
     * {@link #addresses()}.
     *
     * @param layout      {@link SplitLayout#modern(int)}, or {@link SplitLayout#legacy(int, int)} for a
     *                    legacy transport
     * @param features    the negotiated features
     * @param maxIndirect descriptors per indirect table; a request with more buffers goes direct
     * @param doorbell    how to notify the device
     */
    public static <T> SplitDriverQueue<T> allocate(GuestAllocator allocator, int queueIndex, SplitLayout layout,
                                              long features, int maxIndirect, Doorbell doorbell) {
        long base = allocator.allocate(layout.totalBytes(), 4096);
        IndirectPool pool = IndirectPool.allocate(allocator, layout.size(), features, maxIndirect);
        try {
            SplitRing ring = SplitRing.map(allocator.memory(), queueIndex, layout.size(), layout.at(base));
            return new SplitDriverQueue<>(allocator, layout.totalBytes(), queueIndex, ring, features, pool, doorbell);
        } catch (VirtqueueException e) {
            throw new AssertionError("allocator handed out memory outside guest memory", e);
        }
    }

    public int index() {
        return index;
    }

    /**
     * Gives the ring and indirect tables back to the allocator. Only after the device was reset (it no
     * longer reads the ring) and {@link #detachUnused()} took back what was in flight; the queue is
     * unusable afterwards.
     */
    public void release() {
        allocator.free(ring.addresses().descTable(), ringBytes);
        indirect.free(allocator);
        released = true;
    }

    public int size() {
        return size;
    }

    /** Where the ring lives, for the transport to tell the device. */
    public RingAddresses addresses() {
        return ring.addresses();
    }

    /** Free descriptors (Linux {@code vq->num_free}). */
    public int numFree() {
        return numFree;
    }

    /** True once the device has been caught writing something impossible into the used ring. */
    public boolean isBroken() {
        return broken != null;
    }

    /**
     * Exposes a buffer to the device (§2.7.13.1–3): descriptors, then the available-ring entry, then a
     * store-release of {@code avail.idx}. With INDIRECT_DESC and more than one buffer, the chain goes into
     * this head's indirect table and takes one ring descriptor.
     *
     * @return false when the ring has too few free descriptors (try again after {@link #getBuf()})
     * @throws IllegalArgumentException if the request needs more descriptors than the queue has
     */
    public boolean addBuf(Scatterlist sg, T token) {
        if (token == null) {
            throw new NullPointerException("token");
        }
        int total = sg.count();
        sg.checkFits(size, indirectMax);
        if (broken != null || released) {
            throw new IllegalStateException(released ? "queue " + index + " was released" : broken.getMessage(), broken);
        }
        boolean useIndirect = total > 1 && total <= indirectMax;
        int needed = useIndirect ? 1 : total;
        if (numFree < needed) {
            return false;
        }
        int head = freeHead;
        MemorySegment desc = ring.desc;
        if (useIndirect) {
            long slot = indirect.tableOffset(head);
            MemorySegment indirectPool = indirect.segment();
            for (int i = 0; i < total; i++) {
                long off = slot + (long) i * DESC_SIZE;
                writeDesc(indirectPool, off, sg.address(i), sg.length(i),
                        (i >= sg.readableCount() ? DESC_F_WRITE : 0) | (i + 1 < total ? DESC_F_NEXT : 0), i + 1);
            }
            writeDesc(desc, (long) head * DESC_SIZE, indirect.tableAddress(head), total * DESC_SIZE, DESC_F_INDIRECT, 0);
            freeHead = nextFree[head];
        } else {
            int i = head;
            for (int n = 0; n < total; n++) {
                boolean last = n + 1 == total;
                writeDesc(desc, (long) i * DESC_SIZE, sg.address(n), sg.length(n),
                        (n >= sg.readableCount() ? DESC_F_WRITE : 0) | (last ? 0 : DESC_F_NEXT), last ? 0 : nextFree[i]);
                if (!last) {
                    i = nextFree[i];
                }
            }
            freeHead = nextFree[i];
        }
        numFree -= needed;
        chainLength[head] = needed;
        tokens[head] = token;
        if (inOrder) {
            batch.added(head, sg);
        }
        ring.avail.set(GuestMemory.U16, Virtq.availRing(availIdxShadow & mask), (short) head);
        availIdxShadow = (availIdxShadow + 1) & 0xffff;
        GuestMemory.setU16Release(ring.avail, AVAIL_IDX, availIdxShadow);
        numAdded++;
        if (numAdded == 0xffff) {
            // The kick arithmetic works on 16-bit differences; never let unkicked additions reach 2^16.
            kick();
        }
        return true;
    }

    /** One device-readable buffer (Linux {@code virtqueue_add_outbuf}). */
    public boolean addOutBuf(long guestAddress, int len, T token) {
        return addBuf(scratch.clear().addReadable(guestAddress, len), token);
    }

    /** One device-writable buffer (Linux {@code virtqueue_add_inbuf}). */
    public boolean addInBuf(long guestAddress, int len, T token) {
        return addBuf(scratch.clear().addWritable(guestAddress, len), token);
    }

    private static void writeDesc(MemorySegment table, long off, long addr, int len, int flags, int next) {
        table.set(GuestMemory.U64, off + DESC_ADDR, addr);
        table.set(GuestMemory.U32, off + DESC_LEN, len);
        table.set(GuestMemory.U16, off + DESC_FLAGS, (short) flags);
        table.set(GuestMemory.U16, off + DESC_NEXT, (short) next);
    }

    /**
     * Whether the device wants to be notified of what was added since the last kick (§2.7.10): with
     * EVENT_IDX, whether {@code avail.idx} crossed {@code avail_event}; without, whether
     * {@code VIRTQ_USED_F_NO_NOTIFY} is clear.
     */
    public boolean kickPrepare() {
        // avail.idx must be visible before we read the device's suppression fields (§2.7.13.4).
        VarHandle.fullFence();
        int oldIdx = (availIdxShadow - numAdded) & 0xffff;
        int newIdx = availIdxShadow;
        numAdded = 0;
        if (eventIdx) {
            int availEvent = Short.toUnsignedInt(ring.used.get(GuestMemory.U16, Virtq.availEvent(size)));
            return Virtq.needEvent(availEvent, newIdx, oldIdx);
        }
        return (ring.used.get(GuestMemory.U16, USED_FLAGS) & USED_F_NO_NOTIFY) == 0;
    }

    /** Rings the doorbell unconditionally (Linux {@code virtqueue_notify}). */
    public void notifyDevice() {
        doorbell.ring(availIdxShadow); // NOTIFICATION_DATA: next_off and next_wrap are the 16-bit avail index
    }

    /** {@link #kickPrepare()} then, if needed, {@link #notifyDevice()}. Returns whether it notified. */
    public boolean kick() {
        if (kickPrepare()) {
            notifyDevice();
            return true;
        }
        return false;
    }

    /** True when the device has used buffers that {@link #getBuf()} has not returned yet. */
    public boolean hasUsed() {
        return GuestMemory.getU16Acquire(ring.used, USED_IDX) != lastUsedIdx;
    }

    /**
     * Takes the next used buffer (§2.7.14): its token, with the byte count the device wrote available
     * from {@link #lastLength()}. Returns null when there is none. The used element is read after a
     * load-acquire of {@code used.idx}.
     *
     * @throws VirtqueueException if the device reported an id that is not in flight; the queue is then broken
     */
    @SuppressWarnings("unchecked")
    public T getBuf() throws VirtqueueException {
        if (broken != null) {
            throw broken;
        }
        if (released) {
            throw new IllegalStateException("queue " + index + " was released");
        }
        int head;
        if (inOrder) {
            if (!batch.open() && !readBatch()) {
                return null;
            }
            head = oldestHead;
            lastLength = batch.take(head);
        } else {
            int usedIdx = GuestMemory.getU16Acquire(ring.used, USED_IDX);
            if (usedIdx == lastUsedIdx) {
                return null;
            }
            int inFlight = (availIdxShadow - lastUsedIdx) & 0xffff;
            if (((usedIdx - lastUsedIdx) & 0xffff) > inFlight) {
                throw breakWith(new RingError.UsedIndexJump(usedIdx, lastUsedIdx, inFlight));
            }
            long at = Virtq.usedRing(lastUsedIdx & mask);
            head = ring.used.get(GuestMemory.U32, at);
            int len = ring.used.get(GuestMemory.U32, at + 4);
            if (head < 0 || head >= size || tokens[head] == null) {
                throw breakWith(new RingError.BadUsedId(head, size));
            }
            lastLength = len;
        }
        T token = (T) tokens[head];
        detach(head);
        lastUsedIdx = (lastUsedIdx + 1) & 0xffff;
        if (eventIdx && (availFlagsShadow & AVAIL_F_NO_INTERRUPT) == 0) {
            // Callbacks on: ask for an interrupt at the next entry, and order that store before the
            // next read of used.idx (Linux virtio_store_mb).
            ring.avail.set(GuestMemory.U16, Virtq.usedEvent(size), (short) lastUsedIdx);
            VarHandle.fullFence();
        }
        return token;
    }

    /**
     * IN_ORDER: reads the used element at {@code lastUsedIdx}, which names the last buffer of a batch that
     * starts with the oldest in flight (§2.7.9); checks that it is one of ours and that {@code used.idx}
     * covers the whole batch.
     */
    private boolean readBatch() throws VirtqueueException {
        int usedIdx = GuestMemory.getU16Acquire(ring.used, USED_IDX);
        if (usedIdx == lastUsedIdx) {
            return false;
        }
        int inFlight = (availIdxShadow - lastUsedIdx) & 0xffff;
        int published = (usedIdx - lastUsedIdx) & 0xffff;
        if (published > inFlight) {
            throw breakWith(new RingError.UsedIndexJump(usedIdx, lastUsedIdx, inFlight));
        }
        long at = Virtq.usedRing(lastUsedIdx & mask);
        int id = ring.used.get(GuestMemory.U32, at);
        int len = ring.used.get(GuestMemory.U32, at + 4);
        int h = oldestHead;
        for (int n = 1; ; n++) {
            if (n > published) {
                // the named buffer is not among the oldest `published` in flight (or not ours at all)
                throw breakWith(new RingError.BadUsedId(id, size));
            }
            if (h == id) {
                break;
            }
            h = (h + chainLength[h]) & mask;
        }
        batch.open(id, len);
        return true;
    }

    /** Bytes the device wrote into the buffer most recently returned by {@link #getBuf()} (Linux's {@code *len}). */
    public int lastLength() {
        return lastLength;
    }

    private void detach(int head) {
        int n = chainLength[head];
        if (inOrder) {
            // chains are freed oldest first and the table stays a ring: nothing to relink
            numFree += n;
            tokens[head] = null;
            oldestHead = (head + n) & mask;
            return;
        }
        int last = head;
        if (n > 1) {
            for (int k = 1; k < n; k++) {
                last = nextFree[last];
            }
        }
        nextFree[last] = freeHead;
        freeHead = head;
        numFree += n;
        tokens[head] = null;
    }

    /**
     * Asks the device not to interrupt (§2.7.7). Without EVENT_IDX: sets {@code VIRTQ_AVAIL_F_NO_INTERRUPT}.
     * With it the flags MUST stay 0, so {@code used_event} is moved half the index space away from the
     * current position, where the device's index cannot reach it.
     */
    public void disableCallbacks() {
        if ((availFlagsShadow & AVAIL_F_NO_INTERRUPT) == 0) {
            availFlagsShadow |= AVAIL_F_NO_INTERRUPT;
            if (eventIdx) {
                ring.avail.set(GuestMemory.U16, Virtq.usedEvent(size), (short) (lastUsedIdx + 0x8000));
            } else {
                ring.avail.set(GuestMemory.U16, AVAIL_FLAGS, (short) availFlagsShadow);
            }
        }
    }

    /**
     * Re-enables interrupts and returns the position to {@link #poll(int)} (Linux
     * {@code virtqueue_enable_cb_prepare}).
     */
    public int enableCallbacksPrepare() {
        if ((availFlagsShadow & AVAIL_F_NO_INTERRUPT) != 0) {
            availFlagsShadow &= ~AVAIL_F_NO_INTERRUPT;
            if (!eventIdx) {
                ring.avail.set(GuestMemory.U16, AVAIL_FLAGS, (short) availFlagsShadow);
            }
        }
        if (eventIdx) {
            ring.avail.set(GuestMemory.U16, Virtq.usedEvent(size), (short) lastUsedIdx);
        }
        return lastUsedIdx;
    }

    /** True if buffers were used since {@code position} was returned by {@link #enableCallbacksPrepare()}. */
    public boolean poll(int position) {
        // The used_event / flags store must be visible before we re-read used.idx (§2.7.7 race).
        VarHandle.fullFence();
        return GuestMemory.getU16Acquire(ring.used, USED_IDX) != position;
    }

    /**
     * Re-enables interrupts. Returns false if buffers arrived in the race window — the caller then
     * processes them rather than waiting for an interrupt that may not come (Linux {@code virtqueue_enable_cb}).
     */
    public boolean enableCallbacks() {
        return !poll(enableCallbacksPrepare());
    }

    /**
     * Re-enables interrupts, but with EVENT_IDX asks for one only after about three quarters of the
     * outstanding buffers are used — for transmit queues that reclaim lazily (Linux
     * {@code virtqueue_enable_cb_delayed}). Returns false if that many were already used.
     */
    public boolean enableCallbacksDelayed() {
        if ((availFlagsShadow & AVAIL_F_NO_INTERRUPT) != 0) {
            availFlagsShadow &= ~AVAIL_F_NO_INTERRUPT;
            if (!eventIdx) {
                ring.avail.set(GuestMemory.U16, AVAIL_FLAGS, (short) availFlagsShadow);
            }
        }
        int bufs = ((availIdxShadow - lastUsedIdx) & 0xffff) * 3 / 4;
        ring.avail.set(GuestMemory.U16, Virtq.usedEvent(size), (short) (lastUsedIdx + bufs));
        VarHandle.fullFence();
        return ((GuestMemory.getU16Acquire(ring.used, USED_IDX) - lastUsedIdx) & 0xffff) <= bufs;
    }

    /**
     * Takes back one buffer the device never used — only after the device was reset, when nothing can race
     * (Linux {@code virtqueue_detach_unused_buf}). Returns null when none is left.
     */
    @SuppressWarnings("unchecked")
    public T detachUnused() {
        if (inOrder) {
            batch.clear();
            // oldest first, so the ring order of what is left stays true
            Object token = tokens[oldestHead];
            if (token == null) {
                return null;
            }
            detach(oldestHead);
            availIdxShadow = (availIdxShadow - 1) & 0xffff;
            GuestMemory.setU16Release(ring.avail, AVAIL_IDX, availIdxShadow);
            return (T) token;
        }
        for (int head = 0; head < size; head++) {
            Object token = tokens[head];
            if (token != null) {
                detach(head);
                availIdxShadow = (availIdxShadow - 1) & 0xffff;
                GuestMemory.setU16Release(ring.avail, AVAIL_IDX, availIdxShadow);
                return (T) token;
            }
        }
        return null;
    }

    private VirtqueueException breakWith(RingError error) {
        broken = new VirtqueueException(index, error);
        return broken;
    }
}
