package io.jvirtio.core.queue.packed;

import io.jvirtio.core.memory.DirtyLog;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.QueueState;
import io.jvirtio.core.queue.RingAddresses;
import io.jvirtio.core.queue.RingError;
import io.jvirtio.core.queue.RingPart;
import io.jvirtio.core.queue.TakenOrder;
import io.jvirtio.core.queue.VirtqueueException;
import io.jvirtio.core.spec.Feature;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;

import static io.jvirtio.core.queue.packed.Packed.DESC_FLAGS;
import static io.jvirtio.core.queue.packed.Packed.DESC_LEN;
import static io.jvirtio.core.queue.packed.Packed.DESC_SIZE;
import static io.jvirtio.core.queue.packed.Packed.EVENT_DESC;
import static io.jvirtio.core.queue.packed.Packed.EVENT_FLAGS;
import static io.jvirtio.core.queue.packed.Packed.EVENT_FLAGS_DESC;
import static io.jvirtio.core.queue.packed.Packed.EVENT_FLAGS_DISABLE;
import static io.jvirtio.core.queue.packed.Packed.EVENT_FLAGS_ENABLE;
import static io.jvirtio.core.queue.packed.Packed.F_WRITE;
import static io.jvirtio.core.queue.packed.Packed.WRAP;

/**
 * The device side of a packed virtqueue (VIRTIO 1.2 §2.8). It reads driver descriptors in ring order at
 * {@code nextAvail} (a descriptor is available when its AVAIL bit equals the device's view of the driver's
 * wrap counter and its USED bit does not), and writes one used descriptor per buffer, in completion order,
 * at {@code nextUsed}, then skips the remaining slots of that buffer's list (§2.8.7).
 *
 * <p>Everything read from the ring is untrusted: each descriptor's flags, the buffer id (out of range, or
 * already in flight), the chain's length, indirect tables, addresses. A violation breaks the queue with a
 * {@link RingError}. Used descriptors are staged by {@link #addUsed} and made visible by {@link #publishUsed}
 * with the first one's flags stored last, so the driver sees a batch whole. One thread owns the queue; the
 * per-buffer path neither allocates nor locks.
 */
public final class PackedDeviceQueue implements DeviceQueue {
    private final GuestMemory memory;
    private final int index;
    private final int size;
    private final MemorySegment desc;
    /** Driver Event Suppression (driver area): read by the device, for used-buffer notifications. */
    private final MemorySegment driverEvent;
    /** Device Event Suppression (device area): written by the device, for available-buffer notifications. */
    private final MemorySegment deviceEvent;
    private final long descGpa;
    private final long deviceEventGpa;
    private final boolean eventIdx;
    private final boolean indirect;

    private int nextAvail;
    private boolean availWrap;
    private int nextUsed;
    private boolean usedWrap;
    /** Ring slots each buffer id in flight took (what the used side skips); 0 when the id is free. */
    private final int[] slots;
    /**
     * Used descriptors staged since the last publish: their slots, and what goes into each — len, id and flags,
     * laid out as at DESC_LEN (§2.8.13) — written together at the publish, so the lines the driver is writing
     * its next descriptors into are touched once per batch, not once per buffer.
     */
    private final int[] stagedSlot;
    private final long[] stagedUsed;
    private int staged;
    /** VIRTIO_F_IN_ORDER: the ids in the order taken (null without it). */
    private final TakenOrder order;
    /**
     * IN_ORDER: the last staged descriptor stands for buffers the device filled completely; the next buffer
     * used overwrites it (§2.8.8 "In-order use of descriptors": one used descriptor per batch).
     */
    private boolean batchOpen;
    /** Slots used since the last notification decision, for EVENT_IDX. */
    private int usedSinceSignal;
    private boolean signalledValid;
    private boolean notificationsEnabled = true;
    private VirtqueueException broken;
    /**
     * For {@link #undoPop}: the ids popped since the last used buffer, so several pops can be given back, last
     * first (each one's slot count says how far back its list started).
     */
    private final int[] popId;
    private int pops;
    private volatile DirtyLog log;
    private volatile boolean logRing;
    /** vhost-user in-flight tracking, when on: the log, each id's head entry in it, the used heads staged. */
    private PackedInflight inflight;
    private int[] entryOf;
    private int[] stagedEntry;
    private int stagedEntries;
    /** Head entries a previous device left in flight, handed out by {@link #pop} before new buffers. */
    private int[] resubmit = new int[0];
    private int resubmitNext;

