package io.jvirtio.core.queue.packed;

import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.Doorbell;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.IndirectPool;
import io.jvirtio.core.queue.RingAddresses;
import io.jvirtio.core.queue.RingError;
import io.jvirtio.core.queue.RingPart;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.queue.UsedBatch;
import io.jvirtio.core.queue.VirtqueueException;
import io.jvirtio.core.spec.Feature;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;

import static io.jvirtio.core.queue.packed.Packed.DESC_ADDR;
import static io.jvirtio.core.queue.packed.Packed.DESC_FLAGS;
import static io.jvirtio.core.queue.packed.Packed.DESC_ID;
import static io.jvirtio.core.queue.packed.Packed.DESC_LEN;
import static io.jvirtio.core.queue.packed.Packed.DESC_SIZE;
import static io.jvirtio.core.queue.packed.Packed.EVENT_DESC;
import static io.jvirtio.core.queue.packed.Packed.EVENT_FLAGS;
import static io.jvirtio.core.queue.packed.Packed.EVENT_FLAGS_DESC;
import static io.jvirtio.core.queue.packed.Packed.EVENT_FLAGS_DISABLE;
import static io.jvirtio.core.queue.packed.Packed.EVENT_FLAGS_ENABLE;
import static io.jvirtio.core.queue.packed.Packed.F_INDIRECT;
import static io.jvirtio.core.queue.packed.Packed.F_NEXT;
import static io.jvirtio.core.queue.packed.Packed.F_WRITE;
import static io.jvirtio.core.queue.packed.Packed.WRAP;

/**
 * The driver side of a packed virtqueue (VIRTIO 1.2 §2.8), as Linux's {@code virtqueue_*_packed}: buffers are
 * written at {@code nextAvail} in ring order, each list's first descriptor's flags stored last with release
 * semantics; used descriptors are read in ring order at {@code lastUsed}, which then skips the slots of the
 * buffer the used descriptor names. Buffer ids are kept apart from ring slots, with their tokens and slot
 * counts in host memory, so a device scribbling on the ring cannot corrupt them. The caller serialises calls;
 * the per-buffer path neither allocates nor locks.
 *
 * @param <T> the token type a caller attaches to each buffer and gets back from {@link #getBuf()}
 */
public final class PackedDriverQueue<T> implements DriverQueue<T> {
    private final GuestAllocator allocator;
    private final int index;
    private final int size;
    private final RingAddresses addresses;
    private final long ringBytes;
    private final MemorySegment desc;
    /** Driver Event Suppression (driver area): written here, for used-buffer notifications. */
    private final MemorySegment driverEvent;
    /** Device Event Suppression (device area): read here, for available-buffer notifications. */
    private final MemorySegment deviceEvent;
    private final boolean eventIdx;
    private final Doorbell doorbell;

    /** Indirect tables: one per buffer id, allocated once. */
    private final IndirectPool indirect;
    private final int indirectMax;

    private final int[] nextFreeId;
    private final int[] slotsOf;
    private final Object[] tokens;
    /**
     * VIRTIO_F_IN_ORDER: the ids in the order made available; one used descriptor may stand for a batch of
     * them ({@code batch}) — §2.8.8.
     */
    private final boolean inOrder;
    private final IdOrder order;
    private final UsedBatch batch;
    /** The slot (with the wrap counter in bit 15) after the pending batch: where the device writes next. */
    private int batchEnd;
    private final Scatterlist scratch = new Scatterlist();
    private int freeId;
    private int numFree;
    private int inFlightSlots;

    private int nextAvail;
    private boolean availWrap = true;
    private int lastUsed;
    private boolean usedWrap = true;
    /** Slots made available since the last kick decision. */
    private int numAdded;
    private int eventFlagsShadow = EVENT_FLAGS_ENABLE;
    private int lastLength;
    private VirtqueueException broken;
    private boolean released;

