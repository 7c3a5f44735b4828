package io.jvirtio.core.queue.split;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.QueueState;
import io.jvirtio.core.queue.RingAddresses;
import io.jvirtio.core.queue.RingError;
import io.jvirtio.core.queue.TakenOrder;
import io.jvirtio.core.queue.VirtqueueException;
import io.jvirtio.core.spec.Feature;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;

import static io.jvirtio.core.queue.split.Virtq.AVAIL_FLAGS;
import static io.jvirtio.core.queue.split.Virtq.AVAIL_F_NO_INTERRUPT;
import static io.jvirtio.core.queue.split.Virtq.AVAIL_IDX;
import static io.jvirtio.core.queue.split.Virtq.USED_FLAGS;
import static io.jvirtio.core.queue.split.Virtq.USED_F_NO_NOTIFY;
import static io.jvirtio.core.queue.split.Virtq.USED_IDX;

/**
 * The device side of a split virtqueue — what a VMM or a vhost-user backend runs (VIRTIO 1.2 §2.7).
 *
 * <p>The loop a device runs (the same on every transport):
 * <pre>{@code
 * do {
 *     queue.disableNotifications();
 *     while (queue.pop(chain)) {
 *         int written = process(chain);
 *         queue.addUsed(chain.head(), written);
 *     }
 *     queue.publishUsed();
 *     if (queue.needsNotification()) interrupt.raise();
 * } while (queue.enableNotifications());   // true: the driver added more meanwhile
 * }</pre>
 *
 * <p>Everything read from the ring is untrusted: the available index, each head, each descriptor. A
 * violation raises a {@link VirtqueueException} and leaves the queue broken — every later call throws
 * the same error — so the device sets DEVICE_NEEDS_RESET. One thread owns a {@code DeviceQueue}; the
 * per-buffer path neither allocates nor locks.
 */
public final class SplitDeviceQueue implements DeviceQueue {
    private final GuestMemory memory;
    private final int index;
    private final SplitRing ring;
    private final int size;
    private final int mask;
    private final boolean eventIdx;
    private final boolean indirect;
    /** VIRTIO_F_IN_ORDER: the heads in the order taken (null without it). */
    private final TakenOrder taken;
    /**
     * IN_ORDER: the used-ring position of the open batch — buffers the device filled completely, whose one
     * entry the next buffer used overwrites (§2.7.9: one entry per batch, for its last buffer).
     */
    private int batchPos;
    private boolean batchOpen;

    private int nextAvail;
    private int shadowAvailIdx;
    private int nextUsed;
    private int signalledUsed;
    private boolean signalledUsedValid;
    private boolean notificationsEnabled = true;
    private VirtqueueException broken;
    private SplitInflight inflight;
    private int[] resubmit = new int[0];
    private int resubmitNext;
    /** The dirty log while live migration logs (null otherwise): read on every used element, hence volatile. */
    private volatile io.jvirtio.core.memory.DirtyLog log;
    /** Whether the used ring's own writes are logged too (vhost-user VHOST_VRING_F_LOG). */
    private volatile boolean logUsedRing;
    private final long usedGpa;

    private SplitDeviceQueue(GuestMemory memory, int index, SplitRing ring, long features, QueueState state, long usedGpa) {
        this.usedGpa = usedGpa;
        this.memory = memory;
        this.index = index;
        this.ring = ring;
        this.size = ring.size;
        this.mask = ring.size - 1;
        this.eventIdx = Feature.EVENT_IDX.isSet(features);
        this.indirect = Feature.INDIRECT_DESC.isSet(features);
        this.taken = Feature.IN_ORDER.isSet(features) ? new TakenOrder(size, index) : null;
        this.nextAvail = state.nextAvail();
        this.shadowAvailIdx = state.nextAvail();
        this.nextUsed = state.nextUsed();
        this.signalledUsed = nextUsed;
    }

