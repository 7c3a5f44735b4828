package io.jvirtio.drivers.blk;

import io.jvirtio.core.spec.Blk;
import io.jvirtio.bus.TransportException;
import io.jvirtio.bus.VirtioDevice;
import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.queue.VirtqueueException;
import io.jvirtio.core.spec.Feature;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;

/**
 * An asynchronous block device over virtio-blk. Every operation returns a future and many may be in
 * flight at once (up to the queue size per queue; more wait in order). Buffers that already live in
 * guest memory ({@link #allocateBuffer}) go to the device without a copy; any other segment is bounced
 * through guest memory. Continuations attached to a future run on this disk's completion thread, never on
 * the interrupt thread every device shares ({@link Completions}).
 *
 * <pre>{@code
 * MemorySegment buf = disk.allocateBuffer(4096);
 * disk.write(0, buf).join();
 * disk.read(8, buf).join();
 * disk.flush().join();
 * }</pre>
 */
public final class VirtioBlock {

    private final VirtioDevice device;
    /** Where futures complete: continuations never on the interrupt thread (see {@link Completions}). */
    private final Completions completions;
    private final GuestAllocator dma;
    private final GuestMemory memory;
    private final Lane[] lanes;
    private final int blockSize;
    private final boolean readOnly;
    private final int sizeMax;
    private final int segMax;
    private volatile long capacitySectors;

    /** One request queue with its preallocated request slots (header + status byte each). */
    private static final class Lane {
        final DriverQueue<Object> queue;
        final ArrayDeque<Request> waiting = new ArrayDeque<>();
        final Scatterlist sg = new Scatterlist();
        final long slotMemory;
        final int slotCount;
        /** Free request slots (header + status), a stack. */
        final int[] freeSlots;
        int freeCount;
        /** Reaped requests of one interrupt, completed after the lock is released (interrupt thread only). */
        final Request[] done;
        /** The request on the ring in each slot, or null: what DEVICE_NEEDS_RESET must fail. */
        final Request[] inFlight;
        final MemorySegment slots;
        boolean detached;

        Lane(DriverQueue<Object> queue, GuestAllocator dma) {
            this.queue = queue;
            this.slotCount = queue.size();
            this.slotMemory = dma.allocate(32L * slotCount, 64);
            this.slots = dma.slice(slotMemory, 32L * slotCount);
            this.freeSlots = new int[slotCount];
            this.done = new Request[slotCount];
            this.inFlight = new Request[slotCount];
            for (int i = 0; i < slotCount; i++) {
                freeSlots[freeCount++] = i;
            }
        }
    }

    /** One request: its future, where its data is, and the bounce buffer if one was needed. */
    private static final class Request {
        final int type;
        final long sector;
        final long dataAddress;
        final int dataLength;
        final boolean deviceWrites;
        final MemorySegment userBuffer;
        final long bounce;
        final CompletableFuture<Void> future = new CompletableFuture<>();
        int status;
        int usedLength;
        int slot = -1;

        Request(int type, long sector, long dataAddress, int dataLength, boolean deviceWrites,
                MemorySegment userBuffer, long bounce) {
            this.type = type;
            this.sector = sector;
            this.dataAddress = dataAddress;
            this.dataLength = dataLength;
            this.deviceWrites = deviceWrites;
            this.userBuffer = userBuffer;
            this.bounce = bounce;
        }
    }

    VirtioBlock(VirtioDevice device, List<DriverQueue<Object>> queues, long capacitySectors, int blockSize,
                int sizeMax, int segMax) {
        this.sizeMax = sizeMax;
        this.segMax = segMax;
        this.device = device;
        this.completions = new Completions(device.toString());
        this.dma = device.config().dma();
        this.memory = dma.memory();
        this.capacitySectors = capacitySectors;
        this.blockSize = blockSize;
        this.readOnly = device.hasFeature(Feature.BLK_RO);
        this.lanes = new Lane[queues.size()];
        for (int i = 0; i < lanes.length; i++) {
            lanes[i] = new Lane(queues.get(i), dma);
        }
    }

    /**
     * Runs continuations attached to this disk's futures on the interrupt thread instead of the disk's completion
     * thread: one thread wake-up less per batch of completions. Only for continuations that are short and never
     * block — the interrupt thread serves every device of the transport, and a continuation that waits there
     * holds them all up. For a load generator ({@code jvirtio bench blk}), not for applications.
     */
    public void completeOnInterruptThread(boolean on) {
        completions.inline(on);
    }

    public VirtioDevice device() {
        return device;
    }

