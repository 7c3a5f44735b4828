package io.jvirtio.devices.blk;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * One request a {@link BlockQueue} runs: an operation, a byte range of the disk and, for reads and
 * writes, the buffers — guest memory, used in place (no copy). The device owns one request object per
 * slot of a queue and refills it for each virtio request, so submitting allocates nothing; an engine may
 * keep the object until it completes it, and must not touch it afterwards.
 */
public final class BlockRequest {
    /** What a request does. */
    public enum Op {
        /** Fill the buffers from {@code [offset, offset+length)}. */
        READ,
        /** Store the buffers at {@code [offset, offset+length)}. */
        WRITE,
        /** Make every write completed before this request durable. */
        FLUSH,
        /** The range's contents are no longer needed (they may read back as anything). */
        DISCARD,
        /** The range reads back as zeroes afterwards ({@link #unmap()}: and may be deallocated). */
        WRITE_ZEROES
    }

    private final int tag;
    private Op op = Op.FLUSH;
    private long offset;
    private long length;
    private boolean durable;
    private boolean unmap;
    private int count;
    private MemorySegment[] base = new MemorySegment[4];
    private long[] start = new long[4];
    private long[] size = new long[4];

    /** A request slot; {@code tag} is unique among the requests of one queue (0 up to its depth). */
    public BlockRequest(int tag) {
        this.tag = tag;
    }

    /** Starts describing a new request: {@code op} on {@code [offset, offset+length)}, with no buffers yet. */
    public BlockRequest set(Op op, long offset, long length) {
        this.op = op;
        this.offset = offset;
        this.length = length;
        this.durable = false;
        this.unmap = false;
        this.count = 0;
        return this;
    }

    /** A write that must be stable when it completes (writethrough: FUA, {@code RWF_DSYNC}). */
    public BlockRequest durable(boolean durable) {
        this.durable = durable;
        return this;
    }

    /** WRITE_ZEROES that may deallocate the range (VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP). */
    public BlockRequest unmap(boolean unmap) {
        this.unmap = unmap;
        return this;
    }

    /** Appends {@code length} bytes of {@code segment} at {@code at} as the next buffer, without slicing. */
    public BlockRequest addBuffer(MemorySegment segment, long at, long length) {
        if (count == base.length) {
            base = Arrays.copyOf(base, count * 2);
            start = Arrays.copyOf(start, count * 2);
            size = Arrays.copyOf(size, count * 2);
        }
        base[count] = segment;
        start[count] = at;
        size[count] = length;
        count++;
        return this;
    }

    /** Appends a whole segment as the next buffer. */
    public BlockRequest addBuffer(MemorySegment segment) {
        return addBuffer(segment, 0, segment.byteSize());
    }

    public int tag() {
        return tag;
    }

    public Op op() {
        return op;
    }

    /** Byte offset into the disk. */
    public long offset() {
        return offset;
    }

    /** Bytes covered: the buffers' total for reads and writes. */
    public long length() {
        return length;
    }

    /** True for a write that must be stable before it completes. */
    public boolean durable() {
        return durable;
    }

    public boolean unmap() {
        return unmap;
    }

    public int bufferCount() {
        return count;
    }

    /** Buffer {@code i} as a segment (a slice of guest memory). */
    public MemorySegment buffer(int i) {
        return base[check(i)].asSlice(start[i], size[i]);
    }

    /** Host address of buffer {@code i}, for engines that hand it to the kernel. */
    public long bufferAddress(int i) {
        return base[check(i)].address() + start[i];
    }

    public long bufferLength(int i) {
        return size[check(i)];
    }

    /** Zeroes {@code n} bytes of the buffers starting {@code from} bytes in (a hole in a read's answer). */
    public void zero(long from, long n) {
        long skip = from;
        for (int i = 0; i < count && n > 0; i++) {
            if (skip >= size[i]) {
                skip -= size[i];
                continue;
            }
            long k = Math.min(size[i] - skip, n);
            base[i].asSlice(start[i] + skip, k).fill((byte) 0);
            n -= k;
            skip = 0;
        }
    }

    private int check(int i) {
        if (i < 0 || i >= count) {
            throw new IndexOutOfBoundsException("buffer " + i + " of " + count);
        }
        return i;
    }

    @Override
    public String toString() {
        return op + " offset " + offset + " length " + length + (durable ? " durable" : "") + (unmap ? " unmap" : "")
                + " (" + count + " buffers, tag " + tag + ")";
    }
}
