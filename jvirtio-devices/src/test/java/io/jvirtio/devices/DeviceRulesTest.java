package io.jvirtio.devices;

import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.queue.QueueState;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.queue.split.SplitLayout;
import io.jvirtio.core.spec.Conformance;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.core.spec.Blk;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.BlockBackends;
import io.jvirtio.devices.blk.SyncBlockBackend;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static org.assertj.core.api.Assertions.assertThat;

/** Device rules of §2: what a device does after its reset (§2.4) and which buffers it reads (§2.7.4). */
class DeviceRulesTest {

    /** A disk whose reads wait for the test to open the gate. */
    static final class Gated implements SyncBlockBackend {
        final CountDownLatch entered = new CountDownLatch(1);
        final CountDownLatch gate = new CountDownLatch(1);
        final AtomicInteger reads = new AtomicInteger();

        public long capacity() { return 1 << 20; }
        public boolean readOnly() { return false; }
        public String id() { return "gated"; }
        public void read(long offset, MemorySegment dst) {
            reads.incrementAndGet();
            entered.countDown();
            try {
                gate.await(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            dst.fill((byte) 0x5a);
        }
        public void write(long offset, MemorySegment src) { }
        public void flush() { }
        public void writeZeroes(long offset, long length, boolean unmap) { }
    }

    @Test
    @Conformance("basic-dev-8")
    void afterItsResetCompletesTheDeviceNeitherTouchesTheRingsNorInterrupts() throws Exception {
        long base = DeviceHarness.BASE;
        long features = Feature.VERSION_1.mask();
        Gated disk = new Gated();
        BlkDevice blk = new BlkDevice(BlockBackends.pooled(disk, 2));
        try (GuestMemory memory = GuestMemory.allocate(base, 4 << 20)) {
            GuestAllocator alloc = new GuestAllocator(memory, base, 4 << 20);
            AtomicInteger interrupts = new AtomicInteger();
            DriverQueue<Object> q = DriverQueue.allocate(alloc, 0, SplitLayout.modern(blk.maxQueueSize(0)), features, 0,
                    () -> blk.queueNotify(0));
            DeviceQueue dq = DeviceQueue.create(memory, 0, blk.maxQueueSize(0), q.addresses(), features, QueueState.INITIAL);
            Interrupt irq = interrupts::incrementAndGet;
            blk.acceptFeatures(features);
            blk.activate(new DeviceContext(memory, features, List.of(dq), List.of(irq), r -> { }));

            long first = read(memory, alloc, q);
            assertThat(disk.entered.await(10, TimeUnit.SECONDS)).as("the read reached the disk").isTrue();
            Thread resetter = Thread.ofPlatform().start(blk::reset); // completes once nothing is in flight
            Thread.sleep(50);
            disk.gate.countDown();
            resetter.join(TimeUnit.SECONDS.toMillis(10));
            assertThat(resetter.isAlive()).as("reset completed").isFalse();

            long usedRing = q.addresses().usedRing();
            int usedIdx = memory.readU16(usedRing + 2) & 0xffff;
            byte[] usedBefore = memory.slice(usedRing, 4 + 8L * blk.maxQueueSize(0)).toArray(ValueLayout.JAVA_BYTE);
            int interruptsBefore = interrupts.get();
            byte firstStatus = memory.slice(first, 1).get(ValueLayout.JAVA_BYTE, 0);
            assertThat(usedIdx).as("the request in flight was drained by the reset, not abandoned").isEqualTo(1);
            assertThat(firstStatus).isEqualTo((byte) Blk.S_OK);

            // a driver that keeps going: a new request and a kick after the reset
            long second = read(memory, alloc, q);
            blk.queueNotify(0);
            Thread.sleep(300); // a live queue thread serves a kick within microseconds

            assertThat(memory.slice(usedRing, usedBefore.length).toArray(ValueLayout.JAVA_BYTE))
                    .as("used ring after reset (used.idx %d)", usedIdx).isEqualTo(usedBefore);
            assertThat(interrupts.get()).as("interrupts after reset").isEqualTo(interruptsBefore);
            assertThat(disk.reads.get()).as("requests the disk saw").isEqualTo(1);
            assertThat(memory.slice(second, 1).get(ValueLayout.JAVA_BYTE, 0)).as("second status byte").isEqualTo((byte) 0x7f);
            assertThat(memory.slice(first, 1).get(ValueLayout.JAVA_BYTE, 0)).as("first status byte").isEqualTo(firstStatus);
        }
    }

    @Test
    @Conformance("split-dev-3")
    void whatADriverPutsInDeviceWritableBuffersIsNeverTakenAsARequestOrAFrame() throws Exception {
        io.jvirtio.devices.blk.MemoryBackend disk = new io.jvirtio.devices.blk.MemoryBackend(1 << 20, false);
        try (DeviceHarness h = new DeviceHarness(new BlkDevice(disk), Feature.VERSION_1.mask())) {
            // a well-formed write of 0xab to sector 0 — but every byte of it in device-writable buffers
            long hdr = h.alloc.allocate(16, 8);
            h.memory.writeU32(hdr, Blk.T_OUT);
            h.memory.writeU64(hdr + 8, 0);
            long data = h.alloc.allocate(512, 8);
            h.memory.slice(data, 512).fill((byte) 0xab);
            long status = h.alloc.allocate(1, 1);
            h.roundTrip(0, new Scatterlist().addWritable(hdr, 16).addWritable(data, 512).addWritable(status, 1));
            assertThat(h.memory.slice(status, 1).get(ValueLayout.JAVA_BYTE, 0)).isEqualTo((byte) Blk.S_IOERR);
            assertThat(disk.contents().asSlice(0, 512).toArray(ValueLayout.JAVA_BYTE)).as("sector 0").containsOnly(0);
        }
        List<byte[]> sent = new java.util.concurrent.CopyOnWriteArrayList<>();
        io.jvirtio.devices.net.NetBackend wire = new io.jvirtio.devices.net.NetBackend() {
            public void transmit(MemorySegment buffer, long offset, long length) {
                sent.add(buffer.asSlice(offset, length).toArray(ValueLayout.JAVA_BYTE));
            }
            public void connect(Receiver receiver) { }
        };
        io.jvirtio.devices.net.NetDevice nic = new io.jvirtio.devices.net.NetDevice(wire, new byte[] {0x52, 0x54, 0, 0, 0, 1}, 1);
        try (DeviceHarness h = new DeviceHarness(nic, Feature.VERSION_1.mask())) {
            long frame = h.alloc.allocate(12 + 60, 8);
            h.memory.slice(frame + 12, 60).fill((byte) 0x33);
            assertThat(h.roundTrip(1, new Scatterlist().addWritable(frame, 12 + 60))).as("used length").isZero();
            h.roundTrip(1, new Scatterlist().addReadable(frame, 12).addWritable(frame + 12, 60));
            assertThat(sent).as("frames transmitted").isEmpty();
            assertThat(nic.txDropped.get()).isEqualTo(2);
            h.roundTrip(1, new Scatterlist().addReadable(frame, 12 + 60)); // the same bytes, readable: sent
            assertThat(sent).hasSize(1);
        }
    }

    /** Posts a one-sector read and kicks; returns the address of its status byte (0x7f until written). */
    private static long read(GuestMemory memory, GuestAllocator alloc, DriverQueue<Object> q) throws Exception {
        long hdr = alloc.allocate(16, 8);
        memory.writeU32(hdr, Blk.T_IN);
        memory.writeU64(hdr + 8, 0);
        long data = alloc.allocate(512, 8);
        long status = alloc.allocate(1, 1);
        memory.slice(status, 1).fill((byte) 0x7f);
        assertThat(q.addBuf(new Scatterlist().addReadable(hdr, 16).addWritable(data, 512).addWritable(status, 1),
                new Object())).isTrue();
        q.kick();
        return status;
    }
}
