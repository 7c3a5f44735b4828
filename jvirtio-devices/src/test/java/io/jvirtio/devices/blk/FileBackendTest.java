package io.jvirtio.devices.blk;

import io.jvirtio.core.spec.Blk;
import io.jvirtio.core.os.IoUring;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The file back-end's engines (io_uring and threads) against real files: many requests in flight land at
 * their offsets in every cache mode, vectored and unaligned buffers, short reads at the end of a file,
 * errors as errnos, a submission ring smaller than the depth, discard and write-zeroes (fallocate, and the
 * fallback where the file system refuses it).
 */
@Timeout(60)
class FileBackendTest {
    static final int MiB = 1 << 20;

    @TempDir
    Path dir;

    static Stream<Arguments> enginesAndModes() {
        List<Arguments> a = new ArrayList<>();
        for (AioEngine e : engines()) {
            for (CacheMode c : CacheMode.values()) {
                a.add(Arguments.of(e, c));
            }
        }
        return a.stream();
    }

    static List<AioEngine> engines() {
        return IoUring.unavailableReason() == null ? List.of(AioEngine.IO_URING, AioEngine.THREADS)
                : List.of(AioEngine.THREADS);
    }

    static Path image(Path dir, String name, long bytes, long seed) throws IOException {
        Path p = dir.resolve(name);
        byte[] b = new byte[(int) bytes];
        new Random(seed).nextBytes(b);
        Files.write(p, b);
        return p;
    }

    static byte[] fileBytes(Path p) throws IOException {
        return Files.readAllBytes(p);
    }

    /**
     * Linux on a packed ring of 128 sends requests of up to seg_max (254) data buffers in one indirect table:
     * each engine takes a request with more buffers than its queue is deep, whole — the io_uring engine's
     * vectors once overran into the next request's (a guest's 1 MiB write landed half with other data).
     */
    @ParameterizedTest
    @MethodSource("engines")
    void aRequestWithMoreBuffersThanTheQueueIsDeepLandsWhole(AioEngine engine) throws Exception {
        Path img = image(dir, "disk.img", MiB, 3);
        int depth = 8;
        int buffers = BlkDevice.SEG_MAX;
        byte[] expect = fileBytes(img);
        try (Arena arena = Arena.ofShared();
             FileBackend backend = new FileBackend(img, false, CacheMode.WRITEBACK, engine, 2, 0);
             BlockQueueDriver q = new BlockQueueDriver(backend, depth)) {
            MemorySegment mem = arena.allocate((long) depth * buffers * 512, 4096);
            Random rnd = new Random(4);
            BlockRequest[] reqs = new BlockRequest[depth];
            for (int t = 0; t < depth; t++) { // every tag full, so a vector overrun would show in a neighbour
                long off = (long) t * buffers * 512;
                reqs[t] = new BlockRequest(t).set(BlockRequest.Op.WRITE, off, (long) buffers * 512);
                for (int b = 0; b < buffers; b++) {
                    MemorySegment buf = mem.asSlice(((long) t * buffers + b) * 512, 512);
                    byte[] data = new byte[512];
                    rnd.nextBytes(data);
                    MemorySegment.copy(data, 0, buf, ValueLayout.JAVA_BYTE, 0, 512);
                    System.arraycopy(data, 0, expect, (int) (off + b * 512L), 512);
                    reqs[t].addBuffer(buf);
                }
                q.start(reqs[t]);
            }
            q.finish();
            for (int t = 0; t < depth; t++) {
                assertThat(q.results[t]).as("write %d", t).isZero();
            }
            BlockRequest flush = new BlockRequest(0).set(BlockRequest.Op.FLUSH, 0, 0);
            assertThat(q.run(flush)).isZero();
        }
        assertThat(fileBytes(img)).as("the file holds every buffer of every write").isEqualTo(expect);
    }

