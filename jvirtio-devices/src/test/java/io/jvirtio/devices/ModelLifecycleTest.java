package io.jvirtio.devices;

import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.core.spec.Blk;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.FileBackend;
import io.jvirtio.devices.blk.MemoryBackend;
import io.jvirtio.devices.net.NetBackend;
import io.jvirtio.devices.net.NetDevice;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * What happens to a device model between requests: a disk resized under it, its reset and close, a NIC's
 * announcement after migration — each seen in the configuration space or on the wire.
 */
class ModelLifecycleTest {

    @Test
    void aResizedDiskPublishesItsCapacityOnceAndShrinksOnlyWhenAllowed(@TempDir Path dir) throws Exception {
        try (FileBackend file = FileBackend.create(dir.resolve("disk.img"), 1 << 20)) {
            BlkDevice blk = new BlkDevice(file);
            BlkDevice other = new BlkDevice(file); // a second export of the same image
            AtomicInteger changes = new AtomicInteger();
            blk.config().onChange(changes::incrementAndGet);
            AtomicInteger otherChanges = new AtomicInteger();
            other.config().onChange(otherChanges::incrementAndGet);
            assertThat(blk.config().load(Blk.CFG_CAPACITY, 8)).isEqualTo(2048);

            assertThat(blk.resize(2 << 20, false)).isEqualTo(2 << 20);
            assertThat(blk.config().load(Blk.CFG_CAPACITY, 8)).isEqualTo(4096);
            assertThat(changes.get()).as("one configuration change").isEqualTo(1);

            assertThat(other.config().load(Blk.CFG_CAPACITY, 8)).as("until told").isEqualTo(2048);
            other.capacityChanged();
            assertThat(other.config().load(Blk.CFG_CAPACITY, 8)).isEqualTo(4096);
            other.capacityChanged(); // nothing new: no notification
            assertThat(otherChanges.get()).isEqualTo(1);

            assertThatThrownBy(() -> blk.resize(1 << 20, false)).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("from 2097152 to 1048576 bytes shrinks the disk");
            assertThat(blk.config().load(Blk.CFG_CAPACITY, 8)).isEqualTo(4096);
            assertThat(blk.resize(1 << 20, true)).isEqualTo(1 << 20);
            assertThat(blk.config().load(Blk.CFG_CAPACITY, 8)).isEqualTo(2048);
            assertThat(changes.get()).isEqualTo(2);

            assertThat(blk.isClosed()).isFalse();
            blk.close();
            assertThat(blk.isClosed()).isTrue();
            other.close();
        }
    }

    @Test
    void aResetDiskForgetsTheDriversWriteCacheChoice() throws Exception {
        BlkDevice blk = new BlkDevice(new MemoryBackend(1 << 20, false));
        long features = Feature.maskOf(Feature.VERSION_1, Feature.BLK_FLUSH, Feature.BLK_CONFIG_WCE);
        assertThat(blk.config().load(Blk.CFG_WRITEBACK, 1)).as("writeback by default").isEqualTo(1);
        try (DeviceHarness h = new DeviceHarness(blk, features)) {
            blk.config().driverWrite(Blk.CFG_WRITEBACK, new byte[] {0});
            assertThat(blk.config().load(Blk.CFG_WRITEBACK, 1)).as("writethrough, as the driver asked").isZero();
        } // the harness resets the device
        assertThat(blk.config().load(Blk.CFG_WRITEBACK, 1)).as("after reset").isEqualTo(1);
    }

    @Test
    void aReadOnlyDiskRefusesDiscardAndWriteZeroesAndKeepsItsBytes() throws Exception {
        MemoryBackend disk = new MemoryBackend(1 << 20, true);
        disk.contents().fill((byte) 0x77);
        long features = Feature.maskOf(Feature.VERSION_1, Feature.BLK_DISCARD, Feature.BLK_WRITE_ZEROES, Feature.BLK_RO);
        try (DeviceHarness h = new DeviceHarness(new BlkDevice(disk), features)) {
            assertThat(h.blkRequest(Blk.T_DISCARD, 0, h.dwzSegment(0, 8, 0), 16)).isEqualTo(Blk.S_IOERR);
            assertThat(h.blkRequest(Blk.T_WRITE_ZEROES, 0, h.dwzSegment(0, 8, 1), 16)).isEqualTo(Blk.S_IOERR);
        }
        assertThat(disk.contents().asSlice(0, 4096).toArray(ValueLayout.JAVA_BYTE)).containsOnly(0x77);
    }

