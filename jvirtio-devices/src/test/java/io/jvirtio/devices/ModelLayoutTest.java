package io.jvirtio.devices;

import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.core.spec.Blk;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.MemoryBackend;
import io.jvirtio.core.spec.Net;
import io.jvirtio.devices.net.NetBackend;
import io.jvirtio.devices.net.NetDevice;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Every configuration field and offered feature of the block and network models, at their limits, and
 * the block device's counters: what a driver reads first, and what an operator reads.
 */
class ModelLayoutTest {
    static final NetBackend NOWHERE = new NetBackend() {
        public void transmit(MemorySegment buffer, long offset, long length) { }
        public void connect(Receiver receiver) { }
    };

    @Test
    void blockConfigurationSpace() {
        BlkDevice d = new BlkDevice(new MemoryBackend(3 << 20, false), 3, 1 << 16);
        var c = d.config();
        assertThat(c.load(Blk.CFG_CAPACITY, 8)).isEqualTo((3 << 20) / 512);
        assertThat(c.load(Blk.CFG_SIZE_MAX, 4)).isEqualTo(1 << 16);
        assertThat(c.load(Blk.CFG_SEG_MAX, 4)).isEqualTo(254);
        assertThat(c.load(Blk.CFG_BLK_SIZE, 4)).isEqualTo(512);
        assertThat(c.load(Blk.CFG_PHYSICAL_BLOCK_EXP, 1)).isEqualTo(3);
        assertThat(c.load(Blk.CFG_ALIGNMENT_OFFSET, 1)).isZero();
        assertThat(c.load(Blk.CFG_MIN_IO_SIZE, 2)).isEqualTo(8);
        assertThat(c.load(Blk.CFG_OPT_IO_SIZE, 4)).isEqualTo(256);
        assertThat(c.load(Blk.CFG_NUM_QUEUES, 2)).isEqualTo(3);
        assertThat(c.load(Blk.CFG_MAX_DISCARD_SECTORS, 4)).isEqualTo(0x7fffff);
        assertThat(c.load(Blk.CFG_MAX_DISCARD_SEG, 4)).isEqualTo(1);
        assertThat(c.load(Blk.CFG_DISCARD_SECTOR_ALIGNMENT, 4)).isEqualTo(8);
        assertThat(c.load(Blk.CFG_MAX_WRITE_ZEROES_SECTORS, 4)).isEqualTo(0x7fffff);
        assertThat(c.load(Blk.CFG_MAX_WRITE_ZEROES_SEG, 4)).isEqualTo(1);
        assertThat(d.numQueues()).isEqualTo(3);
        assertThat(d.maxQueueSize(2)).isEqualTo(256);
    }

