package io.jvirtio.devices.blk;

import io.jvirtio.core.spec.Blk;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.spec.Conformance;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.DeviceHarness;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The device's write cache (VIRTIO_BLK_F_CONFIG_WCE, §5.2.4 {@code writeback}; §5.2.6.1 on stable writes)
 * and what FLUSH guarantees, checked where it can be seen: on a loop block device whose own page cache sits
 * between the device and its backing file, a write that is not yet stable is not in the backing file, and a
 * stable one is.
 */
@Timeout(60)
class WriteCacheTest {
    static final long FEATURES = Feature.maskOf(Feature.VERSION_1, Feature.BLK_FLUSH, Feature.BLK_CONFIG_WCE);

    @TempDir
    Path dir;

    /** A store that logs what the device asks of it, in order. */
    static final class Log implements SyncBlockBackend {
        final MemoryBackend mem = new MemoryBackend(1 << 20, false);
        final List<String> log = java.util.Collections.synchronizedList(new java.util.ArrayList<>());
        final boolean cache;

        Log(boolean cache) { this.cache = cache; }
        public long capacity() { return mem.capacity(); }
        public boolean readOnly() { return false; }
        public String id() { return "log"; }
        public boolean writeCache() { return cache; }
        public void read(long o, java.lang.foreign.MemorySegment d) { mem.read(o, d); }
        public void write(long o, java.lang.foreign.MemorySegment s) { mem.write(o, s); log.add("write"); }
        public void flush() { log.add("flush"); }
        public void writeZeroes(long o, long l, boolean u) { log.add("zeroes"); }
    }

    static int write(DeviceHarness h, long sector, byte[] data) throws Exception {
        long hdr = h.alloc.allocate(16, 8);
        h.memory.writeU32(hdr, Blk.T_OUT);
        h.memory.writeU64(hdr + 8, sector);
        long buf = h.alloc.allocate(data.length, 512);
        h.memory.write(buf, data, 0, data.length);
        long st = h.alloc.allocate(1, 1);
        h.roundTrip(0, new Scatterlist().addReadable(hdr, 16).addReadable(buf, data.length).addWritable(st, 1));
        byte[] s = new byte[1];
        h.memory.read(st, s, 0, 1);
        return s[0];
    }

    static int flush(DeviceHarness h) throws Exception {
        long hdr = h.alloc.allocate(16, 8);
        h.memory.writeU32(hdr, Blk.T_FLUSH);
        long st = h.alloc.allocate(1, 1);
        h.roundTrip(0, new Scatterlist().addReadable(hdr, 16).addWritable(st, 1));
        byte[] s = new byte[1];
        h.memory.read(st, s, 0, 1);
        return s[0];
    }

    @Test
    @Conformance("blk-dev-2")
    void withConfigWceButWithoutFlushTheCacheStartsOffAndStaysOff() throws Exception {
        Log store = new Log(true);
        BlkDevice d = new BlkDevice(BlockBackends.inline(store));
        assertThat(Feature.BLK_CONFIG_WCE.isSet(d.deviceFeatures())).isTrue();
        assertThat(Feature.BLK_FLUSH.isSet(d.deviceFeatures())).as("blk-dev-1: FLUSH offered with CONFIG_WCE").isTrue();
        assertThat(d.config().load(Blk.CFG_WRITEBACK, 1)).as("before negotiation: the back-end's mode").isEqualTo(1);
        try (DeviceHarness h = new DeviceHarness(d, Feature.maskOf(Feature.VERSION_1, Feature.BLK_CONFIG_WCE))) {
            assertThat(d.config().load(Blk.CFG_WRITEBACK, 1)).as("writeback without FLUSH").isZero();
            d.config().driverWrite(Blk.CFG_WRITEBACK, new byte[] {1});
            assertThat(d.config().load(Blk.CFG_WRITEBACK, 1)).as("a cache nobody can flush is never turned on").isZero();
            assertThat(write(h, 0, new byte[512])).isEqualTo(Blk.S_OK);
            assertThat(store.log).containsExactly("write", "flush");
        }
    }

    @Test
    @Conformance("blk-dev-10")
    void theDriverTurnsTheWriteCacheOffAndOnThroughWriteback() throws Exception {
        Log store = new Log(true);
        BlkDevice d = new BlkDevice(BlockBackends.inline(store));
        try (DeviceHarness h = new DeviceHarness(d, FEATURES)) {
            assertThat(d.config().load(Blk.CFG_WRITEBACK, 1)).isEqualTo(1);
            assertThat(write(h, 0, new byte[512])).isEqualTo(Blk.S_OK);
            assertThat(store.log).as("cached: no flush").containsExactly("write");
            d.config().driverWrite(Blk.CFG_WRITEBACK, new byte[] {0});
            assertThat(d.config().load(Blk.CFG_WRITEBACK, 1)).isZero();
            assertThat(write(h, 1, new byte[512])).isEqualTo(Blk.S_OK);
            assertThat(store.log).as("writethrough: stable before completion").containsExactly("write", "write", "flush");
            d.config().driverWrite(Blk.CFG_WRITEBACK, new byte[] {7});
            assertThat(d.config().load(Blk.CFG_WRITEBACK, 1)).as("only 0 and 1 are modes").isZero();
            d.config().driverWrite(Blk.CFG_WRITEBACK, new byte[] {1});
            assertThat(write(h, 2, new byte[512])).isEqualTo(Blk.S_OK);
            assertThat(store.log).hasSize(4);
        }
        assertThat(d.config().load(Blk.CFG_WRITEBACK, 1)).as("reset: the back-end's mode again").isEqualTo(1);
    }

