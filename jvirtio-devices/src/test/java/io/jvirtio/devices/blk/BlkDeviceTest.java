package io.jvirtio.devices.blk;

import io.jvirtio.core.spec.Blk;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.DeviceHarness;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;

/** The device-normative rules of §5.2.6.1 and malformed requests, with requests built byte by byte. */
class BlkDeviceTest {
    static final long ALL = Feature.maskOf(Feature.VERSION_1, Feature.BLK_FLUSH, Feature.BLK_DISCARD,
            Feature.BLK_WRITE_ZEROES, Feature.BLK_BLK_SIZE, Feature.BLK_SEG_MAX);

    DeviceHarness h;
    MemoryBackend disk;

    void start(MemoryBackend backend, long features) throws Exception {
        disk = backend;
        h = new DeviceHarness(new BlkDevice(backend), features);
    }

    @AfterEach
    void tearDown() {
        if (h != null) {
            h.close();
        }
    }

    long header(int type, long sector) throws Exception {
        long at = h.alloc.allocate(16, 8);
        h.memory.writeU32(at, type);
        h.memory.writeU64(at + 8, sector);
        return at;
    }

    long statusByte() throws Exception {
        long at = h.alloc.allocate(1, 1);
        h.memory.write(at, new byte[] {(byte) 0xee}, 0, 1);
        return at;
    }

    int status(long at) throws Exception {
        byte[] b = new byte[1];
        h.memory.read(at, b, 0, 1);
        return b[0] & 0xff;
    }

    @Test
    void writeThenReadMovesTheBytesAndReportsLengths() throws Exception {
        start(new MemoryBackend(1 << 20, false), ALL);
        long data = h.alloc.allocate(1024, 512);
        byte[] pattern = new byte[1024];
        for (int i = 0; i < pattern.length; i++) {
            pattern[i] = (byte) (i * 7);
        }
        h.memory.write(data, pattern, 0, 1024);
        long st = statusByte();
        // header and data split oddly across descriptors: the device must not assume a layout (§2.7.4.1)
        long hdr = header(Blk.T_OUT, 10);
        int len = h.roundTrip(0, new Scatterlist().addReadable(hdr, 16).addReadable(data, 100)
                .addReadable(data + 100, 924).addWritable(st, 1));
        assertThat(status(st)).isEqualTo(Blk.S_OK);
        assertThat(len).as("only the status byte was written").isEqualTo(1);
        assertThat(disk.contents().asSlice(10 * 512, 1024).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE))
                .isEqualTo(pattern);

