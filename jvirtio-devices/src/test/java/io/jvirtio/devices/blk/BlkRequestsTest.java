package io.jvirtio.devices.blk;

import io.jvirtio.core.spec.Blk;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.DeviceHarness;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The block device's request path against a back-end the test controls: a whole ring of requests in flight
 * at once, what the back-end is told (offsets, unmap, durability), what its results become (OK, IOERR,
 * UNSUPP), and the engine queue closed when the device stops.
 */
@Timeout(60)
class BlkRequestsTest {
    /** A back-end that holds every request until released, and records what it saw. */
    static final class Holding implements BlockBackend {
        /** What each request was when it started (the device reuses request objects, one per slot). */
        record Seen(int tag, BlockRequest.Op op, long offset, long length, boolean unmap, boolean durable) {
        }

        final List<Seen> seen = new ArrayList<>();
        final AtomicInteger closed = new AtomicInteger();
        volatile int result;
        volatile boolean release;
        final long capacity;

        Holding(long capacity) {
            this.capacity = capacity;
        }

        public long capacity() {
            return capacity;
        }

        public boolean readOnly() {
            return false;
        }

        public String id() {
            return "holding";
        }

        public BlockQueue open(int q, int depth, BlockCompletion completion) {
            CompletionQueue done = new CompletionQueue(depth);
            List<BlockRequest> held = new ArrayList<>();
            return new BlockQueue() {
                public void start(BlockRequest r) {
                    synchronized (seen) {
                        seen.add(new Seen(r.tag(), r.op(), r.offset(), r.length(), r.unmap(), r.durable()));
                    }
                    held.add(r);
                }

                public void submit() {
                    if (release) {
                        held.forEach(r -> done.post(r, result));
                        held.clear();
                    }
                }

                public boolean ready() {
                    submit();
                    return done.ready();
                }

                public int reap() {
                    return done.reap(completion);
                }

                public void await() {
                    if (!ready()) {
                        java.util.concurrent.locks.LockSupport.parkNanos(1_000_000);
                    }
                }

                public void wakeup() {
                    done.wakeup();
                }

                public void close() {
                    closed.incrementAndGet();
                }
            };
        }
    }

    static final long FEATURES = Feature.maskOf(Feature.VERSION_1, Feature.INDIRECT_DESC, Feature.BLK_FLUSH,
            Feature.BLK_DISCARD, Feature.BLK_WRITE_ZEROES);

