package io.jvirtio.core.queue;

import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.spec.Feature;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A driver thread and a device thread moving a million buffers through one ring, each side sleeping
 * until the other notifies it — so a lost notification shows as a stall (the test fails after its
 * deadline instead of polling around it). Every buffer carries a sequence number and a checksum; the
 * device answers with both, and the driver checks order, checksum and length of every reply.
 */
class TwoThreadStressTest {
    static final int BUFFERS = 1_000_000;
    static final int QSIZE = 256;
    static final int OUT = 64;
    static final int IN = 16;
    static final long DEADLINE_S = 120;

    @ParameterizedTest(name = "eventIdx={0} indirect={1} packed={2} inOrder={3}")
    @CsvSource({"false,false,false,false", "true,false,false,false", "true,true,false,false", "false,true,false,false",
            "false,false,true,false", "true,false,true,false", "true,true,true,false", "false,true,true,false",
            "true,false,false,true", "false,true,false,true", "true,true,true,true", "false,false,true,true"})
    void millionBuffersWithChecksums(boolean eventIdx, boolean indirect, boolean packed, boolean inOrder)
            throws Exception {
        long features = (eventIdx ? Feature.EVENT_IDX.mask() : 0) | (indirect ? Feature.INDIRECT_DESC.mask() : 0)
                | (packed ? Feature.RING_PACKED.mask() : 0) | (inOrder ? Feature.IN_ORDER.mask() : 0);
        try (GuestMemory mem = GuestMemory.memfd(0x8000_0000L, 8 << 20)) {
            GuestAllocator alloc = new GuestAllocator(mem, 0x8000_0000L, 8 << 20);
            Waker deviceWaker = new Waker();
            Waker driverWaker = new Waker();
            DriverQueue<Integer> driver = DriverQueue.allocate(alloc, 0, QSIZE, features, 4,
                    deviceWaker::wake);
            DeviceQueue device = DeviceQueue.create(mem, 0, QSIZE, driver.addresses(), features,
                    QueueState.initial(features));
            long slots = alloc.allocate((long) QSIZE * (OUT + IN), 64);
            AtomicReference<Throwable> failure = new AtomicReference<>();
            AtomicBoolean stop = new AtomicBoolean();

            Thread deviceThread = Thread.ofPlatform().name("device").start(() -> {
                try {
                    runDevice(device, deviceWaker, driverWaker, stop);
                } catch (Throwable t) {
                    failure.compareAndSet(null, t);
                    driverWaker.wake();
                }
            });
            deviceWaker.owner = deviceThread;
            driverWaker.owner = Thread.currentThread();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(DEADLINE_S);
            try {
                runDriver(mem, driver, slots, driverWaker, failure, deadline);
            } finally {
                stop.set(true);
                deviceWaker.wake();
                deviceThread.join(10_000);
            }
            assertThat(failure.get()).as("device thread").isNull();
            assertThat(driver.numFree()).isEqualTo(QSIZE);
        }
    }

