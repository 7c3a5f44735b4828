package io.jvirtio.devices.blk;

import io.jvirtio.core.device.ConfigSpace;
import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.queue.split.DescriptorChain;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.QueueDevice;
import io.jvirtio.devices.QueueHandler;
import io.jvirtio.devices.QueueThread;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.queue.split.DeviceQueue;

import java.io.IOException;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;

import static io.jvirtio.core.memory.GuestMemory.U32;
import static io.jvirtio.core.memory.GuestMemory.U64;

/**
 * The block device (VIRTIO 1.2 §5.2) over a {@link BlockBackend}. Requests IN, OUT, FLUSH, GET_ID,
 * DISCARD and WRITE_ZEROES; features SIZE_MAX, SEG_MAX, BLK_SIZE, FLUSH, TOPOLOGY, RO (for a read-only backend),
 * MQ (more than one queue), DISCARD and WRITE_ZEROES. Every request is checked before the backend is
 * touched: header size, data length a multiple of 512, sector range inside the disk (overflow-safe),
 * and the status byte present — a bad request completes with IOERR or UNSUPP and never reads or writes
 * outside the disk.
 */
public final class BlkDevice extends QueueDevice {
    static final int QUEUE_SIZE = 256;
    /** Discard/write-zeroes: one segment per request, up to 4 GiB - 512 of sectors. */
    static final int MAX_DWZ_SECTORS = 0x7fffff;

    private static final Logger LOG = System.getLogger(BlkDevice.class.getName());
    private static final MemorySegment ZEROES = Arena.global().allocate(4096);