    @Test
    void aWholeRingOfRequestsIsInFlightAtOnceAndEachCompletesOnce() throws Exception {
        Holding disk = new Holding(1 << 20);
        BlkDevice device = new BlkDevice(disk);
        try (DeviceHarness h = new DeviceHarness(device, FEATURES, 4)) {
            DriverQueue<Object> q = h.queues.get(0);
            int n = BlkDevice.QUEUE_SIZE;
            long[] status = new long[n];
            for (int i = 0; i < n; i++) {
                long hdr = h.alloc.allocate(16, 8);
                h.memory.writeU32(hdr, Blk.T_IN);
                h.memory.writeU64(hdr + 8, i);
                status[i] = h.alloc.allocate(1, 1);
                assertThat(q.addBuf(new Scatterlist().addReadable(hdr, 16).addWritable(h.alloc.allocate(512, 512), 512)
                        .addWritable(status[i], 1), i)).as("request %d fits the ring", i).isTrue();
            }
            q.kick();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (disk.seen.size() < n && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            Set<Integer> tags = new HashSet<>();
            Set<Long> offsets = new HashSet<>();
            synchronized (disk.seen) {
                for (Holding.Seen r : disk.seen) {
                    tags.add(r.tag());
                    offsets.add(r.offset());
                }
            }
            assertThat(tags).as("every slot of the ring in flight, each with its own tag").hasSize(n);
            assertThat(offsets).hasSize(n);
            disk.release = true;
            device.queueNotify(0);
            Set<Object> back = new HashSet<>();
            deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (back.size() < n && System.nanoTime() < deadline) {
                Object t = q.getBuf();
                if (t == null) {
                    Thread.sleep(2);
                    continue;
                }
                assertThat(back.add(t)).as("request %s completed once", t).isTrue();
                assertThat(q.lastLength()).isEqualTo(513);
            }
            assertThat(back).hasSize(n);
            for (long s : status) {
                assertThat(h.memory.slice(s, 1).get(java.lang.foreign.ValueLayout.JAVA_BYTE, 0)).isEqualTo((byte) Blk.S_OK);
            }
        }
        assertThat(disk.closed.get()).as("the engine queue closed with the device").isEqualTo(1);
    }

    static int request(DeviceHarness h, int type, long sector, long segment, int flags) throws Exception {
        return h.blkRequest(type, sector, segment, segment == 0 ? 0 : 16);
    }

    static long segment(DeviceHarness h, long sector, long sectors, int flags) throws Exception {
        return h.dwzSegment(sector, sectors, flags);
    }

    @Test
    void resultsBecomeStatusesAndTheBackEndSeesUnmapAndDurability() throws Exception {
        Holding disk = new Holding(1 << 20);
        disk.release = true;
        try (DeviceHarness h = new DeviceHarness(new BlkDevice(disk), FEATURES)) {
            assertThat(request(h, Blk.T_WRITE_ZEROES, 0, segment(h, 8, 8, Blk.DWZ_FLAG_UNMAP), 0)).isEqualTo(Blk.S_OK);
            assertThat(request(h, Blk.T_WRITE_ZEROES, 0, segment(h, 16, 8, 0), 0)).isEqualTo(Blk.S_OK);
            assertThat(request(h, Blk.T_DISCARD, 0, segment(h, 24, 8, 0), 0)).isEqualTo(Blk.S_OK);
            synchronized (disk.seen) {
                assertThat(disk.seen.get(0).unmap()).as("WRITE_ZEROES with the unmap flag").isTrue();
                assertThat(disk.seen.get(1).unmap()).isFalse();
                assertThat(disk.seen.get(1).offset()).isEqualTo(16 * 512);
                assertThat(disk.seen.get(2).op()).isEqualTo(BlockRequest.Op.DISCARD);
                assertThat(disk.seen.get(0).durable()).as("the write cache is on").isFalse();
            }
            disk.result = -95; // EOPNOTSUPP
            assertThat(request(h, Blk.T_FLUSH, 0, 0, 0)).isEqualTo(Blk.S_UNSUPP);
            disk.result = -5;
            assertThat(request(h, Blk.T_FLUSH, 0, 0, 0)).isEqualTo(Blk.S_IOERR);
        }
    }

    @Test
    void queueStatisticsCountKicksInterruptsAndLatency() throws Exception {
        MemoryBackend disk = new MemoryBackend(1 << 20, false);
        BlkDevice device = new BlkDevice(disk);
        try (DeviceHarness h = new DeviceHarness(device, FEATURES)) {
            for (int i = 0; i < 5; i++) {
                assertThat(request(h, Blk.T_FLUSH, 0, 0, 0)).isEqualTo(Blk.S_OK);
            }
            // the driver sees a used element as soon as it is published, a moment before the interrupt is counted
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while (device.queueStats().getFirst().interrupts() < 5 && System.nanoTime() < deadline) {
                Thread.sleep(1);
            }
            io.jvirtio.devices.QueueThread.Stats q = device.queueStats().getFirst();
            assertThat(q.index()).isZero();
            // the driver kicks only while the device asks for kicks, so a request may ride on an earlier one
            assertThat(q.kicks()).as("kicks").isBetween(1L, 5L);
            assertThat(q.interrupts()).as("no EVENT_IDX, interrupts on: each answered request interrupts")
                    .isGreaterThanOrEqualTo(5);
            assertThat(q.inFlight()).isZero();
            assertThat(device.latency.count()).isEqualTo(5);
            assertThat(device.latency.percentile(50)).isPositive();
        }
    }

    @Test
    void aWriteWhoseHeaderSharesItsDescriptorWithTheDataWritesTheData() throws Exception {
        MemoryBackend disk = new MemoryBackend(1 << 20, false);
        try (DeviceHarness h = new DeviceHarness(new BlkDevice(disk), FEATURES)) {
            long buf = h.alloc.allocate(16 + 1024, 8);
            h.memory.writeU32(buf, Blk.T_OUT);
            h.memory.writeU64(buf + 8, 4);
            byte[] data = new byte[1024];
            for (int i = 0; i < data.length; i++) {
                data[i] = (byte) (i * 3 + 1);
            }
            h.memory.write(buf + 16, data, 0, data.length);
            long st = h.alloc.allocate(1, 1);
            h.roundTrip(0, new Scatterlist().addReadable(buf, 16 + 1024).addWritable(st, 1));
            assertThat(disk.contents().asSlice(4 * 512, 1024).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE))
                    .isEqualTo(data);
        }
    }

