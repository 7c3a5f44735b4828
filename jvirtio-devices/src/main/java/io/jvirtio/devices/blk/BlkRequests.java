package io.jvirtio.devices.blk;

import io.jvirtio.core.spec.Blk;
import io.jvirtio.core.os.FileIo;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.AsyncHandler;

import java.lang.System.Logger.Level;
import java.lang.System.Logger;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;

import static io.jvirtio.core.memory.GuestMemory.U32;
import static io.jvirtio.core.memory.GuestMemory.U64;

/**
 * One request queue of a {@link BlkDevice}: validates each virtio-blk request (§5.2.6) before the back-end
 * sees it, turns it into a {@link BlockRequest} over the chain's own buffers and starts it on the queue's
 * {@link BlockQueue}; when it completes, writes the status byte and hands the chain back. A slot per
 * descriptor of the ring — the most requests a driver can have in flight — each with its chain and request
 * object, so nothing is allocated per request. A bad request completes at once with IOERR or UNSUPP and
 * never reaches the back-end.
 */
final class BlkRequests implements AsyncHandler, BlockCompletion {
    private static final Logger LOG = System.getLogger(BlkRequests.class.getName());
    private static final MemorySegment ZEROES = Arena.global().allocate(4096);

    private final BlkDevice device;
    private final BlockBackend backend;
    private final int queueIndex;
    private final long features;
    private final DescriptorChain[] chains;
    private final BlockRequest[] requests;
    /** Per slot: where the status byte is, in the chain's writable part. */
    private final long[] statusAt;
    /** Per slot: when the request was started (System.nanoTime), for the slow-request event. */
    private final long[] startedAt;
    private final int[] free;
    private int freeCount;
    private final MemorySegment scratch = Arena.ofAuto().allocate(Blk.ID_BYTES + Blk.HEADER_SIZE, 8);
    private final MemorySegment header = scratch.asSlice(0, Blk.HEADER_SIZE);
    private final MemorySegment status = Arena.ofAuto().allocate(1);
    private final int kickFd;
    private volatile BlockQueue queue;
    private UsedSink sink;

    /** @param kickFd the vhost-user kick eventfd the queue waits on itself, or -1 */
    BlkRequests(BlkDevice device, int queueIndex, int depth, long features, int kickFd) {
        this.kickFd = kickFd;
        this.device = device;
        this.backend = device.backend();
        this.queueIndex = queueIndex;
        this.features = features;
        this.chains = new DescriptorChain[depth];
        this.requests = new BlockRequest[depth];
        this.statusAt = new long[depth];
        this.startedAt = new long[depth];
        this.free = new int[depth];
        for (int i = 0; i < depth; i++) {
            chains[i] = new DescriptorChain();
            requests[i] = new BlockRequest(i);
            free[i] = depth - 1 - i;
        }
        this.freeCount = depth;
    }

    @Override
    public void open() throws Exception {
        BlockQueue q = backend.open(queueIndex, chains.length, this);
        if (kickFd >= 0) {
            q.watch(kickFd);
        }
        queue = q;
    }

    @Override
    public DescriptorChain nextChain() {
        return freeCount == 0 ? null : chains[free[freeCount - 1]];
    }