    @ParameterizedTest(name = "{0}, cache {1}")
    @MethodSource("enginesAndModes")
    void manyRequestsInFlightLandAtTheirOffsets(AioEngine engine, CacheMode cache) throws Exception {
        Path img = image(dir, "disk.img", 8 * MiB, 1);
        byte[] expect = fileBytes(img);
        int depth = 128;
        try (Arena arena = Arena.ofShared();
             FileBackend backend = new FileBackend(img, false, cache, engine, 8, 0);
             BlockQueueDriver q = new BlockQueueDriver(backend, depth)) {
            assertThat(backend.engine()).isEqualTo(engine);
            assertThat(backend.capacity()).isEqualTo(8L * MiB);
            MemorySegment mem = arena.allocate((long) depth * 8192, 4096);
            Random rnd = new Random(2);
            List<Integer> blocks = new ArrayList<>();
            for (int i = 0; i < 2048; i++) {
                blocks.add(i);
            }
            Collections.shuffle(blocks, rnd);
            // writes: one 4 KiB buffer, or three buffers (512 + 2048 + 1536) for a vectored write
            BlockRequest[] reqs = new BlockRequest[depth];
            for (int t = 0; t < depth; t++) {
                reqs[t] = new BlockRequest(t);
                long off = (long) blocks.get(t) * 4096;
                MemorySegment buf = mem.asSlice((long) t * 8192, 4096);
                byte[] data = new byte[4096];
                rnd.nextBytes(data);
                MemorySegment.copy(data, 0, buf, ValueLayout.JAVA_BYTE, 0, 4096);
                System.arraycopy(data, 0, expect, (int) off, 4096);
                reqs[t].set(BlockRequest.Op.WRITE, off, 4096);
                if (t % 3 == 0) {
                    reqs[t].addBuffer(buf, 0, 512).addBuffer(buf, 512, 2048).addBuffer(buf, 2560, 1536);
                } else {
                    reqs[t].addBuffer(buf);
                }
                q.start(reqs[t]);
            }
            q.finish();
            for (int t = 0; t < depth; t++) {
                assertThat(q.results[t]).as("write %d", t).isZero();
                assertThat(q.completions[t]).as("write %d completions", t).isEqualTo(1);
            }
            // reads of other places and of what was just written, into fresh buffers
            mem.fill((byte) 0x5a);
            for (int t = 0; t < depth; t++) {
                long off = (long) blocks.get((t * 7) % 256) * 4096;
                MemorySegment buf = mem.asSlice((long) t * 8192, 8192);
                reqs[t].set(BlockRequest.Op.READ, off, 8192);
                if (t % 2 == 0) {
                    reqs[t].addBuffer(buf, 0, 4096).addBuffer(buf, 4096, 4096);
                } else {
                    reqs[t].addBuffer(buf);
                }
                if (off + 8192 > 8L * MiB) {
                    reqs[t].set(BlockRequest.Op.READ, off - 4096, 8192).addBuffer(buf);
                }
                q.start(reqs[t]);
            }
            q.finish();
            for (int t = 0; t < depth; t++) {
                assertThat(q.results[t]).as("read %d", t).isZero();
                byte[] got = mem.asSlice((long) t * 8192, 8192).toArray(ValueLayout.JAVA_BYTE);
                byte[] want = java.util.Arrays.copyOfRange(expect, (int) reqs[t].offset(), (int) reqs[t].offset() + 8192);
                assertThat(got).as("read %d at %d", t, reqs[t].offset()).isEqualTo(want);
            }
            BlockRequest flush = new BlockRequest(0).set(BlockRequest.Op.FLUSH, 0, 0);
            assertThat(q.run(flush)).isZero();
        }
        assertThat(fileBytes(img)).as("the file holds every write").isEqualTo(expect);
    }