    private PackedDeviceQueue(GuestMemory memory, int index, int size, RingAddresses addresses, long features,
                              QueueState state) throws VirtqueueException {
        this.memory = memory;
        this.index = index;
        this.size = Packed.checkSize(size);
        this.desc = RingPart.map(memory, index, "descriptor ring", addresses.descTable(), Packed.descRingBytes(size), 16);
        this.driverEvent = RingPart.map(memory, index, "driver area", addresses.availRing(), Packed.EVENT_SIZE, 4);
        this.deviceEvent = RingPart.map(memory, index, "device area", addresses.usedRing(), Packed.EVENT_SIZE, 4);
        this.descGpa = addresses.descTable();
        this.deviceEventGpa = addresses.usedRing();
        this.eventIdx = Feature.EVENT_IDX.isSet(features);
        this.indirect = Feature.INDIRECT_DESC.isSet(features);
        this.nextAvail = state.nextAvail() & ~WRAP;
        this.availWrap = (state.nextAvail() & WRAP) != 0;
        this.nextUsed = state.nextUsed() & ~WRAP;
        this.usedWrap = (state.nextUsed() & WRAP) != 0;
        if (nextAvail >= size || nextUsed >= size) {
            throw new IllegalArgumentException("packed ring position " + state + " outside a ring of " + size);
        }
        this.slots = new int[size];
        this.stagedSlot = new int[size];
        this.stagedUsed = new long[size];
        this.popId = new int[size];
        this.order = Feature.IN_ORDER.isSet(features) ? new TakenOrder(size, index) : null;
    }

    /**
     * A device queue over the packed ring the driver placed at {@code addresses}: descriptor ring, driver area
     * ({@link RingAddresses#availRing()}), device area ({@link RingAddresses#usedRing()}).
     *
     * @param state where to resume; {@link QueueState#INITIAL_PACKED} after a reset
     * @throws VirtqueueException if a part is outside guest memory or misaligned
     */
    public static PackedDeviceQueue create(GuestMemory memory, int queueIndex, int size, RingAddresses addresses,
                                           long features, QueueState state) throws VirtqueueException {
        return new PackedDeviceQueue(memory, queueIndex, size, addresses, features, state);
    }

    @Override
    public int index() {
        return index;
    }

    @Override
    public int size() {
        return size;
    }

    @Override
    public void logTo(DirtyLog log, boolean ringToo) {
        this.logRing = ringToo;
        this.log = log;
    }

    @Override
    public QueueState state() {
        return new QueueState(nextAvail | (availWrap ? WRAP : 0), nextUsed | (usedWrap ? WRAP : 0));
    }

    @Override
    public VirtqueueException error() {
        return broken;
    }

    @Override
    public boolean pop(DescriptorChain chain) throws VirtqueueException {
        checkBroken();
        if (resubmitNext < resubmit.length) {
            return popResubmitted(chain);
        }
        // §2.8.1: the head's flags (load-acquire) expose the whole list the driver wrote before them.
        int flags = GuestMemory.getU16Acquire(desc, (long) nextAvail * DESC_SIZE + DESC_FLAGS);
        if (!Packed.isAvail(flags, availWrap)) {
            return false;
        }
        int first = nextAvail;
        int taken;
        try {
            taken = PackedChains.walk(chain, memory, desc, size, index, first, availWrap, flags, indirect);
        } catch (VirtqueueException e) {
            broken = e;
            throw e;
        }
        taken(chain, first, taken);
        return true;
    }

    /**
     * {@inheritDoc} Packed: the lists from the next available descriptor on, while their heads' flags say
     * available; the tag holds each one's first slot, the wrap counter there and its slot count.
     */
    @Override
    public int peek(DescriptorChain[] chains, int max) throws VirtqueueException {
        checkBroken();
        if (resubmitNext < resubmit.length) {
            return 0;
        }
        int at = nextAvail;
        boolean wrap = availWrap;
        int n = 0;
        int limit = Math.min(max, chains.length);
        while (n < limit) {
            int flags = GuestMemory.getU16Acquire(desc, (long) at * DESC_SIZE + DESC_FLAGS);
            if (!Packed.isAvail(flags, wrap)) {
                break;
            }
            int taken;
            try {
                taken = PackedChains.walk(chains[n], memory, desc, size, index, at, wrap, flags, indirect);
            } catch (VirtqueueException e) {
                broken = e;
                throw e;
            }
            chains[n++].setRingTag(at | (wrap ? 1L << 16 : 0) | (long) taken << 17);
            at += taken;
            if (at >= size) {
                at -= size;
                wrap = !wrap;
            }
        }
        return n;
    }

    @Override
    public void take(DescriptorChain chain) throws VirtqueueException {
        checkBroken();
        long tag = chain.ringTag();
        if ((int) (tag & 0xffff) != nextAvail || (tag & 1L << 16) != 0 != availWrap || resubmitNext < resubmit.length) {
            throw new IllegalStateException("queue " + index + ": the list read at descriptor " + (tag & 0xffff)
                    + " is taken where descriptor " + nextAvail + " is next");
        }
        taken(chain, nextAvail, (int) (tag >>> 17));
    }