    /**
     * A device queue over the ring the driver placed at {@code addresses}.
     *
     * @param features the negotiated features (EVENT_IDX and INDIRECT_DESC matter here)
     * @param state    where to resume; {@link QueueState#INITIAL} after a reset
     * @throws VirtqueueException if a ring part is outside guest memory or misaligned
     */
    public static SplitDeviceQueue create(GuestMemory memory, int queueIndex, int size, RingAddresses addresses,
                                     long features, QueueState state) throws VirtqueueException {
        return new SplitDeviceQueue(memory, queueIndex, SplitRing.map(memory, queueIndex, size, addresses), features, state,
                addresses.usedRing());
    }

    public int index() {
        return index;
    }

    public int size() {
        return size;
    }

    /**
     * Logs every byte this queue writes into guest memory from now on (live migration), or stops when
     * {@code log} is null: the data of each used chain's writable buffers, up to its used length, and — with
     * {@code usedRing} — the used ring's element, index and {@code avail_event}/flags, each after its write.
     * Any thread; takes effect at the next used element.
     */
    public void logTo(io.jvirtio.core.memory.DirtyLog log, boolean usedRing) {
        this.logUsedRing = usedRing;
        this.log = log;
    }

    private void logUsed(long offset, int length) {
        io.jvirtio.core.memory.DirtyLog l = log;
        if (l != null && logUsedRing) {
            l.mark(usedGpa + offset, length);
        }
    }

    /** The current ring position, for GET_VRING_BASE or migration. */
    public QueueState state() {
        return new QueueState(nextAvail, nextUsed);
    }

    /** The error that broke this queue, or null. */
    public VirtqueueException error() {
        return broken;
    }

    /**
     * How many chains the driver has made available and the device has not popped yet. Reads
     * {@code avail.idx} with acquire semantics, so the ring entries and descriptors behind it are visible.
     *
     * @throws VirtqueueException ({@link RingError.AvailIndexJump}) if the index moved more than the queue size
     */
    public int available() throws VirtqueueException {
        checkBroken();
        int availIdx = GuestMemory.getU16Acquire(ring.avail, AVAIL_IDX);
        int pending = (availIdx - nextAvail) & 0xffff;
        if (pending > size) {
            throw breakWith(new RingError.AvailIndexJump(availIdx, nextAvail, size));
        }
        shadowAvailIdx = availIdx;
        return pending;
    }

    /**
     * Takes the next available chain into {@code chain}, walked and validated (§2.7.5).
     *
     * @return false if the driver has made nothing more available
     * @throws VirtqueueException if the head or any descriptor of the chain breaks a rule of §2.7
     */
    public boolean pop(DescriptorChain chain) throws VirtqueueException {
        if (resubmitNext < resubmit.length) {
            return popResubmitted(chain);
        }
        if (nextAvail == shadowAvailIdx && available() == 0) {
            return false;
        }
        checkBroken();
        int head = Short.toUnsignedInt(ring.avail.get(GuestMemory.U16, Virtq.availRing(nextAvail & mask)));
        if (head >= size) {
            throw breakWith(new RingError.HeadOutOfRange(head, size));
        }
        try {
            SplitChains.load(chain, memory, ring, index, head, indirect);
        } catch (VirtqueueException e) {
            broken = e;
            throw e;
        }
        taken(head);
        return true;
    }

    /** The chain at {@code head}, read at {@code nextAvail}, is the device's now. */
    private void taken(int head) {
        nextAvail = (nextAvail + 1) & 0xffff;
        if (inflight != null) {
            inflight.begin(head);
        }
        if (taken != null) {
            taken.taken(head);
        }
        if (eventIdx && notificationsEnabled) {
            // §2.7.10: with notifications on, ask to be told about the entry after the one just taken.
            ring.used.set(GuestMemory.U16, Virtq.availEvent(size), (short) nextAvail);
            logUsed(Virtq.availEvent(size), 2);
        }
    }