    @Override
    public int start(DescriptorChain chain) {
        int slot = free[--freeCount];
        if (chain.writableBytes() < 1) {
            // No status byte: nothing can be reported. Complete it empty, as QEMU does after its error.
            LOG.log(Level.WARNING, "virtio-blk: request at head {0} has no status byte", chain.head());
            free[freeCount++] = slot;
            return 0;
        }
        long at = chain.writableBytes() - 1;
        statusAt[slot] = at;
        // §5.2.4: seg_max bounds the data buffers of a request; a longer chain (possible through an indirect
        // table) fails here rather than reach an engine sized for it
        if (chain.readableBytes() < Blk.HEADER_SIZE || chain.count() > BlkDevice.MAX_BUFFERS) {
            return finishNow(slot, Blk.S_IOERR, 0);
        }
        chain.readReadable(0, header);
        int type = header.get(U32, 0);
        long sector = header.get(U64, 8);
        BlockRequest r = requests[slot];
        if (type == Blk.T_GET_ID) {
            int n = (int) Math.min(Blk.ID_BYTES, at);
            MemorySegment id = scratch.asSlice(Blk.HEADER_SIZE, Blk.ID_BYTES);
            id.fill((byte) 0);
            byte[] b = backend.id().getBytes(StandardCharsets.US_ASCII);
            MemorySegment.copy(MemorySegment.ofArray(b), 0, id, 0, Math.min(b.length, Blk.ID_BYTES));
            return finishNow(slot, Blk.S_OK, chain.writeWritable(0, id.asSlice(0, n)));
        }
        int result = switch (type) {
            case Blk.T_IN -> prepareRead(chain, r, sector, at);
            case Blk.T_OUT -> prepareWrite(chain, r, sector);
            case Blk.T_FLUSH -> {
                r.set(BlockRequest.Op.FLUSH, 0, 0);
                yield -1;
            }
            case Blk.T_DISCARD -> prepareDiscardOrZero(chain, r, true);
            case Blk.T_WRITE_ZEROES -> prepareDiscardOrZero(chain, r, false);
            default -> Blk.S_UNSUPP;
        };
        if (result >= 0) {
            return finishNow(slot, result, 0);
        }
        startedAt[slot] = System.nanoTime();
        queue.start(r);
        return -1;
    }

    /**
     * A write the driver must see stable when it completes: §5.2.6.1 (blk-dev-10) without FLUSH negotiated,
     * and with CONFIG_WCE while the driver has {@code writeback} at 0.
     */
    private boolean durable() {
        return !Feature.BLK_FLUSH.isSet(features) || !device.writeCacheEnabled();
    }

    /** Bytes {@code [sector*512, +length)} inside the disk, computed without overflow. */
    private boolean inRange(long sector, long length) {
        long cap = backend.capacity();
        return Long.compareUnsigned(sector, cap / Blk.SECTOR_SIZE) <= 0
                && length <= cap - sector * Blk.SECTOR_SIZE;
    }

    /** IN: the data buffers are the writable part up to the status byte. */
    private int prepareRead(DescriptorChain chain, BlockRequest r, long sector, long length) {
        if (length % Blk.SECTOR_SIZE != 0 || !inRange(sector, length)) {
            return Blk.S_IOERR;
        }
        r.set(BlockRequest.Op.READ, sector * Blk.SECTOR_SIZE, length);
        long left = length;
        for (int i = chain.readableCount(); i < chain.count() && left > 0; i++) {
            long n = Math.min(Integer.toUnsignedLong(chain.length(i)), left);
            if (n > 0) {
                r.addBuffer(chain.regionSegment(i), chain.regionOffset(i), n);
            }
            left -= n;
        }
        return -1;
    }

    /** OUT: the data buffers are the readable part after the header. */
    private int prepareWrite(DescriptorChain chain, BlockRequest r, long sector) {
        // §5.2.6.1: with VIRTIO_BLK_F_RO, a write fails with IOERR and writes nothing.
        if (backend.readOnly() || Feature.BLK_RO.isSet(features)) {
            return Blk.S_IOERR;
        }
        long length = chain.readableBytes() - Blk.HEADER_SIZE;
        if (length % Blk.SECTOR_SIZE != 0 || !inRange(sector, length)) {
            return Blk.S_IOERR;
        }
        r.set(BlockRequest.Op.WRITE, sector * Blk.SECTOR_SIZE, length).durable(durable());
        long skip = Blk.HEADER_SIZE;
        for (int i = 0; i < chain.readableCount(); i++) {
            long len = Integer.toUnsignedLong(chain.length(i));
            if (skip >= len) {
                skip -= len;
                continue;
            }
            r.addBuffer(chain.regionSegment(i), chain.regionOffset(i) + skip, len - skip);
            skip = 0;
        }
        return -1;
    }

