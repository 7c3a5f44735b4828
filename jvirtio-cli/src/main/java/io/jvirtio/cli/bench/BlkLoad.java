package io.jvirtio.cli.bench;

import io.jvirtio.drivers.blk.VirtioBlock;
import org.HdrHistogram.Histogram;
import org.HdrHistogram.Recorder;

import java.lang.foreign.MemorySegment;
import java.util.Locale;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Consumer;

/**
 * A closed-loop load on a {@link VirtioBlock}: {@code iodepth} requests always in flight, each slot issuing
 * its next request from the completion of the previous one (so no thread hand-off paces the load), spread
 * over the queues round-robin by slot. Latency from submission to completion goes into an HdrHistogram.
 */
public final class BlkLoad {
    /** The access pattern, fio's {@code --rw}. */
    public enum Pattern {
        RANDREAD, RANDWRITE, READ, WRITE, RANDRW;

        public static Pattern parse(String s) {
            try {
                return valueOf(s.toUpperCase(Locale.ROOT));
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("--rw '" + s + "' is not randread, randwrite, read, write or randrw");
            }
        }

        boolean random() {
            return this == RANDREAD || this == RANDWRITE || this == RANDRW;
        }

        String label() {
            return name().toLowerCase(Locale.ROOT);
        }
    }

    /** What a run measured. */
    public record Result(Pattern pattern, int bs, int iodepth, int queues, long ops, long errors, double seconds,
                         double p50us, double p99us, double p999us, double maxUs, String firstError) {
        public double iops() {
            return ops / seconds;
        }

        public double mibPerSecond() {
            return ops * (double) bs / seconds / (1 << 20);
        }

        /** {@code <rw> bs=<bs> iodepth=<n>: <N> IOPS, <MiB/s>, p50 <µs>, p99 <µs>, p99.9 <µs>}. */
        public String line() {
            return String.format(Locale.ROOT, "%s bs=%d iodepth=%d: %,.0f IOPS, %.1f MiB/s, p50 %.1f µs, p99 %.1f µs, p99.9 %.1f µs",
                    pattern.label(), bs, iodepth, iops(), mibPerSecond(), p50us, p99us, p999us);
        }

        public String json() {
            return String.format(Locale.ROOT, "{\"rw\":\"%s\",\"bs\":%d,\"iodepth\":%d,\"queues\":%d,\"ops\":%d,"
                            + "\"errors\":%d,\"seconds\":%.3f,\"iops\":%.1f,\"mib_per_s\":%.2f,\"p50_us\":%.1f,"
                            + "\"p99_us\":%.1f,\"p99_9_us\":%.1f,\"max_us\":%.1f}",
                    pattern.label(), bs, iodepth, queues, ops, errors, seconds, iops(), mibPerSecond(), p50us, p99us,
                    p999us, maxUs);
        }
    }

    private final VirtioBlock disk;
    private final Pattern pattern;
    private final int bs;
    private final int iodepth;
    private final int queues;
    private final long blocks;
    private final MemorySegment[] buffers;
    private final Recorder recorder = new Recorder(3);
    private final AtomicLong sequential = new AtomicLong();
    private final AtomicLong errors = new AtomicLong();
    private final AtomicReference<String> firstError = new AtomicReference<>();
    private volatile boolean running;
    private CountDownLatch drained;