    private PackedDriverQueue(GuestAllocator allocator, int index, int size, long base, long ringBytes, long features,
                              IndirectPool indirect, Doorbell doorbell) throws VirtqueueException {
        GuestMemory memory = allocator.memory();
        this.allocator = allocator;
        this.index = index;
        this.size = size;
        this.ringBytes = ringBytes;
        long descBytes = Packed.descRingBytes(size);
        this.addresses = new RingAddresses(base, base + descBytes, base + descBytes + Packed.EVENT_SIZE);
        this.desc = RingPart.map(memory, index, "descriptor ring", addresses.descTable(), descBytes, 16);
        this.driverEvent = RingPart.map(memory, index, "driver area", addresses.availRing(), Packed.EVENT_SIZE, 4);
        this.deviceEvent = RingPart.map(memory, index, "device area", addresses.usedRing(), Packed.EVENT_SIZE, 4);
        desc.fill((byte) 0); // §2.8.3: the descriptor ring is zero-initialized
        driverEvent.fill((byte) 0);
        deviceEvent.fill((byte) 0);
        this.eventIdx = Feature.EVENT_IDX.isSet(features);
        this.doorbell = doorbell;
        this.indirect = indirect;
        this.indirectMax = indirect.perTable();
        this.nextFreeId = new int[size];
        this.slotsOf = new int[size];
        this.tokens = new Object[size];
        for (int i = 0; i < size; i++) {
            nextFreeId[i] = i + 1;
        }
        this.inOrder = Feature.IN_ORDER.isSet(features);
        this.order = inOrder ? new IdOrder(size) : null;
        this.batch = inOrder ? new UsedBatch(size) : null;
        this.numFree = size;
    }

    /**
     * Allocates a packed ring of {@code size} entries (and, with INDIRECT_DESC, one indirect table of
     * {@code maxIndirect} descriptors per buffer id) from {@code allocator}.
     */
    public static <T> PackedDriverQueue<T> allocate(GuestAllocator allocator, int queueIndex, int size, long features,
                                                    int maxIndirect, Doorbell doorbell) {
        Packed.checkSize(size);
        long bytes = Packed.descRingBytes(size) + 2L * Packed.EVENT_SIZE;
        long base = allocator.allocate(bytes, 4096);
        IndirectPool pool = IndirectPool.allocate(allocator, size, features, maxIndirect);
        try {
            return new PackedDriverQueue<>(allocator, queueIndex, size, base, bytes, features, pool, doorbell);
        } catch (VirtqueueException e) {
            throw new AssertionError("allocator handed out memory outside guest memory", e);
        }
    }

    @Override
    public int index() {
        return index;
    }

    @Override
    public void release() {
        allocator.free(addresses.descTable(), ringBytes);
        indirect.free(allocator);
        released = true;
    }

    @Override
    public int size() {
        return size;
    }

    @Override
    public RingAddresses addresses() {
        return addresses;
    }

    @Override
    public int numFree() {
        return numFree;
    }

    @Override
    public boolean isBroken() {
        return broken != null;
    }

