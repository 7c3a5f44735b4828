package io.jvirtio.devices.blk;

import io.jvirtio.core.spec.Blk;
import io.jvirtio.core.device.ConfigSpace;
import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.AsyncWorker;
import io.jvirtio.devices.QueueDevice;
import io.jvirtio.devices.QueueThread;
import java.io.IOException;



/**
 * The block device (VIRTIO 1.2 §5.2) over a {@link BlockBackend}. Requests IN, OUT, FLUSH, GET_ID,
 * DISCARD and WRITE_ZEROES; features SIZE_MAX, SEG_MAX, BLK_SIZE, FLUSH, TOPOLOGY, CONFIG_WCE, RO (for a
 * read-only backend), MQ (more than one queue), DISCARD and WRITE_ZEROES. Each queue keeps up to its size
 * of requests in flight in the back-end ({@link BlkRequests} on an {@link AsyncWorker}). Every request is
 * checked before the backend is touched: header size, data length a multiple of 512, sector range inside
 * the disk (overflow-safe), and the status byte present — a bad request completes with IOERR or UNSUPP
 * and never reads or writes outside the disk.
 */
public final class BlkDevice extends QueueDevice {
    /**
     * The {@code seg_max} jvirtio's devices offer: data buffers per request. A request's chain then has at
     * most {@link #MAX_BUFFERS} (header and status byte too) — whatever the queue size, since an indirect
     * table may be longer than the queue (Linux fills it up to seg_max on a packed ring of 128).
     */
    public static final int SEG_MAX = 254;
    /** Buffers a request may have in all: {@link #SEG_MAX} data buffers, the header and the status byte. */
    public static final int MAX_BUFFERS = SEG_MAX + 2;

    static final int QUEUE_SIZE = 256;
    /** Discard/write-zeroes: one segment per request, up to 4 GiB - 512 of sectors. */
    static final int MAX_DWZ_SECTORS = 0x7fffff;


    private final BlockBackend backend;
    private final int queues;
    /** Requests completed, by kind, and bytes moved; for statistics lines. */
    public final java.util.concurrent.atomic.LongAdder reads = new java.util.concurrent.atomic.LongAdder();
    public final java.util.concurrent.atomic.LongAdder writes = new java.util.concurrent.atomic.LongAdder();
    public final java.util.concurrent.atomic.LongAdder flushes = new java.util.concurrent.atomic.LongAdder();
    public final java.util.concurrent.atomic.LongAdder bytesRead = new java.util.concurrent.atomic.LongAdder();
    public final java.util.concurrent.atomic.LongAdder bytesWritten = new java.util.concurrent.atomic.LongAdder();
    public final java.util.concurrent.atomic.LongAdder errors = new java.util.concurrent.atomic.LongAdder();
    /** Latency of the requests that reached the back-end, from the ring to their completion. */
    public final LatencyHistogram latency = new LatencyHistogram();
    private final ConfigSpace config = new ConfigSpace(Blk.CONFIG_SIZE, this::configWrite);
    private final long pollNanos;
    private volatile long negotiated;
    private volatile boolean writeCache;
    private volatile boolean closed;

    /** Largest single data segment a driver should use by default (VIRTIO_BLK_F_SIZE_MAX). */
    public static final int DEFAULT_SIZE_MAX = 1 << 20;

    public BlkDevice(BlockBackend backend) {
        this(backend, 1);
    }

    public BlkDevice(BlockBackend backend, int queues) {
        this(backend, queues, DEFAULT_SIZE_MAX);
    }

    /**
     * A device with {@code queues} request queues (VIRTIO_BLK_F_MQ when more than one) that asks drivers
     * to keep each data segment within {@code sizeMax} bytes (§5.2.4 {@code size_max}).
     */
    public BlkDevice(BlockBackend backend, int queues, int sizeMax) {
        this(backend, queues, sizeMax, 0);
    }

    /**
     * ... and whose queue threads busy-poll for kicks and completions for up to {@code pollNanos} before they
     * sleep (0: sleep at once), for the lowest latency at queue depth 1 at the price of a busy core.
     */
    public BlkDevice(BlockBackend backend, int queues, int sizeMax, long pollNanos) {
        if (pollNanos < 0) {
            throw new IllegalArgumentException("poll time " + pollNanos + " ns is negative");
        }
        this.pollNanos = pollNanos;
        if (queues < 1 || queues > 64) {
            throw new IllegalArgumentException("queues " + queues + " not in 1..64");
        }
        this.backend = backend;
        this.queues = queues;
        config.store(Blk.CFG_CAPACITY, backend.capacity() / Blk.SECTOR_SIZE, 8);
        config.store(Blk.CFG_SIZE_MAX, sizeMax, 4);
        config.store(Blk.CFG_SEG_MAX, SEG_MAX, 4);
        config.store(Blk.CFG_BLK_SIZE, Blk.SECTOR_SIZE, 4);
        config.store(Blk.CFG_PHYSICAL_BLOCK_EXP, 3, 1); // 4 KiB physical blocks
        config.store(Blk.CFG_MIN_IO_SIZE, 8, 2);
        config.store(Blk.CFG_OPT_IO_SIZE, 256, 4);
        config.store(Blk.CFG_NUM_QUEUES, queues, 2);
        config.store(Blk.CFG_MAX_DISCARD_SECTORS, MAX_DWZ_SECTORS, 4);
        config.store(Blk.CFG_MAX_DISCARD_SEG, 1, 4);
        config.store(Blk.CFG_DISCARD_SECTOR_ALIGNMENT, 8, 4);
        config.store(Blk.CFG_MAX_WRITE_ZEROES_SECTORS, MAX_DWZ_SECTORS, 4);
        config.store(Blk.CFG_MAX_WRITE_ZEROES_SEG, 1, 4);
        setWriteCache(backend.writeCache());
    }

