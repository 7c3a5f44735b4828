package io.jvirtio.cli;

import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.QueueState;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.queue.VirtqueueException;
import io.jvirtio.core.queue.split.SplitLayout;
import io.jvirtio.core.spec.Feature;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;
import java.util.function.LongConsumer;

/**
 * A driver thread and a device thread sharing one split ring in memfd-backed guest memory. The driver
 * sends requests (a sequence number and a payload); the device checks each chain, computes a checksum
 * of the payload and writes it back; the driver verifies every reply. Both sides sleep when idle and
 * wake only on the other side's notification, exactly as a guest and a VMM would.
 */
final class RingDemo {
    static final long GUEST_BASE = 0x4000_0000L;
    private static final int REPLY = 16;

    record Config(long buffers, int queueSize, int payload, boolean eventIdx, boolean indirect, int batch) {
        long features() {
            return Feature.VERSION_1.mask() | (eventIdx ? Feature.EVENT_IDX.mask() : 0)
                    | (indirect ? Feature.INDIRECT_DESC.mask() : 0);
        }
    }

    record Result(long buffers, long bytesOut, long bytesIn, long nanos, long kicks, long kicksSuppressed,
                  long interrupts, long interruptsSuppressed, long verified, String ringDescription) {
    }

    private final Config config;

    RingDemo(Config config) {
        this.config = config;
    }

    /** Runs the demo; {@code progress} receives the number of completed buffers about every 100 ms. */
    Result run(LongConsumer progress) throws Exception {
        int q = config.queueSize();
        int slotBytes = config.payload() + REPLY;
        long memBytes = SplitLayout.modern(q).totalBytes() + (long) q * 4 * 16 + (long) q * slotBytes + (1 << 20);
        try (GuestMemory mem = GuestMemory.memfd(GUEST_BASE, (memBytes + 0xfffff) & ~0xfffffL)) {
            GuestAllocator alloc = new GuestAllocator(mem, GUEST_BASE, mem.region(0).size());
            Wakeup deviceWake = new Wakeup();
            Wakeup driverWake = new Wakeup();
            DriverQueue<Integer> driver = DriverQueue.allocate(alloc, 0, SplitLayout.modern(q), config.features(), 4,
                    deviceWake::signal);
            DeviceQueue device = DeviceQueue.create(mem, 0, q, driver.addresses(), config.features(), QueueState.INITIAL);
            long slots = alloc.allocate((long) q * slotBytes, 64);
            String ring = String.format("queue size %d, desc 0x%x, avail 0x%x, used 0x%x, %s",
                    q, driver.addresses().descTable(), driver.addresses().availRing(), driver.addresses().usedRing(),
                    mem);

            AtomicBoolean stop = new AtomicBoolean();
            AtomicReference<Throwable> failure = new AtomicReference<>();
            long[] deviceStats = new long[2];
            Thread deviceThread = Thread.ofPlatform().name("jvirtio-device").start(() -> {
                try {
                    deviceLoop(device, deviceWake, driverWake, stop, deviceStats);
                } catch (Throwable t) {
                    failure.set(t);
                    driverWake.signal();
                }
            });
            deviceWake.owner = deviceThread;
            driverWake.owner = Thread.currentThread();
            long start = System.nanoTime();
            long[] driverStats;
            try {
                driverStats = driverLoop(mem, driver, slots, slotBytes, driverWake, failure, progress);
            } finally {
                stop.set(true);
                deviceWake.signal();
                deviceThread.join();
            }
            long nanos = System.nanoTime() - start;
            if (failure.get() != null) {
                throw new IllegalStateException("device failed: " + failure.get().getMessage(), failure.get());
            }
            long n = config.buffers();
            return new Result(n, n * config.payload(), n * REPLY, nanos, driverStats[0], driverStats[1],
                    deviceStats[0], deviceStats[1], driverStats[2], ring);
        }
    }