    /** The list of {@code taken} descriptors at {@code first}, read into {@code chain}, is the device's now. */
    private void taken(DescriptorChain chain, int first, int taken) throws VirtqueueException {
        int id = chain.head();
        try {
            if (slots[id] != 0) {
                throw chain.fail(index, new RingError.BufferIdInFlight(first, id));
            }
            if (inflight != null) {
                entryOf[id] = inflight.took(desc, first, taken);
            }
        } catch (VirtqueueException e) {
            broken = e;
            throw e;
        }
        slots[id] = taken;
        if (order != null) {
            order.taken(id);
        }
        popId[pops++] = id;
        nextAvail += taken;
        if (nextAvail >= size) {
            nextAvail -= size;
            availWrap = !availWrap;
        }
        if (eventIdx && notificationsEnabled) {
            // ask to be told about the descriptor after the one just taken (as the split ring's avail_event)
            writeDeviceEvent(EVENT_FLAGS_DESC);
        }
    }

    /** Gives back the last buffer popped (again for the one before, and so on) since the last one used. */
    @Override
    public void undoPop() {
        if (pops == 0) {
            throw new IllegalStateException("queue " + index + ": nothing popped to give back");
        }
        int id = popId[--pops];
        nextAvail -= slots[id];
        if (nextAvail < 0) {
            nextAvail += size;
            availWrap = !availWrap;
        }
        slots[id] = 0;
        if (order != null) {
            order.untaken();
        }
        if (inflight != null) {
            inflight.untake(entryOf[id]);
        }
    }

    /** Bytes of one queue's in-flight log (QueueRegionPacked) for a ring of {@code size}. */
    public static long inflightBytes(int size) {
        return PackedInflight.bytes(size);
    }

    /**
     * {@inheritDoc} The packed layout keeps a copy of each list taken (the ring's slots are overwritten by used
     * descriptors), so resubmitted buffers are rebuilt from the log, their indirect tables from guest memory;
     * the used position comes from the log and the available one follows the lists still in flight.
     */
    @Override
    public void trackInflight(MemorySegment region) throws VirtqueueException {
        PackedInflight l = PackedInflight.attach(region, size, index, nextUsed, usedWrap);
        entryOf = new int[size];
        stagedEntry = new int[size];
        inflight = l;
        if (l.fresh()) {
            return;
        }
        PackedInflight.Recovered r = l.recover(desc);
        java.util.Arrays.fill(slots, 0);
        int slot = r.usedSlot();
        boolean wrap = r.usedWrap();
        nextUsed = slot;
        usedWrap = wrap;
        for (int head : r.heads()) {
            int id = l.id(l.last(head));
            int n = l.num(head);
            slots[id] = n;
            entryOf[id] = head;
            slot += n;
            if (slot >= size) {
                slot -= size;
                wrap = !wrap;
            }
        }
        nextAvail = slot;
        availWrap = wrap;
        resubmit = r.heads();
        resubmitNext = 0;
        usedSinceSignal = 0;
        signalledValid = false;
    }

    /** A list a previous device took, rebuilt from the log with the same checks as one read from the ring. */
    private boolean popResubmitted(DescriptorChain chain) throws VirtqueueException {
        int head = resubmit[resubmitNext++];
        pops = 0; // already logged: there is nothing to give back
        try {
            PackedChains.walkLogged(chain, memory, inflight, index, head, indirect);
        } catch (VirtqueueException e) {
            broken = e;
            throw e;
        }
        if (order != null) {
            order.taken(chain.head());
        }
        return true;
    }

    @Override
    public void addUsed(int id, int len) {
        addUsed(id, len, false);
    }

    /** With IN_ORDER, a chain filled completely shares its used descriptor with the next one. */
    @Override
    public void addUsed(DescriptorChain chain, int len) {
        DirtyLog l = log;
        if (l != null) {
            chain.markWritten(l, len);
        }
        addUsed(chain.head(), len, order != null && len == chain.writableBytes());
    }

    private void addUsed(int id, int len, boolean full) {
        if (id < 0 || id >= size || slots[id] == 0) {
            throw new IllegalArgumentException("queue " + index + ": buffer id " + id + " is not in flight");
        }
        if (order != null) {
            order.used(id);
        }
        pops = 0;
        // §2.8.5: WRITE in a used descriptor says the device wrote into the buffer (len counts then)
        int write = len != 0 ? F_WRITE : 0;
        if (batchOpen) {
            // IN_ORDER: one used descriptor per batch, over the batch's first slot, naming its last buffer;
            // the driver takes the ones before as filled completely
            int at = staged - 1;
            int flags = (int) (stagedUsed[at] >>> 48) & ~F_WRITE | write;
            stagedUsed[at] = used(len, id, flags);
        } else {
            stagedSlot[staged] = nextUsed;
            stagedUsed[staged] = used(len, id, Packed.usedFlags(usedWrap) | write);
            staged++;
        }
        batchOpen = full;
        if (inflight != null) {
            stagedEntry[stagedEntries++] = entryOf[id];
        }
        int n = slots[id];
        slots[id] = 0;
        nextUsed += n;
        if (nextUsed >= size) {
            nextUsed -= size;
            usedWrap = !usedWrap;
        }
        usedSinceSignal += n;
    }