    /** Capacity in 512-byte sectors. */
    public long capacitySectors() {
        return capacitySectors;
    }

    public int blockSize() {
        return blockSize;
    }

    public boolean readOnly() {
        return readOnly;
    }

    public int queueCount() {
        return lanes.length;
    }

    /** A buffer in guest memory: I/O through it is zero-copy. Give it back with {@link #freeBuffer}. */
    public MemorySegment allocateBuffer(long bytes) {
        return dma.slice(dma.allocate(bytes, 4096), bytes);
    }

    public void freeBuffer(MemorySegment buffer) {
        dma.free(memory.guestAddressOf(buffer), buffer.byteSize());
    }

    /** Reads {@code buffer.byteSize()} bytes (a multiple of 512) starting at {@code sector}. */
    public CompletableFuture<Void> read(long sector, MemorySegment buffer) {
        return data(Blk.T_IN, sector, buffer, true);
    }

    /** Writes {@code buffer} (a multiple of 512 bytes) starting at {@code sector}. */
    public CompletableFuture<Void> write(long sector, MemorySegment buffer) {
        if (readOnly) {
            return CompletableFuture.failedFuture(new IOException(device + " is read-only (VIRTIO_BLK_F_RO)"));
        }
        return data(Blk.T_OUT, sector, buffer, false);
    }

    /**
     * {@link #read(long, MemorySegment)} on request queue {@code queue} (modulo {@link #queueCount()}), for
     * callers that spread their I/O over the queues themselves (a load generator, one queue per thread).
     */
    public CompletableFuture<Void> read(int queue, long sector, MemorySegment buffer) {
        return data(Blk.T_IN, sector, buffer, true, queue);
    }

    /** {@link #write(long, MemorySegment)} on request queue {@code queue}. */
    public CompletableFuture<Void> write(int queue, long sector, MemorySegment buffer) {
        if (readOnly) {
            return CompletableFuture.failedFuture(new IOException(device + " is read-only (VIRTIO_BLK_F_RO)"));
        }
        return data(Blk.T_OUT, sector, buffer, false, queue);
    }

    /** Makes every completed write durable. */
    public CompletableFuture<Void> flush() {
        return submit(new Request(Blk.T_FLUSH, 0, 0, 0, false, null, 0));
    }

    public CompletableFuture<Void> discard(long sector, int sectors) {
        return dwz(Blk.T_DISCARD, sector, sectors, Feature.BLK_DISCARD);
    }

    public CompletableFuture<Void> writeZeroes(long sector, int sectors) {
        return dwz(Blk.T_WRITE_ZEROES, sector, sectors, Feature.BLK_WRITE_ZEROES);
    }

    /** The device's serial (GET_ID). */
    public CompletableFuture<String> id() {
        long buf = dma.allocate(20, 8);
        Request r = new Request(Blk.T_GET_ID, 0, buf, Blk.ID_BYTES, true, null, 0);
        return submit(r).whenComplete((n, e) -> dma.free(buf, 20)).thenApply(n -> {
            byte[] b = new byte[20];
            MemorySegment.copy(slice(buf, 20), ValueLayout.JAVA_BYTE, 0, b, 0, 20);
            int len = 0;
            while (len < 20 && b[len] != 0) {
                len++;
            }
            return new String(b, 0, len, StandardCharsets.US_ASCII);
        });
    }

    private CompletableFuture<Void> dwz(int type, long sector, int sectors, Feature f) {
        if (!device.hasFeature(f)) {
            return CompletableFuture.failedFuture(new IOException(f.specName() + " was not negotiated"));
        }
        IllegalArgumentException range = outOfRange(sector, Integer.toUnsignedLong(sectors));
        if (range != null) {
            return CompletableFuture.failedFuture(range);
        }
        long seg = dma.allocate(16, 8);
        MemorySegment s = slice(seg, 16);
        s.set(GuestMemory.U64, 0, sector);
        s.set(GuestMemory.U32, 8, sectors);
        s.set(GuestMemory.U32, 12, 0);
        return submit(new Request(type, 0, seg, 16, false, null, 0))
                .whenComplete((n, e) -> dma.free(seg, 16));
    }

    /** blk-drv-5: a request past the capacity is refused here, never sent to the device. */
    private IllegalArgumentException outOfRange(long sector, long sectors) {
        long cap = capacitySectors;
        if (sector < 0 || sector > cap || sectors > cap - sector) {
            return new IllegalArgumentException(String.format("sectors %d..%d are beyond the capacity of %d sectors",
                    sector, sector + sectors - 1, cap));
        }
        return null;
    }