    /** §5.2.6: DISCARD and WRITE_ZEROES carry struct virtio_blk_discard_write_zeroes segments. */
    private int prepareDiscardOrZero(DescriptorChain chain, BlockRequest r, boolean discard) {
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
        chain.readReadable(Blk.HEADER_SIZE, header);
        long sector = header.get(U64, 0);
        long sectors = Integer.toUnsignedLong(header.get(U32, 8));
        int flags = header.get(U32, 12);
        // §5.2.6.1: unknown flags → UNSUPP; a discard with the unmap flag → UNSUPP.
        if ((flags & ~Blk.DWZ_FLAG_UNMAP) != 0 || (discard && flags != 0)) {
            return Blk.S_UNSUPP;
        }
        if (sectors > BlkDevice.MAX_DWZ_SECTORS || !inRange(sector, sectors * Blk.SECTOR_SIZE)) {
            return Blk.S_IOERR;
        }
        r.set(discard ? BlockRequest.Op.DISCARD : BlockRequest.Op.WRITE_ZEROES, sector * Blk.SECTOR_SIZE,
                sectors * Blk.SECTOR_SIZE).unmap((flags & Blk.DWZ_FLAG_UNMAP) != 0);
        if (!discard) {
            r.durable(durable());
        }
        return -1;
    }

    @Override
    public void complete(BlockRequest r, int result) {
        int slot = r.tag();
        long took = System.nanoTime() - startedAt[slot];
        device.latency.record(took);
        if (took >= SlowRequestEvent.THRESHOLD_NANOS) {
            SlowRequestEvent.report(queueIndex, r, took, result);
        }
        int st = result == OK ? Blk.S_OK : result == -FileIo.EOPNOTSUPP ? Blk.S_UNSUPP : Blk.S_IOERR;
        long filled = 0;
        if (st == Blk.S_OK) {
            switch (r.op()) {
                case READ -> {
                    filled = r.length();
                    device.reads.increment();
                    device.bytesRead.add(r.length());
                }
                case WRITE -> {
                    device.writes.increment();
                    device.bytesWritten.add(r.length());
                }
                case FLUSH -> device.flushes.increment();
                default -> {
                }
            }
        }
        sink.used(chains[slot], finishNow(slot, st, filled));
    }

    /**
     * Writes the status and frees the slot; returns the used length. The status is the last writable byte,
     * so the used length reaches it (as QEMU reports); and since a device writes at least {@code len} bytes
     * (split-dev-10), whatever lies before it and holds no answer — a failed read's data, GET_ID's padding —
     * is zeroed: the driver never sees stale or partial data.
     */
    private int finishNow(int slot, int result, long filled) {
        DescriptorChain chain = chains[slot];
        long at = statusAt[slot];
        if (result != Blk.S_OK) {
            device.errors.increment();
        }
        for (long n; filled < at; filled += n) {
            n = Math.min(ZEROES.byteSize(), at - filled);
            chain.writeWritable(filled, ZEROES, 0, n);
        }
        status.set(ValueLayout.JAVA_BYTE, 0, (byte) result);
        chain.writeWritable(at, status);
        free[freeCount++] = slot;
        return (int) (at + 1);
    }

    @Override
    public void submit() {
        queue.submit();
    }

    @Override
    public boolean ready() {
        return queue.ready();
    }

    @Override
    public boolean poll() {
        return queue.poll();
    }

    @Override
    public int reap(UsedSink to) {
        this.sink = to;
        return queue.reap();
    }

    @Override
    public long kicks() {
        BlockQueue q = queue;
        return q == null ? 0 : q.kicks();
    }

    @Override
    public int inFlight() {
        return chains.length - freeCount;
    }

    @Override
    public void await() {
        queue.await();
    }

    @Override
    public void wakeup() {
        BlockQueue q = queue;
        if (q != null) {
            q.wakeup();
        }
    }

    @Override
    public void close() {
        queue.close();
    }
}