    @Test
    void writeZeroesOfExactlyTheLargestRangeIsTakenAndOneSectorMoreRefused() throws Exception {
        NullBackend disk = new NullBackend(8L << 30);
        try (DeviceHarness h = new DeviceHarness(new BlkDevice(disk), FEATURES)) {
            assertThat(request(h, Blk.T_WRITE_ZEROES, 0, segment(h, 0, BlkDevice.MAX_DWZ_SECTORS, 0), 0))
                    .isEqualTo(Blk.S_OK);
            assertThat(request(h, Blk.T_WRITE_ZEROES, 0, segment(h, 0, BlkDevice.MAX_DWZ_SECTORS + 1L, 0), 0))
                    .isEqualTo(Blk.S_IOERR);
        }
    }

    @Test
    void aSlowRequestIsRecordedForFlightRecorderAndAFastOneIsNot(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir)
            throws Exception {
        java.nio.file.Path jfr = dir.resolve("blk.jfr");
        Holding disk = new Holding(1 << 20);
        try (jdk.jfr.Recording recording = new jdk.jfr.Recording()) {
            recording.enable("io.jvirtio.blk.SlowRequest");
            recording.start();
            try (DeviceHarness h = new DeviceHarness(new BlkDevice(disk), FEATURES)) {
                disk.release = true;
                assertThat(request(h, Blk.T_FLUSH, 0, 0, 0)).as("fast").isEqualTo(Blk.S_OK);
                disk.release = false;
                Thread releaser = Thread.ofPlatform().start(() -> {
                    try {
                        Thread.sleep(SlowRequestEvent.THRESHOLD_NANOS / 1_000_000 + 40);
                    } catch (InterruptedException e) {
                        return;
                    }
                    disk.release = true;
                });
                assertThat(request(h, Blk.T_WRITE_ZEROES, 0, segment(h, 40, 8, 0), 0)).as("slow").isEqualTo(Blk.S_OK);
                releaser.join();
            }
            recording.stop();
            recording.dump(jfr);
        }
        List<jdk.jfr.consumer.RecordedEvent> events = jdk.jfr.consumer.RecordingFile.readAllEvents(jfr);
        assertThat(events).hasSize(1);
        jdk.jfr.consumer.RecordedEvent e = events.getFirst();
        assertThat(e.getString("op")).isEqualTo("WRITE_ZEROES");
        assertThat(e.getLong("offset")).isEqualTo(40 * 512);
        assertThat(e.getLong("length")).isEqualTo(8 * 512);
        assertThat(e.getLong("took")).isGreaterThanOrEqualTo(SlowRequestEvent.THRESHOLD_NANOS);
        assertThat(e.getInt("result")).isZero();
    }
}