    private CompletableFuture<Void> data(int type, long sector, MemorySegment buffer, boolean deviceWrites) {
        return data(type, sector, buffer, deviceWrites, -1);
    }

    /** A data request on lane {@code queue}, or on the calling thread's lane when it is negative. */
    private CompletableFuture<Void> data(int type, long sector, MemorySegment buffer, boolean deviceWrites, int queue) {
        long len = buffer.byteSize();
        if (len == 0 || len % Blk.SECTOR_SIZE != 0 || len > Integer.MAX_VALUE) {
            return CompletableFuture.failedFuture(new IllegalArgumentException(
                    "buffer of " + len + " bytes is not a positive multiple of 512"));
        }
        IllegalArgumentException range = outOfRange(sector, len / Blk.SECTOR_SIZE);
        if (range != null) {
            return CompletableFuture.failedFuture(range);
        }
        if ((len + sizeMax - 1) / sizeMax > segMax) {
            return CompletableFuture.failedFuture(new IllegalArgumentException("buffer of " + len
                    + " bytes needs more than seg_max " + segMax + " segments of size_max " + sizeMax));
        }
        long addr = guestAddress(buffer);
        long bounce = 0;
        if (addr < 0) {
            bounce = dma.allocate(len, 4096);
            addr = bounce;
            if (!deviceWrites) {
                MemorySegment.copy(buffer, 0, slice(bounce, len), 0, len);
            }
        }
        Request r = new Request(type, sector, addr, (int) len, deviceWrites, buffer, bounce);
        return queue < 0 ? submit(r) : submit(r, lanes[Math.floorMod(queue, lanes.length)]);
    }

    private long guestAddress(MemorySegment buffer) {
        try {
            return memory.guestAddressOf(buffer);
        } catch (IllegalArgumentException e) {
            return -1;
        }
    }

    private MemorySegment slice(long address, long len) {
        return dma.slice(address, len);
    }

    private CompletableFuture<Void> submit(Request r) {
        return submit(r, lanes[(int) (Thread.currentThread().threadId() % lanes.length)]);
    }

    private CompletableFuture<Void> submit(Request r, Lane lane) {
        synchronized (lane) {
            if (lane.detached) {
                completions.fail(r.future, new IOException(device + " was removed"));
            } else if (!lane.waiting.isEmpty() || !post(lane, r)) {
                lane.waiting.add(r);
            } else {
                lane.queue.kick();
            }
        }
        return r.future;
    }

    /** Puts a request on the ring: header (readable), data, status (writable) — §5.2.6. */
    private boolean post(Lane lane, Request r) {
        if (lane.freeCount == 0) {
            return false;
        }
        int slot = lane.freeSlots[--lane.freeCount];
        long hdr = lane.slotMemory + 32L * slot;
        long at = 32L * slot;
        lane.slots.set(GuestMemory.U32, at, r.type);
        lane.slots.set(GuestMemory.U32, at + 4, 0);
        lane.slots.set(GuestMemory.U64, at + 8, r.sector);
        lane.slots.set(ValueLayout.JAVA_BYTE, at + 16, (byte) 0xff);
        Scatterlist sg = lane.sg.clear().addReadable(hdr, 16);
        // The data in segments of at most size_max bytes (§5.2.4); data() checked their number.
        for (long off = 0; off < r.dataLength; off += sizeMax) {
            int n = (int) Math.min(sizeMax, r.dataLength - off);
            if (r.deviceWrites) {
                sg.addWritable(r.dataAddress + off, n);
            } else {
                sg.addReadable(r.dataAddress + off, n);
            }
        }
        sg.addWritable(hdr + 16, 1);
        if (!lane.queue.addBuf(sg, r)) {
            lane.freeSlots[lane.freeCount++] = slot;
            return false;
        }
        r.slot = slot;
        lane.inFlight[slot] = r;
        return true;
    }

    /** The queue callback (interrupt thread): reap, start waiting requests, complete futures. */
    void complete(int laneIndex) {
        Lane lane = lanes[laneIndex];
        Request[] done = lane.done;
        int n = 0;
        VirtqueueException broken = null;
        synchronized (lane) {
            try {
                Object t;
                while (n < done.length && (t = lane.queue.getBuf()) != null) {
                    Request r = (Request) t;
                    r.status = Byte.toUnsignedInt(lane.slots.get(ValueLayout.JAVA_BYTE, 32L * r.slot + 16));
                    r.usedLength = lane.queue.lastLength();
                    lane.freeSlots[lane.freeCount++] = r.slot;
                    lane.inFlight[r.slot] = null;
                    done[n++] = r;
                }
            } catch (VirtqueueException e) {
                broken = e;
            }
            boolean posted = false;
            while (broken == null && !lane.waiting.isEmpty() && post(lane, lane.waiting.peek())) {
                lane.waiting.poll();
                posted = true;
            }
            if (posted) {
                lane.queue.kick();
            }
        }
        for (int i = 0; i < n; i++) {
            Request r = done[i];
            done[i] = null;
            finish(r, r.status);
        }
        if (broken != null) {
            // the device broke the ring (a used id never made available, a used index past what is in
            // flight): it will complete nothing more on it, so nothing in flight may wait for it
            failLane(lane, new IOException(device + ": " + broken.getMessage(), broken));
        }
    }