        long in = h.alloc.allocate(1025, 512);
        len = h.roundTrip(0, new Scatterlist().addReadable(header(Blk.T_IN, 10), 16).addWritable(in, 1025));
        assertThat(len).as("data + status").isEqualTo(1025);
        byte[] back = new byte[1025];
        h.memory.read(in, back, 0, 1025);
        assertThat(java.util.Arrays.copyOf(back, 1024)).isEqualTo(pattern);
        assertThat(back[1024]).isEqualTo((byte) Blk.S_OK);
    }

    @Test
    @io.jvirtio.core.spec.Conformance("blk-dev-6")
    void readOnlyDeviceFailsWritesWithoutWritingData() throws Exception {
        start(new MemoryBackend(1 << 20, true), ALL | Feature.BLK_RO.mask());
        long data = h.alloc.allocate(512, 512);
        h.memory.slice(data, 512).fill((byte) 0x55);
        long st = statusByte();
        h.roundTrip(0, new Scatterlist().addReadable(header(Blk.T_OUT, 0), 16).addReadable(data, 512).addWritable(st, 1));
        assertThat(status(st)).isEqualTo(Blk.S_IOERR);
        assertThat(disk.contents().asSlice(0, 512).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE)).containsOnly(0);
    }

    @Test
    void lengthsThatAreNotWholeSectorsAreErrors() throws Exception {
        start(new MemoryBackend(1 << 20, false), ALL);
        long data = h.alloc.allocate(600, 8);
        long st = statusByte();
        h.roundTrip(0, new Scatterlist().addReadable(header(Blk.T_OUT, 0), 16).addReadable(data, 600).addWritable(st, 1));
        assertThat(status(st)).isEqualTo(Blk.S_IOERR);
        st = statusByte();
        h.roundTrip(0, new Scatterlist().addReadable(header(Blk.T_IN, 0), 16).addWritable(data, 100).addWritable(st, 1));
        assertThat(status(st)).isEqualTo(Blk.S_IOERR);
    }

    @Test
    void requestsPastTheEndOrOverflowingAreErrors() throws Exception {
        start(new MemoryBackend(1 << 20, false), ALL);
        long data = h.alloc.allocate(1024, 512);
        long sectors = (1 << 20) / 512;
        for (long sector : new long[] {sectors, sectors - 1, Long.MAX_VALUE / 256, -1L, -2L}) {
            long st = statusByte();
            h.roundTrip(0, new Scatterlist().addReadable(header(Blk.T_IN, sector), 16).addWritable(data, 1024)
                    .addWritable(st, 1));
            assertThat(status(st)).as("read at sector %d", sector).isEqualTo(Blk.S_IOERR);
            st = statusByte();
            h.roundTrip(0, new Scatterlist().addReadable(header(Blk.T_OUT, sector), 16).addReadable(data, 1024)
                    .addWritable(st, 1));
            assertThat(status(st)).as("write at sector %d", sector).isEqualTo(Blk.S_IOERR);
        }
        // the last sector itself is fine
        long st = statusByte();
        h.roundTrip(0, new Scatterlist().addReadable(header(Blk.T_IN, sectors - 1), 16).addWritable(data, 512)
                .addWritable(st, 1));
        assertThat(status(st)).isEqualTo(Blk.S_OK);
    }

    @Test
    void shortHeaderIsAnErrorAndMissingStatusCompletesEmpty() throws Exception {
        start(new MemoryBackend(1 << 20, false), ALL);
        long hdr = header(Blk.T_IN, 0);
        long st = statusByte();
        int len = h.roundTrip(0, new Scatterlist().addReadable(hdr, 8).addWritable(st, 1));
        assertThat(status(st)).isEqualTo(Blk.S_IOERR);
        assertThat(len).isEqualTo(1);
        len = h.roundTrip(0, new Scatterlist().addReadable(hdr, 16));
        assertThat(len).isZero();
        assertThat(h.needsReset.get()).isNull();
    }

    @Test
    void unknownTypeAndUnnegotiatedCommandsAreUnsupported() throws Exception {
        start(new MemoryBackend(1 << 20, false), Feature.VERSION_1.mask());
        long st = statusByte();
        h.roundTrip(0, new Scatterlist().addReadable(header(99, 0), 16).addWritable(st, 1));
        assertThat(status(st)).isEqualTo(Blk.S_UNSUPP);
        long seg = h.alloc.allocate(16, 8);
        h.memory.writeU64(seg, 0);
        h.memory.writeU32(seg + 8, 8);
        st = statusByte();
        h.roundTrip(0, new Scatterlist().addReadable(header(Blk.T_WRITE_ZEROES, 0), 16).addReadable(seg, 16)
                .addWritable(st, 1));
        assertThat(status(st)).as("WRITE_ZEROES without VIRTIO_BLK_F_WRITE_ZEROES").isEqualTo(Blk.S_UNSUPP);
    }

    @Test
    @io.jvirtio.core.spec.Conformance({"blk-dev-7", "blk-dev-8"})
    void discardAndWriteZeroesFlagsAndRanges() throws Exception {
        start(new MemoryBackend(1 << 20, false), ALL);
        disk.contents().fill((byte) 9);
        long seg = h.alloc.allocate(16, 8);
        h.memory.writeU64(seg, 4);
        h.memory.writeU32(seg + 8, 2);
        h.memory.writeU32(seg + 12, Blk.DWZ_FLAG_UNMAP);
        long st = statusByte();
        h.roundTrip(0, new Scatterlist().addReadable(header(Blk.T_DISCARD, 0), 16).addReadable(seg, 16).addWritable(st, 1));
        assertThat(status(st)).as("§5.2.6.1: discard with the unmap flag").isEqualTo(Blk.S_UNSUPP);

        h.memory.writeU32(seg + 12, 0x80);
        st = statusByte();
        h.roundTrip(0, new Scatterlist().addReadable(header(Blk.T_WRITE_ZEROES, 0), 16).addReadable(seg, 16).addWritable(st, 1));
        assertThat(status(st)).as("unknown flag").isEqualTo(Blk.S_UNSUPP);

        h.memory.writeU32(seg + 12, Blk.DWZ_FLAG_UNMAP);
        st = statusByte();
        h.roundTrip(0, new Scatterlist().addReadable(header(Blk.T_WRITE_ZEROES, 0), 16).addReadable(seg, 16).addWritable(st, 1));
        assertThat(status(st)).isEqualTo(Blk.S_OK);
        assertThat(disk.contents().asSlice(4 * 512, 1024).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE)).containsOnly(0);
        assertThat(disk.contents().get(java.lang.foreign.ValueLayout.JAVA_BYTE, 6 * 512)).isEqualTo((byte) 9);

        h.memory.writeU64(seg, (1 << 20) / 512 - 1);
        h.memory.writeU32(seg + 8, 2);
        st = statusByte();
        h.roundTrip(0, new Scatterlist().addReadable(header(Blk.T_WRITE_ZEROES, 0), 16).addReadable(seg, 16).addWritable(st, 1));
        assertThat(status(st)).as("range past the end").isEqualTo(Blk.S_IOERR);
    }

    @Test
    void getIdAndFlushOnAFile(@TempDir Path dir) throws Exception {
        FileBackend file = FileBackend.create(dir.resolve("serial-0123456789abcdefXYZ.img"), 1 << 20);
        h = new DeviceHarness(new BlkDevice(file), ALL);
        long id = h.alloc.allocate(21, 8);
        int len = h.roundTrip(0, new Scatterlist().addReadable(header(Blk.T_GET_ID, 0), 16).addWritable(id, 21));
        assertThat(len).isEqualTo(21);
        byte[] b = new byte[21];
        h.memory.read(id, b, 0, 21);
        assertThat(new String(b, 0, 20)).isEqualTo("serial-0123456789abc");
        assertThat(b[20]).isEqualTo((byte) Blk.S_OK);

        long data = h.alloc.allocate(512, 512);
        h.memory.slice(data, 512).fill((byte) 0x42);
        long st = statusByte();
        h.roundTrip(0, new Scatterlist().addReadable(header(Blk.T_OUT, 1), 16).addReadable(data, 512).addWritable(st, 1));
        st = statusByte();
        h.roundTrip(0, new Scatterlist().addReadable(header(Blk.T_FLUSH, 0), 16).addWritable(st, 1));
        assertThat(status(st)).isEqualTo(Blk.S_OK);
        byte[] onDisk = Files.readAllBytes(dir.resolve("serial-0123456789abcdefXYZ.img"));
        assertThat(java.util.Arrays.copyOfRange(onDisk, 512, 1024)).containsOnly(0x42);
        file.close();
    }

    @Test
    @io.jvirtio.core.spec.Conformance("split-dev-10")
    void theUsedLengthReachesTheStatusByteAndEveryByteBeforeItIsWritten() throws Exception {
        start(new MemoryBackend(1 << 20, false), ALL);
        long buf = h.alloc.allocate(4096, 512);
        h.memory.slice(buf, 4096).fill((byte) 0x5a); // stale bytes the driver left there
        // a failed read: the status is at offset 1024 of the writable part, so len must be 1025
        long sectors = (1 << 20) / 512;
        int len = h.roundTrip(0, new Scatterlist().addReadable(header(Blk.T_IN, sectors), 16).addWritable(buf, 1025));
        assertThat(h.memory.slice(buf + 1024, 1).get(java.lang.foreign.ValueLayout.JAVA_BYTE, 0))
                .isEqualTo((byte) Blk.S_IOERR);
        assertThat(len).isEqualTo(1025);
        assertThat(h.memory.slice(buf, 1024).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE))
                .as("a failed read's data area holds no stale bytes").containsOnly(0);
        // GET_ID into a 30-byte buffer: 20 bytes of id, the status at offset 30
        len = h.roundTrip(0, new Scatterlist().addReadable(header(Blk.T_GET_ID, 0), 16).addWritable(buf, 31));
        assertThat(h.memory.slice(buf + 30, 1).get(java.lang.foreign.ValueLayout.JAVA_BYTE, 0))
                .isEqualTo((byte) Blk.S_OK);
        assertThat(len).isEqualTo(31);
        assertThat(h.memory.slice(buf + 20, 10).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE)).containsOnly(0);
        // an unsupported request with a data buffer before the status
        len = h.roundTrip(0, new Scatterlist().addReadable(header(77, 0), 16).addWritable(buf, 513));
        assertThat(len).isEqualTo(513);
    }

    @Test
    @io.jvirtio.core.spec.Conformance({"blk-dev-3", "blk-dev-9"})
    void unusedConfigurationBytesAreZeroAndWriteZeroesDoesNotClaimToUnmap() {
        BlkDevice d = new BlkDevice(new MemoryBackend(1 << 20, false), 2);
        assertThat(d.config().load(33, 1)).as("unused0").isZero();
        assertThat(d.config().load(57, 3)).as("unused1[3]").isZero();
        assertThat(d.config().load(56, 1)).as("write_zeroes_may_unmap: zeroes are written, never deallocated").isZero();
        assertThat(d.config().load(34, 2)).as("num_queues").isEqualTo(2);
    }

    @Test
    @io.jvirtio.core.spec.Conformance("blk-dev-13")
    void zonedRequestsWithoutZonedAreUnsupported() throws Exception {
        start(new MemoryBackend(1 << 20, false), ALL);
        long data = h.alloc.allocate(4096, 512);
        for (int type : new int[] {15, 16, 18, 20, 22, 24, 26}) { // ZONE_APPEND … ZONE_RESET_ALL
            long st = statusByte();
            h.roundTrip(0, new Scatterlist().addReadable(header(type, 0), 16).addWritable(data, 4096).addWritable(st, 1));
            assertThat(status(st)).as("request type %d", type).isEqualTo(Blk.S_UNSUPP);
        }
    }

    /** A real image file whose backend logs each write and flush, in order, as the device calls them. */
    static final class Journal implements SyncBlockBackend {
        final FileImage file;
        final java.util.List<String> log = java.util.Collections.synchronizedList(new java.util.ArrayList<>());

        Journal(FileImage file) { this.file = file; }
        public long capacity() { return file.capacity(); }
        public boolean readOnly() { return false; }
        public String id() { return file.id(); }
        public void read(long offset, java.lang.foreign.MemorySegment dst) throws java.io.IOException { file.read(offset, dst); }
        public void write(long offset, java.lang.foreign.MemorySegment src) throws java.io.IOException {
            file.write(offset, src);
            log.add("write");
        }
        public void flush() throws java.io.IOException {
            file.flush();
            log.add("flush");
        }
        public void writeZeroes(long offset, long length, boolean unmap) throws java.io.IOException {
            file.writeZeroes(offset, length, unmap);
            log.add("zeroes");
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("blk-dev-10")
    void withoutNegotiatedFlushEveryWriteIsStableBeforeItCompletes(@TempDir Path dir) throws Exception {
        for (boolean flushNegotiated : new boolean[] {false, true}) {
            FileBackend.create(dir.resolve("wt" + flushNegotiated + ".img"), 1 << 20).close();
            Journal j = new Journal(FileImage.open(dir.resolve("wt" + flushNegotiated + ".img"), false, CacheMode.WRITEBACK));
            long features = flushNegotiated ? ALL : ALL & ~Feature.BLK_FLUSH.mask();
            h = new DeviceHarness(new BlkDevice(BlockBackends.inline(j)), features);
            long data = h.alloc.allocate(4096, 512);
            long st = statusByte();
            h.roundTrip(0, new Scatterlist().addReadable(header(Blk.T_OUT, 8), 16).addReadable(data, 4096)
                    .addWritable(st, 1));
            assertThat(status(st)).isEqualTo(Blk.S_OK);
            long seg = h.alloc.allocate(16, 8);
            h.memory.writeU64(seg, 64);
            h.memory.writeU32(seg + 8, 8);
            h.memory.writeU32(seg + 12, 0);
            h.roundTrip(0, new Scatterlist().addReadable(header(Blk.T_WRITE_ZEROES, 0), 16).addReadable(seg, 16)
                    .addWritable(st, 1));
            assertThat(status(st)).isEqualTo(Blk.S_OK);
            // the completion was seen, so whatever the device did for durability was done before it
            assertThat(j.log).as("FLUSH negotiated: %s", flushNegotiated).containsExactlyElementsOf(flushNegotiated
                    ? java.util.List.of("write", "zeroes")
                    : java.util.List.of("write", "flush", "zeroes", "flush"));
            h.close();
            h = null;
            j.file.close();
        }
    }
}