    /**
     * Exposes a buffer (§2.8.13): its descriptors at {@code nextAvail}, the buffer id in each, the first one's
     * flags last with a store-release. With INDIRECT_DESC and more than one buffer, the list goes into the
     * id's indirect table and takes one ring slot.
     */
    @Override
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
        int id = freeId;
        freeId = nextFreeId[id];
        int first = nextAvail;
        int headFlags;
        if (useIndirect) {
            long slot = indirect.tableOffset(id);
            MemorySegment indirectPool = indirect.segment();
            for (int i = 0; i < total; i++) {
                long off = slot + (long) i * DESC_SIZE;
                indirectPool.set(GuestMemory.U64, off + DESC_ADDR, sg.address(i));
                indirectPool.set(GuestMemory.U32, off + DESC_LEN, sg.length(i));
                indirectPool.set(GuestMemory.U16, off + DESC_ID, (short) 0);
                indirectPool.set(GuestMemory.U16, off + DESC_FLAGS, (short) (i >= sg.readableCount() ? F_WRITE : 0));
            }
            long at = (long) nextAvail * DESC_SIZE;
            desc.set(GuestMemory.U64, at + DESC_ADDR, indirect.tableAddress(id));
            desc.set(GuestMemory.U32, at + DESC_LEN, total * DESC_SIZE);
            desc.set(GuestMemory.U16, at + DESC_ID, (short) id);
            headFlags = F_INDIRECT | Packed.availFlags(availWrap);
            advance();
        } else {
            headFlags = 0;
            for (int n = 0; n < total; n++) {
                long at = (long) nextAvail * DESC_SIZE;
                int flags = Packed.availFlags(availWrap) | (n >= sg.readableCount() ? F_WRITE : 0)
                        | (n + 1 < total ? F_NEXT : 0);
                desc.set(GuestMemory.U64, at + DESC_ADDR, sg.address(n));
                desc.set(GuestMemory.U32, at + DESC_LEN, sg.length(n));
                desc.set(GuestMemory.U16, at + DESC_ID, (short) id);
                if (n == 0) {
                    headFlags = flags;
                } else {
                    desc.set(GuestMemory.U16, at + DESC_FLAGS, (short) flags);
                }
                advance();
            }
        }
        numFree -= needed;
        inFlightSlots += needed;
        slotsOf[id] = needed;
        tokens[id] = token;
        if (inOrder) {
            batch.added(id, sg);
            order.add(id);
        }
        // §2.8.13.1: the rest of the list (and its contents) before the first descriptor's flags
        GuestMemory.setU16Release(desc, (long) first * DESC_SIZE + DESC_FLAGS, headFlags);
        numAdded += needed;
        if (numAdded >= 0x7fff) {
            kick(); // the event arithmetic works on 15-bit distances; never let unkicked additions reach them
        }
        return true;
    }

    private void advance() {
        if (++nextAvail == size) {
            nextAvail = 0;
            availWrap = !availWrap;
        }
    }

    @Override
    public boolean addOutBuf(long guestAddress, int len, T token) {
        return addBuf(scratch.clear().addReadable(guestAddress, len), token);
    }

    @Override
    public boolean addInBuf(long guestAddress, int len, T token) {
        return addBuf(scratch.clear().addWritable(guestAddress, len), token);
    }

    /** Whether the device's event suppression structure asks for a notification of what was added (§2.8.10). */
    @Override
    public boolean kickPrepare() {
        // Our descriptors' flags must be visible before we read the device's structure (§2.8.14).
        VarHandle.fullFence();
        int added = numAdded;
        numAdded = 0;
        int flags = Short.toUnsignedInt(deviceEvent.get(GuestMemory.U16, EVENT_FLAGS)) & 3;
        if (flags != EVENT_FLAGS_DESC || !eventIdx) {
            return flags != EVENT_FLAGS_DISABLE;
        }
        int offWrap = Short.toUnsignedInt(deviceEvent.get(GuestMemory.U16, EVENT_DESC));
        return Packed.needEvent(offWrap, nextAvail, nextAvail - added, availWrap, size);
    }

    @Override
    public void notifyDevice() {
        doorbell.ring(nextAvail | (availWrap ? WRAP : 0)); // NOTIFICATION_DATA: the next slot and wrap counter
    }

    @Override
    public boolean kick() {
        if (kickPrepare()) {
            notifyDevice();
            return true;
        }
        return false;
    }

    @Override
    public boolean hasUsed() {
        return batchOpen() || inFlightSlots > 0 && isUsedAt(lastUsed, usedWrap);
    }

    private boolean isUsedAt(int slot, boolean wrap) {
        return Packed.isUsed(GuestMemory.getU16Acquire(desc, (long) slot * DESC_SIZE + DESC_FLAGS), wrap);
    }

    /**
     * Takes the next used buffer (§2.8.14): the descriptor at {@code lastUsed}, read after a load-acquire of its
     * flags; then skips the slots its buffer took.
     *
     * @throws VirtqueueException if the device named a buffer id that is not in flight; the queue is then broken
     */
    @Override
    @SuppressWarnings("unchecked")
    public T getBuf() throws VirtqueueException {
        if (broken != null) {
            throw broken;
        }
        if (released) {
            throw new IllegalStateException("queue " + index + " was released");
        }
        int id;
        if (inOrder) {
            if (!batch.open() && !readBatch()) {
                return null;
            }
            id = order.takeOldest();
            lastLength = batch.take(id);
        } else {
            // whatever the ring says with nothing of ours out there, there is nothing to take
            int flags = inFlightSlots == 0 ? -1 : usedFlagsAtLastUsed();
            if (flags < 0) {
                return null;
            }
            long at = (long) lastUsed * DESC_SIZE;
            id = Short.toUnsignedInt(desc.get(GuestMemory.U16, at + DESC_ID));
            if (id >= size || tokens[id] == null) {
                broken = new VirtqueueException(index, new RingError.BadUsedId(id, size));
                throw broken;
            }
            // §2.8.5: len counts only when the device set WRITE
            lastLength = (flags & F_WRITE) != 0 ? desc.get(GuestMemory.U32, at + DESC_LEN) : 0;
        }
        T token = (T) tokens[id];
        int n = slotsOf[id];
        free(id);
        lastUsed += n;
        if (lastUsed >= size) {
            lastUsed -= size;
            usedWrap = !usedWrap;
        }
        if (eventIdx && eventFlagsShadow == EVENT_FLAGS_DESC) {
            // callbacks on: ask for an interrupt at the next used descriptor, ordered before the next poll
            driverEvent.set(GuestMemory.U16, EVENT_DESC, (short) position());
            VarHandle.fullFence();
        }
        return token;
    }

    private boolean batchOpen() {
        return batch != null && batch.open();
    }

    /**
     * The flags of the descriptor at {@code lastUsed} if the device has used it (load-acquire: its id and
     * length, written before, are then visible), else -1.
     */
    private int usedFlagsAtLastUsed() {
        int flags = GuestMemory.getU16Acquire(desc, (long) lastUsed * DESC_SIZE + DESC_FLAGS);
        return Packed.isUsed(flags, usedWrap) ? flags : -1;
    }

    /**
     * IN_ORDER: reads the used descriptor at {@code lastUsed}, which names the last buffer of a batch that
     * starts with the oldest in flight (§2.8.8), and checks that the buffer is one of ours.
     */
    private boolean readBatch() throws VirtqueueException {
        int flags = order.count() == 0 ? -1 : usedFlagsAtLastUsed();
        if (flags < 0) {
            return false;
        }
        long at = (long) lastUsed * DESC_SIZE;
        int id = Short.toUnsignedInt(desc.get(GuestMemory.U16, at + DESC_ID));
        int slots = order.slotsThrough(id, slotsOf);
        if (slots < 0) {
            broken = new VirtqueueException(index, new RingError.BadUsedId(id, size));
            throw broken;
        }
        int end = lastUsed + slots;
        boolean wrap = usedWrap;
        if (end >= size) {
            end -= size;
            wrap = !wrap;
        }
        batchEnd = end | (wrap ? WRAP : 0);
        batch.open(id, (flags & F_WRITE) != 0 ? desc.get(GuestMemory.U32, at + DESC_LEN) : 0);
        return true;
    }

    private void free(int id) {
        int n = slotsOf[id];
        numFree += n;
        inFlightSlots -= n;
        slotsOf[id] = 0;
        tokens[id] = null;
        nextFreeId[id] = freeId;
        freeId = id;
    }

    /**
     * Where the device writes its next used descriptor, with the used wrap counter in bit 15: a poll position
     * and an event offset — {@code lastUsed}, or the end of an IN_ORDER batch not yet all taken.
     */
    private int position() {
        return batchOpen() ? batchEnd : lastUsed | (usedWrap ? WRAP : 0);
    }

    @Override
    public int lastLength() {
        return lastLength;
    }

    @Override
    public void disableCallbacks() {
        if (eventFlagsShadow != EVENT_FLAGS_DISABLE) {
            eventFlagsShadow = EVENT_FLAGS_DISABLE;
            driverEvent.set(GuestMemory.U16, EVENT_FLAGS, (short) EVENT_FLAGS_DISABLE);
        }
    }

    @Override
    public int enableCallbacksPrepare() {
        if (eventIdx) {
            // §2.8.10: the event offset first, then the flags that make it count
            driverEvent.set(GuestMemory.U16, EVENT_DESC, (short) position());
        }
        int flags = eventIdx ? EVENT_FLAGS_DESC : EVENT_FLAGS_ENABLE;
        if (eventFlagsShadow != flags) {
            eventFlagsShadow = flags;
            driverEvent.set(GuestMemory.U16, EVENT_FLAGS, (short) flags);
        }
        return position();
    }

    @Override
    public boolean poll(int position) {
        // The event structure store must be visible before we re-read the ring (the lost-interrupt race).
        VarHandle.fullFence();
        return batchOpen() || isUsedAt(position & ~WRAP, (position & WRAP) != 0);
    }

    @Override
    public boolean enableCallbacks() {
        return !poll(enableCallbacksPrepare());
    }

    @Override
    public boolean enableCallbacksDelayed() {
        if (!eventIdx) {
            return enableCallbacks();
        }
        // an interrupt once about three quarters of the slots in flight are used
        int ahead = inFlightSlots * 3 / 4;
        int slot = lastUsed + ahead;
        boolean wrap = usedWrap;
        if (slot >= size) {
            slot -= size;
            wrap = !wrap;
        }
        driverEvent.set(GuestMemory.U16, EVENT_DESC, (short) (slot | (wrap ? WRAP : 0)));
        if (eventFlagsShadow != EVENT_FLAGS_DESC) {
            eventFlagsShadow = EVENT_FLAGS_DESC;
            driverEvent.set(GuestMemory.U16, EVENT_FLAGS, (short) EVENT_FLAGS_DESC);
        }
        VarHandle.fullFence();
        return !batchOpen() && !isUsedAt(slot, wrap);
    }

    @Override
    @SuppressWarnings("unchecked")
    public T detachUnused() {
        if (inOrder) {
            batch.clear();
            if (order.count() == 0) {
                return null;
            }
            int id = order.takeOldest(); // oldest first, so the order of what is left stays true
            T token = (T) tokens[id];
            free(id);
            return token;
        }
        for (int id = 0; id < size; id++) {
            Object token = tokens[id];
            if (token != null) {
                free(id);
                return (T) token;
            }
        }
        return null;
    }
}