    @ParameterizedTest
    @MethodSource("engines")
    void unalignedBuffersUnderODirectAreBouncedNotRefused(AioEngine engine) throws Exception {
        Path img = image(dir, "odd.img", MiB, 3);
        byte[] expect = fileBytes(img);
        try (Arena arena = Arena.ofShared();
             FileBackend backend = new FileBackend(img, false, CacheMode.NONE, engine, 4, 0);
             BlockQueueDriver q = new BlockQueueDriver(backend, 4)) {
            MemorySegment mem = arena.allocate(3 * 4096, 4096);
            MemorySegment odd = mem.asSlice(8, 4096); // 8-byte aligned: fine for a guest, not for O_DIRECT
            byte[] data = new byte[4096];
            new Random(4).nextBytes(data);
            MemorySegment.copy(data, 0, odd, ValueLayout.JAVA_BYTE, 0, data.length);
            System.arraycopy(data, 0, expect, 512 * 3, 4096);
            BlockRequest w = new BlockRequest(0).set(BlockRequest.Op.WRITE, 512 * 3, 4096).addBuffer(odd);
            assertThat(q.run(w)).isZero();
            MemorySegment back = mem.asSlice(4096 + 24, 4096);
            BlockRequest r = new BlockRequest(1).set(BlockRequest.Op.READ, 512 * 3, 4096).addBuffer(back);
            assertThat(q.run(r)).isZero();
            assertThat(back.toArray(ValueLayout.JAVA_BYTE)).isEqualTo(data);
        }
        assertThat(fileBytes(img)).isEqualTo(expect);
    }

    @ParameterizedTest
    @MethodSource("engines")
    void aFileShorterThanTheDiskReadsZeroesPastItsEnd(AioEngine engine) throws Exception {
        Path img = image(dir, "short.img", MiB, 5);
        byte[] expect = fileBytes(img);
        try (Arena arena = Arena.ofShared();
             FileBackend backend = new FileBackend(img, false, CacheMode.WRITEBACK, engine, 2, 0);
             BlockQueueDriver q = new BlockQueueDriver(backend, 2)) {
            // truncated under the open back-end: the last 8 KiB straddle the new end
            try (FileChannel c = FileChannel.open(img, StandardOpenOption.WRITE)) {
                c.truncate(MiB - 4096);
            }
            MemorySegment buf = arena.allocate(8192, 4096);
            buf.fill((byte) 0x77);
            BlockRequest r = new BlockRequest(0).set(BlockRequest.Op.READ, MiB - 8192, 8192).addBuffer(buf);
            assertThat(q.run(r)).isZero();
            assertThat(buf.asSlice(0, 4096).toArray(ValueLayout.JAVA_BYTE))
                    .isEqualTo(java.util.Arrays.copyOfRange(expect, MiB - 8192, MiB - 4096));
            assertThat(buf.asSlice(4096, 4096).toArray(ValueLayout.JAVA_BYTE)).as("past the end: a hole").containsOnly(0);
        }
    }

    @ParameterizedTest
    @MethodSource("engines")
    void failuresCompleteWithTheErrno(AioEngine engine) throws Exception {
        Path img = image(dir, "ro.img", MiB, 6);
        try (Arena arena = Arena.ofShared();
             FileBackend backend = new FileBackend(img, true, CacheMode.WRITEBACK, engine, 2, 0);
             BlockQueueDriver q = new BlockQueueDriver(backend, 2)) {
            MemorySegment buf = arena.allocate(4096, 4096);
            // the device never sends a write to a read-only disk; the engine still reports, never throws
            BlockRequest w = new BlockRequest(0).set(BlockRequest.Op.WRITE, 0, 4096).addBuffer(buf);
            assertThat(q.run(w)).as("write on a read-only descriptor").isEqualTo(-9); // EBADF
            BlockRequest r = new BlockRequest(1).set(BlockRequest.Op.READ, 0, 4096).addBuffer(buf);
            assertThat(q.run(r)).as("the queue goes on").isZero();
        }
    }