    private static void runDriver(GuestMemory mem, DriverQueue<Integer> q, long slots, Waker waker,
                                  AtomicReference<Throwable> failure, long deadline) throws Exception {
        Scatterlist sg = new Scatterlist();
        int[] slotSeq = new int[QSIZE];
        int freeSlot = 0;
        int[] freeSlots = new int[QSIZE];
        for (int i = 0; i < QSIZE; i++) {
            freeSlots[i] = i;
        }
        int freeCount = QSIZE;
        int sent = 0;
        int received = 0;
        byte[] payload = new byte[OUT];
        q.disableCallbacks();
        while (received < BUFFERS) {
            int added = 0;
            while (sent < BUFFERS && freeCount > 0) {
                int slot = freeSlots[--freeCount];
                long out = slots + (long) slot * (OUT + IN);
                for (int i = 4; i < OUT; i++) {
                    payload[i] = (byte) (sent * 7 + i);
                }
                MemorySegment p = mem.slice(out, OUT);
                MemorySegment.copy(payload, 0, p, java.lang.foreign.ValueLayout.JAVA_BYTE, 0, OUT);
                p.set(GuestMemory.U32, 0, sent);
                sg.clear().addReadable(out, 32).addReadable(out + 32, OUT - 32).addWritable(out + OUT, IN);
                if (!q.addBuf(sg, slot)) {
                    // Out of descriptors (3 per buffer without indirect): wait for completions.
                    assertThat(q.numFree()).isLessThan(3);
                    freeSlots[freeCount++] = slot;
                    break;
                }
                slotSeq[slot] = sent++;
                if (++added % 32 == 0) {
                    q.kick();
                }
            }
            if (added > 0) {
                q.kick();
            }
            Integer slot;
            int got = 0;
            while ((slot = q.getBuf()) != null) {
                got++;
                int seq = slotSeq[slot];
                assertThat(seq).as("in-order completion").isEqualTo(received);
                assertThat(q.lastLength()).isEqualTo(IN);
                long in = slots + (long) slot * (OUT + IN) + OUT;
                assertThat(mem.readU32(in)).as("echoed sequence").isEqualTo(seq);
                assertThat(mem.readU64(in + 8)).as("checksum of buffer %d", seq).isEqualTo(checksum(mem.slice(in - OUT, OUT)));
                received++;
                freeSlots[freeCount++] = slot;
            }
            if (got == 0) {
                // Nothing to reap: sleep until the device interrupts — after re-checking the race window.
                if (q.enableCallbacks()) {
                    while (!waker.consume()) {
                        if (failure.get() != null) {
                            throw new AssertionError("device failed", failure.get());
                        }
                        if (System.nanoTime() > deadline) {
                            throw new AssertionError("stalled: a notification was lost (sent " + sent
                                    + ", received " + received + ")");
                        }
                        LockSupport.parkNanos(waker, 50_000_000);
                    }
                }
                q.disableCallbacks();
            }
        }
    }

    private static void runDevice(DeviceQueue q, Waker waker, Waker driverWaker, AtomicBoolean stop) throws Exception {
        DescriptorChain chain = new DescriptorChain();
        MemorySegment reply = java.lang.foreign.Arena.ofAuto().allocate(IN);
        MemorySegment request = java.lang.foreign.Arena.ofAuto().allocate(OUT);
        while (!stop.get()) {
            q.disableNotifications();
            int batch = 0;
            while (q.pop(chain)) {
                if (chain.readableBytes() != OUT || chain.writableBytes() != IN) {
                    throw new AssertionError("bad chain " + chain);
                }
                chain.readReadable(0, request);
                reply.set(GuestMemory.U32, 0, request.get(GuestMemory.U32, 0));
                reply.set(GuestMemory.U64, 8, checksum(request));
                long n = chain.writeWritable(0, reply);
                q.addUsed(chain, (int) n); // by chain: with IN_ORDER, 32 buffers filled completely share one used entry
                if (++batch % 32 == 0) {
                    q.publishUsed();
                    if (q.needsNotification()) {
                        driverWaker.wake();
                    }
                }
            }
            q.publishUsed();
            if (q.needsNotification()) {
                driverWaker.wake();
            }
            if (!q.enableNotifications()) {
                while (!waker.consume() && !stop.get()) {
                    LockSupport.parkNanos(waker, 50_000_000);
                }
            }
        }
    }

    static long checksum(MemorySegment s) {
        long h = 0xcbf29ce484222325L;
        for (long i = 0; i < s.byteSize(); i++) {
            h = (h ^ (s.get(java.lang.foreign.ValueLayout.JAVA_BYTE, i) & 0xff)) * 0x100000001b3L;
        }
        return h;
    }

    /** An edge-triggered wakeup: the doorbell or the interrupt line of this test. */
    static final class Waker {
        final AtomicBoolean pending = new AtomicBoolean();
        volatile Thread owner;

        void wake() {
            pending.set(true);
            Thread t = owner;
            if (t != null) {
                LockSupport.unpark(t);
            }
        }

        boolean consume() {
            return pending.getAndSet(false);
        }
    }
}