    private void finish(Request r, int status) {
        // split-drv-15: nothing beyond the used length is assumed written. The status byte is the last
        // writable byte, so a length that does not reach it (or, for a read, that leaves out data) means the
        // device did not do what it reported: the request fails rather than return stale bytes.
        long needed = (r.deviceWrites && r.type == Blk.T_IN ? r.dataLength : 0) + 1L;
        if (status == 0 && Integer.toUnsignedLong(r.usedLength) < needed) {
            status = Blk.S_IOERR;
            System.getLogger(VirtioBlock.class.getName()).log(System.Logger.Level.WARNING,
                    "{0}: {1} at sector {2}: device reported {3} bytes written, {4} expected", device, name(r.type),
                    r.sector, Integer.toUnsignedLong(r.usedLength), needed);
        }
        if (status != 0) {
            if (r.bounce != 0) {
                dma.free(r.bounce, r.dataLength);
            }
            completions.fail(r.future, new BlockIOException(name(r.type) + " at sector " + r.sector, status));
            return;
        }
        if (r.bounce != 0) {
            if (r.deviceWrites) {
                MemorySegment.copy(slice(r.bounce, r.dataLength), 0, r.userBuffer, 0, r.dataLength);
            }
            dma.free(r.bounce, r.dataLength);
        }
        completions.complete(r.future, null);
    }

    /**
     * The device will complete nothing more (DEVICE_NEEDS_RESET): every request in flight or waiting fails
     * with {@code cause}, and so does every later one, until the driver is bound again after a reset.
     * The rings stay as they are (the device may still own their buffers); {@link #detach} reclaims them.
     */
    void fail(IOException cause) {
        for (Lane lane : lanes) {
            failLane(lane, cause);
        }
    }

    /**
     * Every request of {@code lane}, in flight or waiting, fails with {@code cause}, and so does every later
     * one. Their slots and bounce buffers stay taken: the device may still write into them.
     */
    private void failLane(Lane lane, IOException cause) {
        List<Request> failed = new ArrayList<>();
        synchronized (lane) {
            lane.detached = true;
            for (Request r : lane.inFlight) {
                if (r != null) {
                    failed.add(r);
                }
            }
            failed.addAll(lane.waiting);
            lane.waiting.clear();
        }
        for (Request r : failed) {
            completions.fail(r.future, cause);
        }
    }

    /** After the device was reset: fail everything in flight or waiting, give the slot memory back. */
    void detach() {
        for (Lane lane : lanes) {
            List<Request> failed = new ArrayList<>();
            synchronized (lane) {
                lane.detached = true;
                Object t;
                while ((t = lane.queue.detachUnused()) != null) {
                    failed.add((Request) t);
                }
                failed.addAll(lane.waiting);
                lane.waiting.clear();
                dma.free(lane.slotMemory, 32L * lane.slotCount);
            }
            for (Request r : failed) {
                if (r.bounce != 0) {
                    dma.free(r.bounce, r.dataLength);
                }
                completions.fail(r.future, new IOException(device + " was removed"));
            }
        }
        completions.close();
    }

    void refreshCapacity() {
        try {
            capacitySectors = device.readConfigField(Blk.CFG_CAPACITY, 8);
        } catch (TransportException e) {
            System.getLogger(VirtioBlock.class.getName()).log(System.Logger.Level.WARNING, e.getMessage());
        }
    }

    private static String name(int type) {
        return switch (type) {
            case Blk.T_IN -> "read";
            case Blk.T_OUT -> "write";
            case Blk.T_FLUSH -> "flush";
            case Blk.T_GET_ID -> "get-id";
            case Blk.T_DISCARD -> "discard";
            case Blk.T_WRITE_ZEROES -> "write-zeroes";
            default -> "request " + type;
        };
    }

    @Override
    public String toString() {
        return device.name() + ": " + capacitySectors + " sectors" + (readOnly ? " (read-only)" : "");
    }
}
