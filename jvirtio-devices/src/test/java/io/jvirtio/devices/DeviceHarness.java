package io.jvirtio.devices;

import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.device.VirtioDeviceModel;
import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.queue.QueueState;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.queue.split.SplitLayout;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

/**
 * A device model activated over real rings in guest memory, with a bare driver queue per device queue:
 * the test writes requests byte by byte, exactly as a (possibly hostile) driver would.
 */
public final class DeviceHarness implements AutoCloseable {
    public static final long BASE = 0x2_0000_0000L;
    public final GuestMemory memory;
    public final GuestAllocator alloc;
    public final List<DriverQueue<Object>> queues = new ArrayList<>();
    public final AtomicReference<String> needsReset = new AtomicReference<>();
    private final VirtioDeviceModel model;
    private final Semaphore interrupts = new Semaphore(0);

    public DeviceHarness(VirtioDeviceModel model, long features) throws Exception {
        this(model, features, 0);
    }

    /** With {@code indirectMax} > 1 and INDIRECT_DESC in {@code features}, chains go in indirect tables. */
    public DeviceHarness(VirtioDeviceModel model, long features, int indirectMax) throws Exception {
        this.model = model;
        memory = GuestMemory.allocate(BASE, 16 << 20);
        alloc = new GuestAllocator(memory, BASE, 16 << 20);
        List<DeviceQueue> dqs = new ArrayList<>();
        List<Interrupt> irqs = new ArrayList<>();
        for (int i = 0; i < model.numQueues(); i++) {
            int qi = i;
            DriverQueue<Object> q = DriverQueue.allocate(alloc, i, SplitLayout.modern(model.maxQueueSize(i)), features,
                    indirectMax, () -> model.queueNotify(qi));
            queues.add(q);
            dqs.add(DeviceQueue.create(memory, i, model.maxQueueSize(i), q.addresses(), features, QueueState.INITIAL));
            irqs.add(interrupts::release);
        }
        model.acceptFeatures(features); // FEATURES_OK, as a transport does
        model.activate(new DeviceContext(memory, features, dqs, irqs, needsReset::set));
    }

    /** Posts {@code sg} on queue {@code q}, kicks, and waits for it to come back; returns the used length. */
    public int roundTrip(int q, Scatterlist sg) throws Exception {
        DriverQueue<Object> queue = queues.get(q);
        Object token = new Object();
        if (!queue.addBuf(sg, token)) {
            throw new IllegalStateException("queue full");
        }
        queue.kick();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (System.nanoTime() < deadline) {
            Object t = queue.getBuf();
            if (t != null) {
                if (t != token) {
                    throw new AssertionError("wrong token");
                }
                return queue.lastLength();
            }
            interrupts.tryAcquire(50, TimeUnit.MILLISECONDS);
            if (needsReset.get() != null) {
                throw new AssertionError("device needs reset: " + needsReset.get());
            }
        }
        throw new AssertionError("no completion within 10 s");
    }

    /** Interrupts raised since the last call (or the start) that no {@link #roundTrip} waited for. */
    public int takeInterrupts() {
        return interrupts.drainPermits();
    }

    @Override
    public void close() {
        model.reset();
        memory.close();
    }

    /**
     * A virtio-blk request on queue 0: header ({@code type}, {@code sector}), {@code segmentBytes} of readable
     * payload at {@code segment} (none when 0), writable buffers of the given sizes, the status byte; returns
     * the status the device wrote.
     */
    public int blkRequest(int type, long sector, long segment, int segmentBytes, int... writable) throws Exception {
        long hdr = alloc.allocate(16, 8);
        memory.writeU32(hdr, type);
        memory.writeU64(hdr + 8, sector);
        io.jvirtio.core.queue.Scatterlist sg = new io.jvirtio.core.queue.Scatterlist().addReadable(hdr, 16);
        if (segmentBytes > 0) {
            sg.addReadable(segment, segmentBytes);
        }
        for (int w : writable) {
            sg.addWritable(alloc.allocate(w, 8), w);
        }
        long st = alloc.allocate(1, 1);
        roundTrip(0, sg.addWritable(st, 1));
        return memory.slice(st, 1).get(java.lang.foreign.ValueLayout.JAVA_BYTE, 0);
    }

    /** A {@code struct virtio_blk_discard_write_zeroes} segment in guest memory; returns its address. */
    public long dwzSegment(long sector, long sectors, int flags) throws Exception {
        long seg = alloc.allocate(16, 8);
        memory.writeU64(seg, sector);
        memory.writeU32(seg + 8, (int) sectors);
        memory.writeU32(seg + 12, flags);
        return seg;
    }
}