    @Test
    void aRequestWithMoreBuffersThanSegMaxAllowsFailsAndWritesNothing() throws Exception {
        MemoryBackend disk = new MemoryBackend(1 << 20, false);
        long features = Feature.maskOf(Feature.VERSION_1, Feature.INDIRECT_DESC);
        try (DeviceHarness h = new DeviceHarness(new BlkDevice(disk), features, 512)) {
            // seg_max data buffers, in one indirect table: served
            long hdr = h.alloc.allocate(16, 8);
            h.memory.writeU32(hdr, Blk.T_OUT);
            Scatterlist sg = new Scatterlist().addReadable(hdr, 16);
            long buf = h.alloc.allocate(512L * (BlkDevice.SEG_MAX + 1), 512);
            h.memory.slice(buf, 512L * (BlkDevice.SEG_MAX + 1)).fill((byte) 0x42);
            for (int b = 0; b < BlkDevice.SEG_MAX; b++) {
                sg.addReadable(buf + 512L * b, 512);
            }
            long status = h.alloc.allocate(1, 1);
            h.roundTrip(0, sg.addWritable(status, 1));
            assertThat(h.memory.slice(status, 1).get(ValueLayout.JAVA_BYTE, 0)).isEqualTo((byte) Blk.S_OK);

            // one more, at sector 1024: a hand-made table, since jvirtio's driver never builds one that long
            int n = BlkDevice.SEG_MAX + 3;
            long table = h.alloc.allocate(16L * n, 16);
            h.memory.writeU64(hdr + 8, 1024);
            for (int k = 0; k < n; k++) {
                long at = table + 16L * k;
                boolean last = k == n - 1;
                h.memory.writeU64(at, k == 0 ? hdr : last ? status : buf + 512L * (k - 1));
                h.memory.writeU32(at + 8, k == 0 ? 16 : last ? 1 : 512);
                h.memory.writeU16(at + 12, (short) (last ? 2 : 1)); // WRITE on the status byte, NEXT before it
                h.memory.writeU16(at + 14, (short) (k + 1));
            }
            var q = h.queues.get(0);
            long ring = q.addresses().descTable();
            q.addBuf(new Scatterlist().addReadable(hdr, 16).addWritable(status, 1), "hostile");
            int head = h.memory.readU16(q.addresses().availRing() + 4 + 2) & 0xffff; // the second entry
            h.memory.writeU64(ring + 16L * head, table);
            h.memory.writeU32(ring + 16L * head + 8, 16 * n);
            q.kick();
            long deadline = System.nanoTime() + java.util.concurrent.TimeUnit.SECONDS.toNanos(5);
            while (q.getBuf() == null) {
                assertThat(System.nanoTime()).as("completed").isLessThan(deadline);
                Thread.sleep(1);
            }
            assertThat(h.memory.slice(status, 1).get(ValueLayout.JAVA_BYTE, 0)).as("%d data buffers", n - 2)
                    .isEqualTo((byte) Blk.S_IOERR);
            assertThat(h.needsReset.get()).isNull();
        }
        assertThat(disk.contents().asSlice(0, 512L * BlkDevice.SEG_MAX).toArray(ValueLayout.JAVA_BYTE)).containsOnly(0x42);
        assertThat(disk.contents().asSlice(1024 * 512, 512L * (BlkDevice.SEG_MAX + 1)).toArray(ValueLayout.JAVA_BYTE))
                .as("the refused request wrote nothing").containsOnly(0);
    }

    /** A backend that records what the NIC sends and lets the test deliver frames to it. */
    static final class Wire implements NetBackend {
        final List<byte[]> sent = new CopyOnWriteArrayList<>();
        volatile Receiver receiver;
        boolean closed;

        public void transmit(MemorySegment buffer, long offset, long length) {
            sent.add(buffer.asSlice(offset, length).toArray(ValueLayout.JAVA_BYTE));
        }

        public void connect(Receiver r) {
            receiver = r;
        }

        void deliver(byte[] frame) {
            receiver.receive(MemorySegment.ofArray(frame), frame.length);
        }

        @Override
        public void close() {
            closed = true;
        }
    }

    static final byte[] MAC = {0x52, 0x54, 0, 0, 0, 0x42};

    @Test
    void anAnnouncementIsTheRarpRequestQemuSends() {
        Wire wire = new Wire();
        NetDevice nic = new NetDevice(wire, MAC, 1);
        assertThat(nic.announce(new byte[5])).as("not a MAC").isFalse();
        assertThat(wire.sent).isEmpty();
        assertThat(nic.announce(MAC)).isTrue();
        assertThat(wire.sent).hasSize(1);
        byte[] f = wire.sent.getFirst();
        byte[] want = new byte[60];
        java.util.Arrays.fill(want, 0, 6, (byte) 0xff);
        System.arraycopy(MAC, 0, want, 6, 6);
        byte[] rarp = {(byte) 0x80, 0x35, 0, 1, 0x08, 0, 6, 4, 0, 3};
        System.arraycopy(rarp, 0, want, 12, rarp.length);
        System.arraycopy(MAC, 0, want, 22, 6);
        System.arraycopy(MAC, 0, want, 32, 6);
        assertThat(f).isEqualTo(want);
    }

    @Test
    void framesWaitingAtResetNeverReachTheNextDriver() throws Exception {
        Wire wire = new Wire();
        NetDevice nic = new NetDevice(wire, MAC, 1);
        long features = Feature.maskOf(Feature.VERSION_1, Feature.NET_MAC);
        byte[] old = frame((byte) 1);
        try (DeviceHarness first = new DeviceHarness(nic, features)) {
            wire.deliver(old); // no receive buffer posted: it waits in the device
            assertThat(nic.rxDropped.get()).isZero();
        }
        byte[] fresh = frame((byte) 2);
        try (DeviceHarness second = new DeviceHarness(nic, features)) {
            DriverQueue<Object> rx = second.queues.get(0);
            long buf = second.alloc.allocate(2048, 8);
            rx.addBuf(new Scatterlist().addWritable(buf, 2048), "rx");
            rx.kick();
            wire.deliver(fresh);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while (rx.getBuf() == null) {
                assertThat(System.nanoTime()).as("a frame delivered").isLessThan(deadline);
                Thread.sleep(1);
            }
            byte[] got = new byte[fresh.length];
            second.memory.read(buf + 12, got, 0, got.length);
            assertThat(rx.lastLength()).isEqualTo(12 + fresh.length);
            assertThat(got).as("the frame that arrived after the reset, not the one before").isEqualTo(fresh);
        }
        nic.close();
        assertThat(wire.closed).as("close releases the backend").isTrue();
    }

    static byte[] frame(byte tag) {
        byte[] f = new byte[64];
        System.arraycopy(MAC, 0, f, 0, 6);
        f[12] = 0x08;
        f[20] = tag;
        return f;
    }
}