    /**
     * @param size bytes of the disk to use from its start (0: all of it)
     */
    public BlkLoad(VirtioBlock disk, Pattern pattern, int bs, int iodepth, int queues, long size) {
        if (bs <= 0 || bs % 512 != 0) {
            throw new IllegalArgumentException("--bs " + bs + " is not a positive multiple of 512");
        }
        long capacity = disk.capacitySectors() * 512;
        long use = size == 0 ? capacity : size;
        if (use > capacity) {
            throw new IllegalArgumentException("--size " + size + " is larger than the disk (" + capacity + " bytes)");
        }
        if (use < bs) {
            throw new IllegalArgumentException("--size " + use + " is smaller than one block of " + bs);
        }
        if (pattern != Pattern.RANDREAD && pattern != Pattern.READ && disk.readOnly()) {
            throw new IllegalArgumentException("--rw " + pattern.label() + ": the disk is read-only");
        }
        this.disk = disk;
        this.pattern = pattern;
        this.bs = bs;
        this.iodepth = iodepth;
        this.queues = Math.max(1, Math.min(queues, disk.queueCount()));
        this.blocks = use / bs;
        this.buffers = new MemorySegment[iodepth];
        for (int i = 0; i < iodepth; i++) {
            buffers[i] = disk.allocateBuffer(bs);
            buffers[i].fill((byte) (0x41 + i));
        }
    }

    /**
     * Runs for {@code seconds}, calling {@code progress} about once a second with the interval just ended,
     * then waits for the requests in flight and returns the totals.
     */
    public Result run(double seconds, Consumer<Result> progress) throws InterruptedException {
        running = true;
        drained = new CountDownLatch(iodepth);
        // done() only records and resubmits: on the interrupt thread, a thread wake-up less per batch (measured:
        // the disk held about 10 of 32 requests with the hand-off, every back-end about 15 % slower)
        disk.completeOnInterruptThread(true);
        Histogram total = new Histogram(3);
        Histogram interval = null;
        long start = System.nanoTime();
        long end = start + (long) (seconds * 1e9);
        for (int slot = 0; slot < iodepth; slot++) {
            issue(slot);
        }
        long last = start;
        while (true) {
            long now = System.nanoTime();
            if (now >= end) {
                break;
            }
            TimeUnit.NANOSECONDS.sleep(Math.min(1_000_000_000L, end - now));
            interval = recorder.getIntervalHistogram(interval);
            total.add(interval);
            long t = System.nanoTime();
            progress.accept(summarize(interval, (t - last) / 1e9));
            last = t;
        }
        running = false;
        long elapsed = System.nanoTime() - start;
        if (!drained.await(30, TimeUnit.SECONDS)) {
            throw new IllegalStateException(drained.getCount() + " requests did not complete within 30 s of the end");
        }
        interval = recorder.getIntervalHistogram(interval);
        total.add(interval);
        return summarize(total, elapsed / 1e9);
    }

    private Result summarize(Histogram h, double secs) {
        return new Result(pattern, bs, iodepth, queues, h.getTotalCount(), errors.get(), secs,
                h.getValueAtPercentile(50) / 1e3, h.getValueAtPercentile(99) / 1e3, h.getValueAtPercentile(99.9) / 1e3,
                h.getMaxValue() / 1e3, firstError.get());
    }

    private long nextBlock() {
        return pattern.random() ? ThreadLocalRandom.current().nextLong(blocks) : sequential.getAndIncrement() % blocks;
    }

    private boolean nextIsRead() {
        return switch (pattern) {
            case RANDREAD, READ -> true;
            case RANDWRITE, WRITE -> false;
            case RANDRW -> ThreadLocalRandom.current().nextBoolean();
        };
    }

    private void issue(int slot) {
        long sector = nextBlock() * (bs / 512);
        int queue = slot % queues;
        long t0 = System.nanoTime();
        CompletableFuture<Void> f = nextIsRead() ? disk.read(queue, sector, buffers[slot])
                : disk.write(queue, sector, buffers[slot]);
        f.whenComplete((v, e) -> done(slot, t0, e));
    }

    private void done(int slot, long t0, Throwable e) {
        if (e == null) {
            recorder.recordValue(System.nanoTime() - t0);
        } else {
            errors.incrementAndGet();
            firstError.compareAndSet(null, e.toString());
        }
        if (running && e == null) {
            issue(slot);
        } else {
            drained.countDown();
        }
    }
}