    @Test
    void blockFeaturesFollowTheBackendAndTheQueueCount() {
        long one = new BlkDevice(new MemoryBackend(1 << 20, false)).deviceFeatures();
        assertThat(Feature.BLK_MQ.isSet(one)).isFalse();
        assertThat(Feature.BLK_RO.isSet(one)).isFalse();
        long two = new BlkDevice(new MemoryBackend(1 << 20, true), 2).deviceFeatures();
        assertThat(Feature.BLK_MQ.isSet(two)).isTrue();
        assertThat(Feature.BLK_RO.isSet(two)).isTrue();
        assertThat(one & Feature.maskOf(Feature.BLK_DISCARD, Feature.BLK_WRITE_ZEROES, Feature.BLK_FLUSH, Feature.BLK_SEG_MAX,
                Feature.BLK_SIZE_MAX, Feature.BLK_BLK_SIZE, Feature.BLK_TOPOLOGY, Feature.EVENT_IDX, Feature.INDIRECT_DESC))
                .isEqualTo(Feature.maskOf(Feature.BLK_DISCARD, Feature.BLK_WRITE_ZEROES, Feature.BLK_FLUSH,
                        Feature.BLK_SEG_MAX, Feature.BLK_SIZE_MAX, Feature.BLK_BLK_SIZE, Feature.BLK_TOPOLOGY,
                        Feature.EVENT_IDX, Feature.INDIRECT_DESC));
        assertThat(new BlkDevice(new MemoryBackend(1 << 20, false), 64).numQueues()).isEqualTo(64);
        assertThatThrownBy(() -> new BlkDevice(new MemoryBackend(1 << 20, false), 65)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> new BlkDevice(new MemoryBackend(1 << 20, false), 0)).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void blockCountersCountWhatWasDone() throws Exception {
        MemoryBackend disk = new MemoryBackend(1 << 20, false);
        BlkDevice d = new BlkDevice(disk);
        long features = Feature.maskOf(Feature.VERSION_1, Feature.BLK_FLUSH);
        try (DeviceHarness h = new DeviceHarness(d, features)) {
            long hdr = h.alloc.allocate(16, 8);
            long data = h.alloc.allocate(4096, 512);
            long st = h.alloc.allocate(1, 1);
            for (int type : new int[] {Blk.T_OUT, Blk.T_IN, Blk.T_FLUSH, 99}) {
                h.memory.writeU32(hdr, type);
                h.memory.writeU64(hdr + 8, 0);
                Scatterlist sg = new Scatterlist().addReadable(hdr, 16);
                if (type == Blk.T_OUT) {
                    sg.addReadable(data, 4096);
                } else if (type == Blk.T_IN) {
                    sg.addWritable(data, 2048);
                }
                h.roundTrip(0, sg.addWritable(st, 1));
            }
        }
        assertThat(d.writes.sum()).isEqualTo(1);
        assertThat(d.bytesWritten.sum()).isEqualTo(4096);
        assertThat(d.reads.sum()).isEqualTo(1);
        assertThat(d.bytesRead.sum()).isEqualTo(2048);
        assertThat(d.flushes.sum()).isEqualTo(1);
        assertThat(d.errors.sum()).as("the unknown request").isEqualTo(1);
    }

    @Test
    void networkConfigurationSpaceAndLimits() {
        byte[] mac = {0x52, 0x54, 0, 1, 2, 3};
        NetDevice n = new NetDevice(NOWHERE, mac, 64, 9202);
        var c = n.config();
        byte[] m = new byte[6];
        c.read(Net.CFG_MAC, m, 0, 6);
        assertThat(m).isEqualTo(mac);
        assertThat(c.load(Net.CFG_STATUS, 2)).isEqualTo(Net.S_LINK_UP);
        assertThat(c.load(Net.CFG_MAX_VIRTQUEUE_PAIRS, 2)).isEqualTo(64);
        assertThat(c.load(Net.CFG_MTU, 2)).isEqualTo(9202);
        assertThat(n.numQueues()).isEqualTo(129);
        n.setLinkUp(false);
        assertThat(c.load(Net.CFG_STATUS, 2)).isZero();
        n.setLinkUp(true);
        assertThat(c.load(Net.CFG_STATUS, 2)).isEqualTo(Net.S_LINK_UP);
        assertThat(new NetDevice(NOWHERE, mac, 1, 68).config().load(Net.CFG_MTU, 2)).isEqualTo(68);
        assertThatThrownBy(() -> new NetDevice(NOWHERE, mac, 1, 9203)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> new NetDevice(NOWHERE, mac, 0, 1500)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> new NetDevice(NOWHERE, new byte[5], 1, 1500)).isInstanceOf(IllegalArgumentException.class);
        assertThat(Feature.NET_MQ.isSet(new NetDevice(NOWHERE, mac, 2).deviceFeatures())).isTrue();
    }

    @Test
    @io.jvirtio.core.spec.Conformance("basic-dev-4")
    void networkFeatureSetsWithoutTheControlQueueAreRefused() {
        NetDevice n = new NetDevice(NOWHERE, new byte[6], 2);
        long base = Feature.maskOf(Feature.VERSION_1, Feature.NET_MAC);
        assertThat(n.acceptFeatures(base)).isTrue();
        assertThat(n.acceptFeatures(base | Feature.NET_CTRL_VQ.mask() | Feature.NET_MQ.mask())).isTrue();
        for (Feature f : new Feature[] {Feature.NET_CTRL_RX, Feature.NET_CTRL_MAC_ADDR, Feature.NET_MQ}) {
            assertThat(n.acceptFeatures(base | f.mask())).as("%s without CTRL_VQ", f).isFalse();
        }
    }

    /** A memory disk that logs flushes and discards. */
    static final class Logged implements io.jvirtio.devices.blk.SyncBlockBackend {
        final MemoryBackend mem;
        final java.util.List<String> log = new java.util.concurrent.CopyOnWriteArrayList<>();

        Logged(MemoryBackend mem) { this.mem = mem; }
        public long capacity() { return mem.capacity(); }
        public boolean readOnly() { return mem.readOnly(); }
        public String id() { return "logged"; }
        public void read(long offset, MemorySegment dst) { mem.read(offset, dst); }
        public void write(long offset, MemorySegment src) { mem.write(offset, src); }
        public void flush() { log.add("flush"); }
        public void writeZeroes(long offset, long length, boolean unmap) { log.add("zeroes " + offset + "+" + length); }
        public void discard(long offset, long length) { log.add("discard " + offset + "+" + length); }
    }

    static int request(DeviceHarness h, int type, long sector, long segment, int segmentBytes, int... writable)
            throws Exception {
        return h.blkRequest(type, sector, segment, segmentBytes, writable);
    }

    static long dwz(DeviceHarness h, long sector, long sectors, int flags) throws Exception {
        return h.dwzSegment(sector, sectors, flags);
    }

    @Test
    void discardAndFlushReachTheBackendWithByteOffsetsAndBadSegmentsAreRefused() throws Exception {
        Logged disk = new Logged(new MemoryBackend(1 << 20, false));
        long features = Feature.maskOf(Feature.VERSION_1, Feature.BLK_FLUSH, Feature.BLK_DISCARD, Feature.BLK_WRITE_ZEROES);
        try (DeviceHarness h = new DeviceHarness(new BlkDevice(io.jvirtio.devices.blk.BlockBackends.inline(disk)), features)) {
            assertThat(request(h, Blk.T_DISCARD, 0, dwz(h, 16, 8, 0), 16)).isEqualTo(Blk.S_OK);
            assertThat(request(h, Blk.T_WRITE_ZEROES, 0, dwz(h, 2040, 8, 1), 16)).as("the last 8 sectors").isEqualTo(Blk.S_OK);
            assertThat(request(h, Blk.T_FLUSH, 0, 0, 0)).isEqualTo(Blk.S_OK);
            assertThat(disk.log).containsExactly("discard 8192+4096", "zeroes 1044480+4096", "flush");
            long two = h.alloc.allocate(32, 8);
            assertThat(request(h, Blk.T_DISCARD, 0, two, 32)).as("two segments: max_discard_seg is 1").isEqualTo(Blk.S_UNSUPP);
            assertThat(request(h, Blk.T_DISCARD, 0, two, 10)).as("not a whole segment").isEqualTo(Blk.S_IOERR);
            assertThat(request(h, Blk.T_DISCARD, 0, 0, 0)).as("no segment").isEqualTo(Blk.S_IOERR);
            assertThat(request(h, Blk.T_WRITE_ZEROES, 0, dwz(h, 2041, 8, 0), 16)).as("one sector past the end").isEqualTo(Blk.S_IOERR);
            assertThat(disk.log).hasSize(3);
        }
        Logged ro = new Logged(new MemoryBackend(1 << 20, true));
        try (DeviceHarness h = new DeviceHarness(new BlkDevice(io.jvirtio.devices.blk.BlockBackends.inline(ro)), features)) {
            assertThat(request(h, Blk.T_DISCARD, 0, dwz(h, 16, 8, 0), 16)).as("read-only").isEqualTo(Blk.S_IOERR);
        }
        try (DeviceHarness h = new DeviceHarness(new BlkDevice(new MemoryBackend(1 << 20, false)), Feature.VERSION_1.mask())) {
            assertThat(request(h, Blk.T_DISCARD, 0, dwz(h, 16, 8, 0), 16)).as("DISCARD not negotiated").isEqualTo(Blk.S_UNSUPP);
        }
    }

    @Test
    void readsScatterIntoOddSegmentsAndStopAtTheEnd() throws Exception {
        MemoryBackend disk = new MemoryBackend(1 << 20, false);
        for (int i = 0; i < 2048; i++) {
            disk.contents().set(java.lang.foreign.ValueLayout.JAVA_BYTE, 1024L * 512 + i, (byte) (i * 13));
        }
        try (DeviceHarness h = new DeviceHarness(new BlkDevice(disk), Feature.VERSION_1.mask())) {
            long hdr = h.alloc.allocate(16, 8);
            h.memory.writeU32(hdr, Blk.T_IN);
            h.memory.writeU64(hdr + 8, 1024);
            long a = h.alloc.allocate(100, 8), b = h.alloc.allocate(1900, 8), c = h.alloc.allocate(48, 8);
            long st = h.alloc.allocate(1, 1);
            h.roundTrip(0, new Scatterlist().addReadable(hdr, 16).addWritable(a, 100).addWritable(b, 1900)
                    .addWritable(c, 48).addWritable(st, 1));
            byte[] got = new byte[2048];
            h.memory.read(a, got, 0, 100);
            h.memory.read(b, got, 100, 1900);
            h.memory.read(c, got, 2000, 48);
            for (int i = 0; i < 2048; i++) {
                assertThat(got[i]).as("byte %d", i).isEqualTo((byte) (i * 13));
            }
            assertThat(request(h, Blk.T_IN, 2048, 0, 0)).as("no data at the very end: nothing to read, nothing wrong")
                    .isEqualTo(Blk.S_OK);
            assertThat(request(h, Blk.T_IN, 2047, 0, 0, 512)).as("the last sector").isEqualTo(Blk.S_OK);
            assertThat(request(h, Blk.T_IN, 2047, 0, 0, 1024)).as("one sector too many").isEqualTo(Blk.S_IOERR);
            assertThat(request(h, Blk.T_IN, 0, 0, 0, 513)).as("not whole sectors").isEqualTo(Blk.S_IOERR);
        }
    }
}