    private final BlockBackend backend;
    private final int queues;
    /** Requests completed, by kind, and bytes moved; for statistics lines. */
    public final java.util.concurrent.atomic.LongAdder reads = new java.util.concurrent.atomic.LongAdder();
    public final java.util.concurrent.atomic.LongAdder writes = new java.util.concurrent.atomic.LongAdder();
    public final java.util.concurrent.atomic.LongAdder flushes = new java.util.concurrent.atomic.LongAdder();
    public final java.util.concurrent.atomic.LongAdder bytesRead = new java.util.concurrent.atomic.LongAdder();
    public final java.util.concurrent.atomic.LongAdder bytesWritten = new java.util.concurrent.atomic.LongAdder();
    public final java.util.concurrent.atomic.LongAdder errors = new java.util.concurrent.atomic.LongAdder();
    private final ConfigSpace config = new ConfigSpace(Blk.CONFIG_SIZE);

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
        if (queues < 1 || queues > 64) {
            throw new IllegalArgumentException("queues " + queues + " not in 1..64");
        }
        this.backend = backend;
        this.queues = queues;
        config.store(Blk.CFG_CAPACITY, backend.capacity() / Blk.SECTOR_SIZE, 8);
        config.store(Blk.CFG_SIZE_MAX, sizeMax, 4);
        config.store(Blk.CFG_SEG_MAX, QUEUE_SIZE - 2, 4);
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
    }

    public BlockBackend backend() {
        return backend;
    }

    @Override
    public DeviceType type() {
        return DeviceType.BLOCK;
    }

    @Override
    public long deviceFeatures() {
        long f = Feature.maskOf(Feature.VERSION_1, Feature.INDIRECT_DESC, Feature.EVENT_IDX, Feature.BLK_SIZE_MAX, Feature.BLK_SEG_MAX,
                Feature.BLK_BLK_SIZE, Feature.BLK_FLUSH, Feature.BLK_TOPOLOGY, Feature.BLK_DISCARD,
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
        return requestWorker(index, queue, interrupt, new RequestHandler(context.features()), context);
    }

    /** One queue's request processing; owned by that queue's worker thread. */
    private final class RequestHandler implements QueueHandler {
        private final long features;
        private final MemorySegment scratch = Arena.ofAuto().allocate(Blk.ID_BYTES + Blk.HEADER_SIZE, 8);
        private final MemorySegment header = scratch.asSlice(0, Blk.HEADER_SIZE);
        private final MemorySegment status = Arena.ofAuto().allocate(1);

        RequestHandler(long features) {
            this.features = features;
        }

        @Override
        public int handle(DescriptorChain chain) {
            if (chain.writableBytes() < 1) {
                // No status byte: nothing can be reported. Complete it empty, as QEMU does after its error.
                LOG.log(Level.WARNING, "virtio-blk: request at head {0} has no status byte", chain.head());
                return 0;
            }
            long statusAt = chain.writableBytes() - 1;
            long filled = 0; // bytes of the writable part, from its start, that hold the answer
            int result;
            if (chain.readableBytes() < Blk.HEADER_SIZE) {
                result = Blk.S_IOERR;
            } else {
                chain.readReadable(0, header);
                int type = header.get(U32, 0);
                long sector = header.get(U64, 8);
                try {
                    switch (type) {
                        case Blk.T_IN -> {
                            result = read(chain, sector, statusAt);
                            if (result == Blk.S_OK) {
                                filled = statusAt;
                                reads.increment();
                                bytesRead.add(statusAt);
                            }
                        }
                        case Blk.T_OUT -> {
                            result = write(chain, sector);
                            if (result == Blk.S_OK) {
                                writethrough();
                                writes.increment();
                                bytesWritten.add(chain.readableBytes() - Blk.HEADER_SIZE);
                            }
                        }
                        case Blk.T_FLUSH -> {
                            backend.flush();
                            flushes.increment();
                            result = Blk.S_OK;
                        }
                        case Blk.T_GET_ID -> {
                            int n = (int) Math.min(Blk.ID_BYTES, statusAt);
                            MemorySegment id = scratch.asSlice(Blk.HEADER_SIZE, Blk.ID_BYTES);
                            id.fill((byte) 0);
                            byte[] b = backend.id().getBytes(StandardCharsets.US_ASCII);
                            MemorySegment.copy(MemorySegment.ofArray(b), 0, id, 0, Math.min(b.length, Blk.ID_BYTES));
                            filled = chain.writeWritable(0, id.asSlice(0, n));
                            result = Blk.S_OK;
                        }
                        case Blk.T_DISCARD -> result = discardOrZero(chain, true);
                        case Blk.T_WRITE_ZEROES -> {
                            result = discardOrZero(chain, false);
                            if (result == Blk.S_OK) {
                                writethrough();
                            }
                        }
                        default -> result = Blk.S_UNSUPP;
                    }
                } catch (IOException e) {
                    LOG.log(Level.WARNING, "virtio-blk: backend failed: " + e.getMessage());
                    result = Blk.S_IOERR;
                }
            }
            if (result != Blk.S_OK) {
                errors.increment();
            }
            // The status is the last writable byte, so the used length reaches it (as QEMU reports); and since
            // a device writes at least `len` bytes (split-dev-10), whatever lies before it and holds no answer
            // — a failed read's data, GET_ID's padding — is zeroed: the driver never sees stale or partial data.
            for (long n; filled < statusAt; filled += n) {
                n = Math.min(ZEROES.byteSize(), statusAt - filled);
                chain.writeWritable(filled, ZEROES, 0, n);
            }
            status.set(java.lang.foreign.ValueLayout.JAVA_BYTE, 0, (byte) result);
            chain.writeWritable(statusAt, status);
            return (int) (statusAt + 1);
        }

        /**
         * §5.2.6.1 (blk-dev-10): a driver that did not negotiate VIRTIO_BLK_F_FLUSH cannot ask for durability,
         * so every write it sees completed must already be stable (writethrough).
         */
        private void writethrough() throws IOException {
            if (!Feature.BLK_FLUSH.isSet(features)) {
                backend.flush();
            }
        }

        /** Bytes {@code [sector*512, +length)} inside the disk, computed without overflow. */
        private boolean inRange(long sector, long length) {
            long cap = backend.capacity();
            return Long.compareUnsigned(sector, cap / Blk.SECTOR_SIZE) <= 0
                    && length <= cap - sector * Blk.SECTOR_SIZE;
        }

        private int read(DescriptorChain chain, long sector, long length) throws IOException {
            if (length % Blk.SECTOR_SIZE != 0 || !inRange(sector, length)) {
                return Blk.S_IOERR;
            }
            long disk = sector * Blk.SECTOR_SIZE;
            long done = 0;
            for (int i = chain.readableCount(); i < chain.count() && done < length; i++) {
                MemorySegment s = chain.segment(i);
                long n = Math.min(s.byteSize(), length - done);
                backend.read(disk + done, s.asSlice(0, n));
                done += n;
            }
            return Blk.S_OK;
        }

        private int write(DescriptorChain chain, long sector) throws IOException {
            // §5.2.6.1: with VIRTIO_BLK_F_RO, a write fails with IOERR and writes nothing.
            if (backend.readOnly() || Feature.BLK_RO.isSet(features)) {
                return Blk.S_IOERR;
            }
            long length = chain.readableBytes() - Blk.HEADER_SIZE;
            if (length % Blk.SECTOR_SIZE != 0 || !inRange(sector, length)) {
                return Blk.S_IOERR;
            }
            long disk = sector * Blk.SECTOR_SIZE;
            long skip = Blk.HEADER_SIZE;
            long done = 0;
            for (int i = 0; i < chain.readableCount(); i++) {
                MemorySegment s = chain.segment(i);
                if (skip >= s.byteSize()) {
                    skip -= s.byteSize();
                    continue;
                }
                MemorySegment data = s.asSlice(skip);
                skip = 0;
                backend.write(disk + done, data);
                done += data.byteSize();
            }
            return Blk.S_OK;
        }

        /** §5.2.6: DISCARD and WRITE_ZEROES carry struct virtio_blk_discard_write_zeroes segments. */
        private int discardOrZero(DescriptorChain chain, boolean discard) throws IOException {
            Feature f = discard ? Feature.BLK_DISCARD : Feature.BLK_WRITE_ZEROES;
            if (!f.isSet(features)) {
                return Blk.S_UNSUPP;
            }
            if (backend.readOnly()) {
                return Blk.S_IOERR;
            }
            long payload = chain.readableBytes() - Blk.HEADER_SIZE;
            if (payload != Blk.DWZ_SEGMENT_SIZE) {
                // max_discard_seg / max_write_zeroes_seg is 1; anything else is malformed.
                return payload % Blk.DWZ_SEGMENT_SIZE == 0 && payload > 0 ? Blk.S_UNSUPP : Blk.S_IOERR;
            }
            MemorySegment seg = header;
            chain.readReadable(Blk.HEADER_SIZE, seg);
            long sector = seg.get(U64, 0);
            long sectors = Integer.toUnsignedLong(seg.get(U32, 8));
            int flags = seg.get(U32, 12);
            // §5.2.6.1: unknown flags → UNSUPP; a discard with the unmap flag → UNSUPP.
            if ((flags & ~Blk.DWZ_FLAG_UNMAP) != 0 || (discard && flags != 0)) {
                return Blk.S_UNSUPP;
            }
            if (sectors > MAX_DWZ_SECTORS || !inRange(sector, sectors * Blk.SECTOR_SIZE)) {
                return Blk.S_IOERR;
            }
            if (discard) {
                backend.discard(sector * Blk.SECTOR_SIZE, sectors * Blk.SECTOR_SIZE);
            } else {
                backend.writeZeroes(sector * Blk.SECTOR_SIZE, sectors * Blk.SECTOR_SIZE);
            }
            return Blk.S_OK;
        }
    }
}