    @Test
    void aSubmissionRingSmallerThanTheDepthStillRunsEveryRequest() throws Exception {
        assumeTrue(IoUring.unavailableReason() == null, "io_uring is not usable here: " + IoUring.unavailableReason());
        Path img = image(dir, "small.img", MiB, 7);
        byte[] expect = fileBytes(img);
        int depth = 64;
        try (Arena arena = Arena.ofShared();
             FileBackend backend = new FileBackend(img, false, CacheMode.WRITEBACK, AioEngine.IO_URING, 1, 4);
             BlockQueueDriver q = new BlockQueueDriver(backend, depth)) {
            MemorySegment mem = arena.allocate((long) depth * 4096, 4096);
            for (int t = 0; t < depth; t++) {
                q.start(new BlockRequest(t).set(BlockRequest.Op.READ, (long) t * 4096, 4096)
                        .addBuffer(mem.asSlice((long) t * 4096, 4096)));
            }
            q.finish();
            for (int t = 0; t < depth; t++) {
                assertThat(q.results[t]).isZero();
                assertThat(q.completions[t]).isEqualTo(1);
            }
            assertThat(mem.toArray(ValueLayout.JAVA_BYTE)).isEqualTo(java.util.Arrays.copyOf(expect, depth * 4096));
        }
    }

    static long allocatedBlocks(Path p) throws Exception {
        Process pr = new ProcessBuilder("stat", "-c", "%b", p.toString()).start();
        String out = new String(pr.getInputStream().readAllBytes()).trim();
        assertThat(pr.waitFor()).isZero();
        return Long.parseLong(out);
    }

    @ParameterizedTest
    @MethodSource("engines")
    void writeZeroesAndDiscardUseFallocateOnFiles(AioEngine engine) throws Exception {
        Path img = image(dir, "dz.img", 4 * MiB, 8);
        try (Arena arena = Arena.ofShared();
             FileBackend backend = new FileBackend(img, false, CacheMode.WRITEBACK, engine, 2, 0);
             BlockQueueDriver q = new BlockQueueDriver(backend, 2)) {
            long before = allocatedBlocks(img);
            BlockRequest z = new BlockRequest(0).set(BlockRequest.Op.WRITE_ZEROES, MiB, MiB);
            assertThat(q.run(z)).isZero();
            assertThat(allocatedBlocks(img)).as("zeroed without unmap: still allocated").isEqualTo(before);
            BlockRequest zu = new BlockRequest(0).set(BlockRequest.Op.WRITE_ZEROES, 2L * MiB, MiB).unmap(true);
            assertThat(q.run(zu)).isZero();
            long afterUnmap = allocatedBlocks(img);
            assertThat(afterUnmap).as("zeroed with unmap: deallocated").isLessThanOrEqualTo(before - 2048 + 16);
            BlockRequest d = new BlockRequest(1).set(BlockRequest.Op.DISCARD, 3L * MiB, MiB);
            assertThat(q.run(d)).isZero();
            assertThat(allocatedBlocks(img)).as("discarded: deallocated").isLessThanOrEqualTo(afterUnmap - 2048 + 16);
        }
        byte[] b = fileBytes(img);
        for (int i = MiB; i < 3 * MiB; i++) {
            if (b[i] != 0) {
                throw new AssertionError("byte " + i + " is " + b[i] + " after WRITE_ZEROES");
            }
        }
        assertThat(b.length).as("the size never changes").isEqualTo(4 * MiB);
    }

    @ParameterizedTest
    @MethodSource("engines")
    void writeZeroesFallsBackToWritingWhereTheFileSystemCannotZeroRanges(AioEngine engine) throws Exception {
        Path shm = Path.of("/dev/shm");
        assumeTrue(Files.isDirectory(shm), "no /dev/shm (tmpfs) here");
        Path img = Files.createTempFile(shm, "jvirtio-zero-", ".img");
        try {
            byte[] data = new byte[2 * MiB];
            new Random(9).nextBytes(data);
            Files.write(img, data);
            try (FileBackend backend = new FileBackend(img, false, CacheMode.WRITEBACK, engine, 2, 0);
                 BlockQueueDriver q = new BlockQueueDriver(backend, 2)) {
                // tmpfs has no FALLOC_FL_ZERO_RANGE: the zeroes are written
                assertThat(q.run(new BlockRequest(0).set(BlockRequest.Op.WRITE_ZEROES, 4096, 8192))).isZero();
            }
            byte[] b = fileBytes(img);
            for (int i = 4096; i < 4096 + 8192; i++) {
                assertThat(b[i]).isZero();
            }
            assertThat(b[4095]).isEqualTo(data[4095]);
            assertThat(b[4096 + 8192]).isEqualTo(data[4096 + 8192]);
        } finally {
            Files.deleteIfExists(img);
        }
    }