    /** {@inheritDoc} Split: the chains at the next entries of the available ring; the tag is the entry's index. */
    @Override
    public int peek(DescriptorChain[] chains, int max) throws VirtqueueException {
        checkBroken();
        if (resubmitNext < resubmit.length) {
            return 0;
        }
        int n = Math.min(Math.min(available(), max), chains.length);
        for (int i = 0; i < n; i++) {
            int at = (nextAvail + i) & 0xffff;
            int head = Short.toUnsignedInt(ring.avail.get(GuestMemory.U16, Virtq.availRing(at & mask)));
            if (head >= size) {
                throw breakWith(new RingError.HeadOutOfRange(head, size));
            }
            try {
                SplitChains.load(chains[i], memory, ring, index, head, indirect);
            } catch (VirtqueueException e) {
                broken = e;
                throw e;
            }
            chains[i].setRingTag(at);
        }
        return n;
    }

    @Override
    public void take(DescriptorChain chain) throws VirtqueueException {
        checkBroken();
        if (chain.ringTag() != nextAvail || resubmitNext < resubmit.length) {
            throw new IllegalStateException("queue " + index + ": the chain read at available entry " + chain.ringTag()
                    + " is taken where entry " + nextAvail + " is next");
        }
        taken(chain.head());
    }

    /** Bytes of one queue's in-flight log (QueueRegionSplit) for a ring of {@code size}. */
    public static long inflightBytes(int size) {
        return SplitInflight.bytes(size);
    }

    /**
     * {@inheritDoc} The split layout records heads only: resubmitted chains are read again from the descriptor
     * table, which the driver leaves alone until they are used; the available index resumes after them.
     */
    @Override
    public void trackInflight(MemorySegment region) throws VirtqueueException {
        SplitInflight log = SplitInflight.attach(region, size, index);
        this.inflight = log;
        if (log.fresh()) {
            return;
        }
        int usedIdx = GuestMemory.getU16Acquire(ring.used, USED_IDX);
        int[] heads = log.recover(usedIdx);
        for (int h : heads) {
            if (h >= size) {
                throw breakWith(new RingError.HeadOutOfRange(h, size));
            }
        }
        this.resubmit = heads;
        this.resubmitNext = 0;
        this.nextUsed = usedIdx;
        this.signalledUsed = usedIdx;
        this.nextAvail = (usedIdx + heads.length) & 0xffff;
        this.shadowAvailIdx = nextAvail;
    }

    private boolean popResubmitted(DescriptorChain chain) throws VirtqueueException {
        int head = resubmit[resubmitNext++];
        try {
            SplitChains.load(chain, memory, ring, index, head, indirect);
        } catch (VirtqueueException e) {
            broken = e;
            throw e;
        }
        if (taken != null) {
            taken.taken(head);
        }
        return true;
    }

    /**
     * Gives back the chain popped last, which the device has not used (QEMU's {@code virtqueue_unpop},
     * rust-vmm's {@code go_to_previous_position}): the next {@link #pop} returns it again. For a device
     * that popped buffers for a packet and then found there are too few to hold it.
     */
    public void undoPop() {
        if (inflight != null) {
            throw new IllegalStateException("undoPop cannot be combined with in-flight tracking");
        }
        nextAvail = (nextAvail - 1) & 0xffff;
        if (taken != null) {
            taken.untaken();
        }
    }

    /**
     * Stages a used element: the chain at {@code head} is done and the device wrote {@code len} bytes
     * into its writable buffers (§2.7.8). Not visible to the driver until {@link #publishUsed()}.
     */
    public void addUsed(int head, int len) {
        addUsed(head, len, false);
    }

    /**
     * {@link #addUsed(int, int)} for {@code chain}, whose writable buffers the device filled with {@code len}
     * bytes from their start: while logging, their pages are marked dirty first (they were written before).
     * With IN_ORDER a chain filled completely shares its used element with the next one (§2.7.9).
     */
    public void addUsed(DescriptorChain chain, int len) {
        io.jvirtio.core.memory.DirtyLog l = log;
        if (l != null) {
            chain.markWritten(l, len);
        }
        addUsed(chain.head(), len, taken != null && len == chain.writableBytes());
    }