    public BlockBackend backend() {
        return backend;
    }

    @Override
    public DeviceType type() {
        return DeviceType.BLOCK;
    }

    /** A request in flight when a back-end died is done again by the next: reads and writes may be repeated. */
    @Override
    public boolean resubmitsInflight() {
        return true;
    }

    @Override
    public long deviceFeatures() {
        long f = RING_FEATURES | Feature.maskOf(Feature.BLK_SIZE_MAX, Feature.BLK_SEG_MAX,
                Feature.BLK_BLK_SIZE, Feature.BLK_FLUSH, Feature.BLK_TOPOLOGY, Feature.BLK_CONFIG_WCE, Feature.BLK_DISCARD,
                Feature.BLK_WRITE_ZEROES);
        if (backend.readOnly()) {
            f |= Feature.BLK_RO.mask();
        }
        if (queues > 1) {
            f |= Feature.BLK_MQ.mask();
        }
        return f;
    }

    @Override
    public int numQueues() {
        return queues;
    }

    @Override
    public int maxQueueSize(int index) {
        return QUEUE_SIZE;
    }

    @Override
    public ConfigSpace config() {
        return config;
    }

    @Override
    protected QueueThread worker(int index, DeviceQueue queue, Interrupt interrupt, DeviceContext context) {
        return new AsyncWorker("jvirtio-block-q" + index, queue, interrupt,
                new BlkRequests(this, index, queue.size(), context.features(), kickFd(index)), pollNanos,
                context.failure());
    }

    @Override
    protected boolean canWatchKicks(int index) {
        return backend.watchesFds();
    }

    /**
     * FEATURES_OK. §5.2.6.1 (blk-dev-2): with CONFIG_WCE but without FLUSH the driver cannot empty a write
     * cache, so {@code writeback} starts at 0 (writethrough); otherwise the cache starts as the back-end's
     * mode has it (off for {@code cache=writethrough}).
     */
    @Override
    public boolean acceptFeatures(long features) {
        negotiated = features;
        setWriteCache(Feature.BLK_FLUSH.isSet(features) && backend.writeCache());
        return true;
    }

    @Override
    protected void onReset() {
        negotiated = 0;
        setWriteCache(backend.writeCache());
    }

    private void setWriteCache(boolean on) {
        writeCache = on;
        config.store(Blk.CFG_WRITEBACK, on ? 1 : 0, 1);
    }

    /**
     * The driver's write to {@code writeback} (VIRTIO_BLK_F_CONFIG_WCE, §5.2.4): 0 turns the write cache
     * off — from then on every write is stable before it completes — and 1 on. Other fields are read-only.
     */
    private void configWrite(ConfigSpace space, int offset, byte[] data) {
        if (offset == Blk.CFG_WRITEBACK && data.length == 1 && Feature.BLK_CONFIG_WCE.isSet(negotiated)
                && Feature.BLK_FLUSH.isSet(negotiated) && (data[0] == 0 || data[0] == 1)) {
            setWriteCache(data[0] == 1);
        }
    }

    /**
     * Online resize: the back-end takes the new size, then {@code capacity} changes in the configuration
     * space, which bumps its generation and sends a configuration change notification (§5.2.4, blk-dev-5;
     * vhost-user: CONFIG_CHANGE_MSG on the back-end channel) — Linux re-reads the capacity at once. Shrinking
     * cuts off the tail of the disk: only with {@code allowShrink}, when the guest is known not to use it.
     *
     * @return the new capacity in bytes
     */
    public long resize(long bytes, boolean allowShrink) throws IOException {
        long size = resize(backend, bytes, allowShrink);
        config.update(Blk.CFG_CAPACITY, size / Blk.SECTOR_SIZE, 8);
        return size;
    }

    /**
     * Resizes {@code backend} for every device over it (each then calls {@link #capacityChanged()}); refuses to
     * shrink it unless {@code allowShrink}, since shrinking cuts off data a guest may use.
     */
    public static long resize(BlockBackend backend, long bytes, boolean allowShrink) throws IOException {
        long now = backend.capacity();
        if (bytes < now && !allowShrink) {
            throw new IllegalArgumentException("resize from " + now + " to " + bytes
                    + " bytes shrinks the disk and cuts off data the guest may use; add shrink=true if it does not");
        }
        return backend.resize(bytes);
    }

    /**
     * The back-end's capacity changed under this device (another device over the same back-end resized it):
     * publish it, with a configuration change notification.
     */
    public void capacityChanged() {
        long sectors = backend.capacity() / Blk.SECTOR_SIZE;
        if (config.load(Blk.CFG_CAPACITY, 8) != sectors) {
            config.update(Blk.CFG_CAPACITY, sectors, 8);
        }
    }

    /** True once the device was closed (its connection ended). */
    public boolean isClosed() {
        return closed;
    }

    @Override
    public void close() {
        closed = true;
        reset();
    }

    /** Whether completed writes may sit in a volatile cache until FLUSH (the {@code writeback} field). */
    public boolean writeCacheEnabled() {
        return writeCache;
    }
}