    @ParameterizedTest
    @MethodSource("engines")
    void eachRequestQueueOfADeviceHasItsOwnEngineQueue(AioEngine engine) throws Exception {
        Path img = image(dir, "mq.img", MiB, 10);
        byte[] expect = fileBytes(img);
        try (FileBackend file = new FileBackend(img, false, CacheMode.NONE, engine, 2, 0);
             io.jvirtio.devices.DeviceHarness h = new io.jvirtio.devices.DeviceHarness(new BlkDevice(file, 2),
                     io.jvirtio.core.spec.Feature.maskOf(io.jvirtio.core.spec.Feature.VERSION_1,
                             io.jvirtio.core.spec.Feature.BLK_MQ))) {
            for (int q = 0; q < 2; q++) {
                long hdr = h.alloc.allocate(16, 8);
                h.memory.writeU32(hdr, Blk.T_IN);
                h.memory.writeU64(hdr + 8, 8L * (q + 1));
                long data = h.alloc.allocate(4096, 4096);
                long st = h.alloc.allocate(1, 1);
                int len = h.roundTrip(q, new io.jvirtio.core.queue.Scatterlist().addReadable(hdr, 16)
                        .addWritable(data, 4096).addWritable(st, 1));
                assertThat(len).isEqualTo(4097);
                byte[] got = new byte[4096];
                h.memory.read(data, got, 0, 4096);
                assertThat(got).as("queue %d", q)
                        .isEqualTo(java.util.Arrays.copyOfRange(expect, 4096 * (q + 1), 4096 * (q + 2)));
            }
            long rings = Thread.getAllStackTraces().keySet().stream()
                    .filter(t -> t.getName().startsWith("jvirtio-block-q")).count();
            assertThat(rings).as("a thread per request queue").isEqualTo(2);
        }
    }

    @ParameterizedTest
    @MethodSource("engines")
    void aPollingQueueServesRequestsLikeASleepingOne(AioEngine engine) throws Exception {
        Path img = image(dir, "poll.img", MiB, 11);
        byte[] expect = fileBytes(img);
        try (FileBackend file = new FileBackend(img, false, CacheMode.WRITEBACK, engine, 2, 0);
             io.jvirtio.devices.DeviceHarness h = new io.jvirtio.devices.DeviceHarness(
                     new BlkDevice(file, 1, BlkDevice.DEFAULT_SIZE_MAX, 200_000),
                     io.jvirtio.core.spec.Feature.maskOf(io.jvirtio.core.spec.Feature.VERSION_1,
                             io.jvirtio.core.spec.Feature.EVENT_IDX))) {
            long hdr = h.alloc.allocate(16, 8);
            long data = h.alloc.allocate(4096, 4096);
            long st = h.alloc.allocate(1, 1);
            h.memory.writeU32(hdr, Blk.T_IN);
            for (int i = 0; i < 200; i++) {
                h.memory.writeU64(hdr + 8, 8L * (i % 64));
                assertThat(h.roundTrip(0, new io.jvirtio.core.queue.Scatterlist().addReadable(hdr, 16)
                        .addWritable(data, 4096).addWritable(st, 1))).isEqualTo(4097);
                byte[] got = new byte[4096];
                h.memory.read(data, got, 0, 4096);
                int at = 4096 * (i % 64);
                assertThat(got).isEqualTo(java.util.Arrays.copyOfRange(expect, at, at + 4096));
            }
        }
    }

    @Test
    void enginesAndCacheModesParseTheirNamesAndNameTheBadValue() {
        assertThat(AioEngine.parse("io_uring")).isEqualTo(AioEngine.IO_URING);
        assertThat(CacheMode.parse("none")).isEqualTo(CacheMode.NONE);
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> CacheMode.parse("unsafe"))
                .hasMessageContaining("'unsafe'");
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> AioEngine.parse("native"))
                .hasMessageContaining("'native'");
    }
}