    private void addUsed(int head, int len, boolean full) {
        if (head < 0 || head >= size) {
            throw new IllegalArgumentException("head " + head + " is not below queue size " + size);
        }
        if (taken != null) {
            taken.used(head);
        }
        // IN_ORDER: one used element per batch, at the position of its first buffer, naming its last; the
        // driver takes the ones before as filled completely (§2.7.9 "In-order use of descriptors")
        int pos = batchOpen ? batchPos : nextUsed;
        long at = Virtq.usedRing(pos & mask);
        // the element (le32 id, le32 len) in one little-endian store: one check, one store per buffer
        ring.used.set(GuestMemory.U64, at, Integer.toUnsignedLong(head) | (long) len << 32);
        logUsed(at, 8);
        batchPos = pos;
        batchOpen = full;
        nextUsed = (nextUsed + 1) & 0xffff;
        if (inflight != null) {
            inflight.batchAdd(head);
        }
    }

    /**
     * Publishes every staged used element with one store-release of {@code used.idx}: the elements are
     * written before the index, as §2.7.8 requires, and a batch costs one index update.
     */
    public void publishUsed() {
        batchOpen = false; // the driver may consume the element now: the next buffer gets one of its own
        GuestMemory.setU16Release(ring.used, USED_IDX, nextUsed);
        logUsed(USED_IDX, 2); // the index last: the front-end sees the elements' pages no later than it

        if (inflight != null) {
            inflight.batchPublished(nextUsed);
        }
    }

    /**
     * Whether the driver wants a used-buffer notification for what was published since the last one
     * (§2.7.7): with EVENT_IDX, whether {@code used.idx} crossed {@code used_event}; without, whether
     * {@code VIRTQ_AVAIL_F_NO_INTERRUPT} is clear.
     */
    public boolean needsNotification() {
        // The used.idx store must be visible before we read the driver's suppression fields, or both
        // sides could decide the other one will act (the lost-wakeup race of §2.7.7 / §2.7.10).
        VarHandle.fullFence();
        int old = signalledUsed;
        boolean valid = signalledUsedValid;
        signalledUsed = nextUsed;
        signalledUsedValid = true;
        if (old == nextUsed) {
            return false; // nothing used since the last decision (or the start): an interrupt would be spurious
        }
        if (!eventIdx) {
            return (ring.avail.get(GuestMemory.U16, AVAIL_FLAGS) & AVAIL_F_NO_INTERRUPT) == 0;
        }
        if (!valid) {
            return true;
        }
        int usedEvent = Short.toUnsignedInt(ring.avail.get(GuestMemory.U16, Virtq.usedEvent(size)));
        return Virtq.needEvent(usedEvent, nextUsed, old);
    }

    /**
     * Asks the driver not to notify (§2.7.10). Without EVENT_IDX this sets {@code VIRTQ_USED_F_NO_NOTIFY};
     * with it, {@code avail_event} is simply left where it is, so the driver notifies at most once more.
     * Already off, nothing is written: a polling device calls this every round, and a store to the line of
     * {@code used.idx}, which the driver reads, would take that line from the driver's CPU each time.
     */
    public void disableNotifications() {
        if (!notificationsEnabled) {
            return;
        }
        notificationsEnabled = false;
        if (!eventIdx) {
            ring.used.set(GuestMemory.U16, USED_FLAGS, (short) USED_F_NO_NOTIFY);
            logUsed(USED_FLAGS, 2);
        }
    }

    /**
     * Asks the driver to notify again, then checks for buffers added in the meantime: returns true when
     * there is more to pop, so the device processes them instead of sleeping on a notification that the
     * driver decided not to send.
     */
    public boolean enableNotifications() throws VirtqueueException {
        notificationsEnabled = true;
        if (eventIdx) {
            ring.used.set(GuestMemory.U16, Virtq.availEvent(size), (short) nextAvail);
            logUsed(Virtq.availEvent(size), 2);
        } else {
            ring.used.set(GuestMemory.U16, USED_FLAGS, (short) 0);
            logUsed(USED_FLAGS, 2);
        }
        VarHandle.fullFence();
        return available() != 0;
    }

    private void checkBroken() throws VirtqueueException {
        if (broken != null) {
            throw broken;
        }
    }

    private VirtqueueException breakWith(RingError error) {
        broken = new VirtqueueException(index, error);
        return broken;
    }
}