    private long[] driverLoop(GuestMemory mem, DriverQueue<Integer> q, long slots, int slotBytes, Wakeup wake,
                              AtomicReference<Throwable> failure, LongConsumer progress) throws Exception {
        int size = q.size();
        int payload = config.payload();
        long[] slotSeq = new long[size];
        int[] free = new int[size];
        int freeCount = 0;
        for (int i = 0; i < size; i++) {
            free[freeCount++] = i;
        }
        Scatterlist sg = new Scatterlist();
        long sent = 0, received = 0, kicks = 0, suppressed = 0, verified = 0;
        long lastReport = System.nanoTime();
        q.disableCallbacks();
        while (received < config.buffers()) {
            int added = 0;
            boolean ringFull = false;
            while (sent < config.buffers() && freeCount > 0) {
                int slot = free[--freeCount];
                long at = slots + (long) slot * slotBytes;
                MemorySegment p = mem.slice(at, payload);
                fill(p, sent);
                // Header and body in separate descriptors, reply in a third: a typical request shape.
                sg.clear().addReadable(at, 8).addReadable(at + 8, payload - 8).addWritable(at + payload, REPLY);
                if (!q.addBuf(sg, slot)) {
                    free[freeCount++] = slot;
                    ringFull = true;
                    break;
                }
                slotSeq[slot] = sent++;
                if (++added % config.batch() == 0) {
                    if (q.kick()) kicks++; else suppressed++;
                }
            }
            if (added % config.batch() != 0) {
                if (q.kick()) kicks++; else suppressed++;
            }
            Integer slot;
            boolean any = false;
            while ((slot = q.getBuf()) != null) {
                any = true;
                long at = slots + (long) slot * slotBytes;
                MemorySegment reply = mem.slice(at + payload, REPLY);
                long seq = reply.get(GuestMemory.U64, 0);
                if (seq != slotSeq[slot] || q.lastLength() != REPLY
                        || reply.get(GuestMemory.U64, 8) != checksum(mem.slice(at, payload))) {
                    throw new IllegalStateException("buffer " + slotSeq[slot] + " came back wrong (seq " + seq
                            + ", len " + q.lastLength() + ")");
                }
                verified++;
                received++;
                free[freeCount++] = slot;
            }
            long now = System.nanoTime();
            if (now - lastReport > 100_000_000L) {
                progress.accept(received);
                lastReport = now;
            }
            if (!any && (ringFull || freeCount == 0 || sent == config.buffers())) {
                if (q.enableCallbacks()) {
                    while (!wake.take()) {
                        if (failure.get() != null) {
                            throw new IllegalStateException("device failed", failure.get());
                        }
                        LockSupport.park(wake);
                    }
                }
                q.disableCallbacks();
            }
        }
        progress.accept(received);
        return new long[] {kicks, suppressed, verified};
    }

    private static void deviceLoop(DeviceQueue q, Wakeup wake, Wakeup driverWake, AtomicBoolean stop, long[] stats)
            throws VirtqueueException {
        DescriptorChain chain = new DescriptorChain();
        MemorySegment reply = java.lang.foreign.Arena.ofAuto().allocate(REPLY);
        while (!stop.get()) {
            q.disableNotifications();
            while (q.pop(chain)) {
                if (chain.writableBytes() < REPLY || chain.readableBytes() < 8) {
                    throw new IllegalStateException("unexpected chain " + chain);
                }
                long seq = chain.segment(0).get(GuestMemory.U64, 0);
                long sum = checksumChain(chain);
                reply.set(GuestMemory.U64, 0, seq);
                reply.set(GuestMemory.U64, 8, sum);
                q.addUsed(chain.head(), (int) chain.writeWritable(0, reply));
            }
            q.publishUsed();
            if (q.needsNotification()) {
                stats[0]++;
                driverWake.signal();
            } else {
                stats[1]++;
            }
            if (!q.enableNotifications()) {
                while (!wake.take() && !stop.get()) {
                    LockSupport.park(wake);
                }
            }
        }
    }

    private static void fill(MemorySegment p, long seq) {
        p.set(GuestMemory.U64, 0, seq);
        long x = seq * 0x9E3779B97F4A7C15L + 1;
        for (long i = 8; i + 8 <= p.byteSize(); i += 8) {
            x ^= x << 13;
            x ^= x >>> 7;
            x ^= x << 17;
            p.set(GuestMemory.U64, i, x);
        }
    }

    static long checksum(MemorySegment s) {
        long h = 0xcbf29ce484222325L;
        for (long i = 0; i + 8 <= s.byteSize(); i += 8) {
            h = (h ^ s.get(GuestMemory.U64, i)) * 0x100000001b3L;
        }
        for (long i = s.byteSize() & ~7L; i < s.byteSize(); i++) {
            h = (h ^ s.get(ValueLayout.JAVA_BYTE, i)) * 0x100000001b3L;
        }
        return h;
    }

    /** The device's view: the same checksum over the chain's readable buffers, wherever they split. */
    private static long checksumChain(DescriptorChain chain) {
        long total = chain.readableBytes();
        long h = 0xcbf29ce484222325L;
        long pos = 0;
        long word = 0;
        int have = 0;
        for (int i = 0; i < chain.readableCount(); i++) {
            MemorySegment s = chain.segment(i);
            for (long j = 0; j < s.byteSize(); j++, pos++) {
                byte b = s.get(ValueLayout.JAVA_BYTE, j);
                if (pos < (total & ~7L)) {
                    word |= (b & 0xffL) << (8 * have);
                    if (++have == 8) {
                        h = (h ^ word) * 0x100000001b3L;
                        word = 0;
                        have = 0;
                    }
                } else {
                    h = (h ^ b) * 0x100000001b3L;
                }
            }
        }
        return h;
    }

    /** An edge-triggered wakeup: the doorbell, or the interrupt line. */
    static final class Wakeup {
        private final AtomicBoolean pending = new AtomicBoolean();
        volatile Thread owner;

        void signal() {
            if (!pending.getAndSet(true)) {
                Thread t = owner;
                if (t != null) {
                    LockSupport.unpark(t);
                }
            }
        }

        boolean take() {
            return pending.getAndSet(false);
        }
    }
}