    @Test
    void writethroughBackEndsStartWithTheCacheOff() throws Exception {
        Log store = new Log(false);
        BlkDevice d = new BlkDevice(BlockBackends.inline(store));
        assertThat(d.config().load(Blk.CFG_WRITEBACK, 1)).isZero();
        try (DeviceHarness h = new DeviceHarness(d, FEATURES)) {
            assertThat(write(h, 0, new byte[512])).isEqualTo(Blk.S_OK);
            assertThat(store.log).containsExactly("write", "flush");
        }
    }

    /** A loop block device over a file in the test directory; null (and the test skipped) where none can be made. */
    record Loop(String device, Path backing) implements AutoCloseable {
        static Loop create(Path dir, int bytes) throws Exception {
            Path backing = dir.resolve("backing.img");
            Files.write(backing, new byte[bytes]);
            Process p = new ProcessBuilder("losetup", "-f", "--show", backing.toString()).redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes()).trim();
            assumeTrue(p.waitFor() == 0 && out.startsWith("/dev/loop"),
                    "SKIPPED: cannot make a loop device here (losetup: " + out + "); needs root and /dev/loop-control");
            return new Loop(out, backing);
        }

        byte[] backingBytes(long offset, int n) throws Exception {
            ByteBuffer b = ByteBuffer.allocate(n);
            try (FileChannel c = FileChannel.open(backing, StandardOpenOption.READ)) {
                c.read(b, offset);
            }
            return b.array();
        }

        @Override
        public void close() throws Exception {
            new ProcessBuilder("losetup", "-d", device).inheritIO().start().waitFor();
        }
    }

    @ParameterizedTest
    @MethodSource("io.jvirtio.devices.blk.FileBackendTest#engines")
    @Conformance("blk-dev-11")
    void onABlockDeviceAFlushMakesEarlierWritesStableAndWritethroughWritesAreStableAtOnce(AioEngine engine) throws Exception {
        try (Loop loop = Loop.create(dir, 16 << 20);
             FileBackend file = new FileBackend(Path.of(loop.device()), false, CacheMode.WRITEBACK, engine, 4, 0)) {
            assertThat(file.capacity()).as("a block device's size (BLKGETSIZE64)").isEqualTo(16 << 20);
            BlkDevice d = new BlkDevice(file);
            try (DeviceHarness h = new DeviceHarness(d, FEATURES)) {
                byte[] a = new byte[4096];
                new Random(1).nextBytes(a);
                assertThat(write(h, 8, a)).isEqualTo(Blk.S_OK);
                assumeTrue(!java.util.Arrays.equals(loop.backingBytes(8 * 512, 4096), a),
                        "SKIPPED: the host wrote the loop device's cache back on its own; nothing to observe");
                assertThat(flush(h)).isEqualTo(Blk.S_OK);
                assertThat(loop.backingBytes(8 * 512, 4096)).as("after FLUSH").isEqualTo(a);

                d.config().driverWrite(Blk.CFG_WRITEBACK, new byte[] {0});
                byte[] b = new byte[4096];
                new Random(2).nextBytes(b);
                assertThat(write(h, 64, b)).isEqualTo(Blk.S_OK);
                assertThat(loop.backingBytes(64 * 512, 4096)).as("write cache off: stable at completion").isEqualTo(b);
            }
        }
    }

    @ParameterizedTest
    @MethodSource("io.jvirtio.devices.blk.FileBackendTest#engines")
    void aBlockDeviceTakesDiscardAndWriteZeroes(AioEngine engine) throws Exception {
        try (Loop loop = Loop.create(dir, 8 << 20);
             FileBackend file = new FileBackend(Path.of(loop.device()), false, CacheMode.NONE, engine, 4, 0);
             BlockQueueDriver q = new BlockQueueDriver(file, 4);
             java.lang.foreign.Arena arena = java.lang.foreign.Arena.ofShared()) {
            java.lang.foreign.MemorySegment buf = arena.allocate(1 << 20, 4096);
            buf.fill((byte) 0x3c);
            assertThat(q.run(new BlockRequest(0).set(BlockRequest.Op.WRITE, 0, 1 << 20).addBuffer(buf))).isZero();
            assertThat(q.run(new BlockRequest(1).set(BlockRequest.Op.WRITE_ZEROES, 4096, 8192))).isZero();
            assertThat(q.run(new BlockRequest(2).set(BlockRequest.Op.DISCARD, 65536, 65536))).isZero();
            buf.fill((byte) 0x11);
            assertThat(q.run(new BlockRequest(3).set(BlockRequest.Op.READ, 0, 1 << 20).addBuffer(buf))).isZero();
            assertThat(buf.asSlice(4096, 8192).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE)).containsOnly(0);
            assertThat(buf.get(java.lang.foreign.ValueLayout.JAVA_BYTE, 4095)).isEqualTo((byte) 0x3c);
            assertThat(buf.get(java.lang.foreign.ValueLayout.JAVA_BYTE, 4096 + 8192)).isEqualTo((byte) 0x3c);
        }
    }
}