    /** A used descriptor's len, id and flags as one little-endian u64 at DESC_LEN (§2.8.13). */
    private static long used(int len, int id, int flags) {
        return Integer.toUnsignedLong(len) | (long) (id & 0xffff) << 32 | (long) (flags & 0xffff) << 48;
    }

    @Override
    public void publishUsed() {
        // Each descriptor's len, id and flags in one store-release, the first staged one last: the driver,
        // polling the first slot's flags, then finds the whole batch written (§2.8.21 "Multi-buffer requests").
        // With an in-flight log, the batch is logged around the ring writes in the order of vhost-user.rst
        // ("When supplying used buffers"), so a device dying at any point is rolled back or forward.
        batchOpen = false; // the driver may consume the descriptor now: the next buffer gets one of its own
        PackedInflight track = stagedEntries > 0 ? inflight : null;
        if (track != null) {
            for (int i = 0; i < stagedEntries; i++) {
                track.returned(stagedEntry[i]);
            }
            track.usedMoved(nextUsed, usedWrap);
        }
        DirtyLog l = logRing ? log : null;
        for (int i = staged - 1; i >= 0; i--) {
            long at = (long) stagedSlot[i] * DESC_SIZE;
            GuestMemory.setU64Release(desc, at + DESC_LEN, stagedUsed[i]);
            if (l != null) {
                l.mark(descGpa + at, DESC_SIZE);
            }
        }
        if (track != null) {
            for (int i = 0; i < stagedEntries; i++) {
                track.done(stagedEntry[i]);
            }
            track.commit();
            stagedEntries = 0;
        }
        staged = 0;
    }

    @Override
    public boolean needsNotification() {
        // Our used descriptors' flags must be visible before we read the driver's suppression structure.
        VarHandle.fullFence();
        int n = usedSinceSignal;
        boolean valid = signalledValid;
        usedSinceSignal = 0;
        signalledValid = true;
        if (n == 0) {
            return false;
        }
        int flags = Short.toUnsignedInt(driverEvent.get(GuestMemory.U16, EVENT_FLAGS)) & 3;
        if (flags == EVENT_FLAGS_DISABLE) {
            return false;
        }
        if (flags != EVENT_FLAGS_DESC || !eventIdx || !valid) {
            return true; // ENABLE, or DESC without EVENT_IDX (invalid: notify rather than lose one)
        }
        int offWrap = Short.toUnsignedInt(driverEvent.get(GuestMemory.U16, EVENT_DESC));
        return Packed.needEvent(offWrap, nextUsed, nextUsed - n, usedWrap, size);
    }

    /** Already off, nothing is written (a polling device calls this every round; the driver reads the line). */
    @Override
    public void disableNotifications() {
        if (!notificationsEnabled) {
            return;
        }
        notificationsEnabled = false;
        deviceEvent.set(GuestMemory.U16, EVENT_FLAGS, (short) EVENT_FLAGS_DISABLE);
        logEvent();
    }

    @Override
    public boolean enableNotifications() throws VirtqueueException {
        notificationsEnabled = true;
        writeDeviceEvent(eventIdx ? EVENT_FLAGS_DESC : EVENT_FLAGS_ENABLE);
        // Our event structure must be visible before we re-check the ring (§2.8.10).
        VarHandle.fullFence();
        checkBroken();
        int flags = GuestMemory.getU16Acquire(desc, (long) nextAvail * DESC_SIZE + DESC_FLAGS);
        return Packed.isAvail(flags, availWrap);
    }

    /** Device event suppression: {@code flags}, and with DESC the next descriptor the device will read. */
    private void writeDeviceEvent(int flags) {
        if (flags == EVENT_FLAGS_DESC) {
            deviceEvent.set(GuestMemory.U16, EVENT_DESC, (short) (nextAvail | (availWrap ? WRAP : 0)));
        }
        deviceEvent.set(GuestMemory.U16, EVENT_FLAGS, (short) flags);
        logEvent();
    }

    private void logEvent() {
        DirtyLog l = logRing ? log : null;
        if (l != null) {
            l.mark(deviceEventGpa, Packed.EVENT_SIZE);
        }
    }

    private void checkBroken() throws VirtqueueException {
        if (broken != null) {
            throw broken;
        }
    }
}
