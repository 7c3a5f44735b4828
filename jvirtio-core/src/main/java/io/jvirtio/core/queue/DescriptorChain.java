package io.jvirtio.core.queue;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.memory.GuestMemoryException;
import io.jvirtio.core.memory.MemoryRegion;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;


/**
 * One descriptor chain popped from the available ring, already walked and validated: its buffers, in
 * order, the device-readable ones first and the device-writable ones after (§2.7.4.2).
 *
 * <p>A chain object is reusable: {@link DeviceQueue#pop(DescriptorChain)} fills it in place, so a device
 * that keeps one chain per request in flight pops without allocating. Buffers are reached either as
 * zero-copy segments ({@link #segment(int)}) or with the gather/scatter copies
 * {@link #readReadable(long, MemorySegment)} and {@link #writeWritable(long, MemorySegment)}, which
 * never allocate and never cross a buffer's bounds.
 */
public final class DescriptorChain {
    /**
     * Largest indirect table we accept, in descriptors. An indirect table may exceed the queue size
     * (Linux sizes it from the request), but its {@code next} fields are 16-bit, so more is unreachable.
     */
    public static final int MAX_INDIRECT = 65536;

    private GuestMemory memory;
    private int head = -1;
    private int count;
    private int readableCount;
    private long readableBytes;
    private long writableBytes;
    /** Where its ring read it (the ring implementation's own: a peeked chain's position, to take it later). */
    private long ringTag;
    private long[] address = new long[8];
    private int[] length = new int[8];
    private int[] region = new int[8];

    public DescriptorChain() {
    }

    /** The head descriptor index: what {@link DeviceQueue#addUsed(int, int)} gives back. */
    public int head() {
        return head;
    }

    /** Number of buffers (indirect table descriptors themselves not counted). */
    public int count() {
        return count;
    }

    public int readableCount() {
        return readableCount;
    }

    public int writableCount() {
        return count - readableCount;
    }

    /** Total bytes of the device-readable buffers. */
    public long readableBytes() {
        return readableBytes;
    }

    /** Total bytes of the device-writable buffers. */
    public long writableBytes() {
        return writableBytes;
    }

    /** Guest-physical address of buffer {@code i}. */
    public long address(int i) {
        return address[check(i)];
    }

    public int length(int i) {
        return length[check(i)];
    }

    public boolean isWritable(int i) {
        return check(i) >= readableCount;
    }

    /** Zero-copy view of buffer {@code i} (bounds were checked when the chain was popped). */
    public MemorySegment segment(int i) {
        check(i);
        MemoryRegion r = memory.region(region[i]);
        return r.segment().asSlice(address[i] - r.guestAddress(), Integer.toUnsignedLong(length[i]));
    }

    /**
     * The guest-memory region holding buffer {@code i}; the buffer is {@link #length(int)} bytes at
     * {@link #regionOffset(int)} in it. For engines that keep buffers without creating slices.
     */
    public MemorySegment regionSegment(int i) {
        return memory.region(region[check(i)]).segment();
    }

    /** Where buffer {@code i} starts in {@link #regionSegment(int)}. */
    public long regionOffset(int i) {
        return address[check(i)] - memory.region(region[i]).guestAddress();
    }

    /**
     * Gathers the device-readable bytes starting {@code offset} bytes into the readable part into
     * {@code dst}, up to {@code dst}'s size. Returns the number of bytes copied.
     */
    public long readReadable(long offset, MemorySegment dst) {
        return transfer(0, readableCount, offset, dst, false);
    }

    /**
     * Scatters {@code src} into the device-writable buffers starting {@code offset} bytes into the
     * writable part. Returns the number of bytes copied (less than {@code src} if the buffers end).
     */
    public long writeWritable(long offset, MemorySegment src) {
        return transfer(readableCount, count, offset, src, true);
    }

    /**
     * {@link #readReadable(long, MemorySegment)} into {@code length} bytes of {@code dst} at
     * {@code dstOffset}, without creating a slice.
     */
    public long readReadable(long offset, MemorySegment dst, long dstOffset, long length) {
        return transfer(0, readableCount, offset, dst, dstOffset, length, false);
    }

    /**
     * {@link #writeWritable(long, MemorySegment)} from {@code length} bytes of {@code src} at
     * {@code srcOffset}, without creating a slice.
     */
    public long writeWritable(long offset, MemorySegment src, long srcOffset, long length) {
        return transfer(readableCount, count, offset, src, srcOffset, length, true);
    }

    /**
     * Reads back {@code length} bytes of the device-writable buffers, {@code offset} bytes in, into {@code dst} at
     * {@code dstOffset}: what somebody else wrote there for the device (a kernel's read into them). Returns the
     * number of bytes copied.
     */
    public long readWritable(long offset, MemorySegment dst, long dstOffset, long length) {
        return transfer(readableCount, count, offset, dst, dstOffset, length, false);
    }

    private long transfer(int from, int to, long offset, MemorySegment data, boolean toGuest) {
        return transfer(from, to, offset, data, 0, data.byteSize(), toGuest);
    }

    private long transfer(int from, int to, long offset, MemorySegment data, long dataOffset, long want,
                          boolean toGuest) {
        long done = 0;
        long skip = offset;
        for (int i = from; i < to && done < want; i++) {
            long len = Integer.toUnsignedLong(length[i]);
            if (skip >= len) {
                skip -= len;
                continue;
            }
            long n = Math.min(len - skip, want - done);
            MemoryRegion r = memory.region(region[i]);
            long at = address[i] - r.guestAddress() + skip;
            if (toGuest) {
                MemorySegment.copy(data, dataOffset + done, r.segment(), at, n);
            } else {
                MemorySegment.copy(r.segment(), at, data, dataOffset + done, n);
            }
            done += n;
            skip = 0;
        }
        return done;
    }

    private int check(int i) {
        if (i < 0 || i >= count) {
            throw new IndexOutOfBoundsException("buffer " + i + " of a chain of " + count);
        }
        return i;
    }

    /**
     * Marks in {@code log} the pages of the first {@code len} bytes of the writable buffers — what a device
     * wrote into this chain before using it (live migration's dirty log).
     */
    public void markWritten(io.jvirtio.core.memory.DirtyLog log, int len) {
        long left = Integer.toUnsignedLong(len);
        for (int i = readableCount; i < count && left > 0; i++) {
            long n = Math.min(Integer.toUnsignedLong(length[i]), left);
            log.mark(address[i], n);
            left -= n;
        }
    }

    /**
     * Starts filling this chain anew for the buffer {@code head} (split: head descriptor index; packed:
     * buffer id). For ring implementations: a device only reads chains.
     */
    public void begin(GuestMemory mem, int head) {
        this.memory = mem;
        this.head = head;
        this.count = 0;
        this.readableCount = 0;
        this.readableBytes = 0;
        this.writableBytes = 0;
    }

    /** What {@link #setRingTag} recorded. For ring implementations. */
    public long ringTag() {
        return ringTag;
    }

    /** Records where the ring read this chain ({@link DeviceQueue#peek}). For ring implementations. */
    public void setRingTag(long tag) {
        this.ringTag = tag;
    }

    /** Sets the buffer id of a packed chain, known only at its last descriptor (§2.8.6). */
    public void setHead(int head) {
        this.head = head;
    }

    /**
     * Appends one buffer of the chain being walked, checking it lies in guest memory (§2.7.4 / §2.8.4), that
     * no readable buffer follows a writable one, and that the chain stays within 2^32 bytes. For ring
     * implementations.
     */
    public void append(int queueIndex, long addr, int len, boolean writable) throws VirtqueueException {
        append(memory, queueIndex, addr, len, writable);
    }

    /** The chain cannot be used (its walk failed): empties it and returns the error to throw. */
    public VirtqueueException fail(int queueIndex, RingError error) {
        count = 0;
        readableCount = 0;
        return new VirtqueueException(queueIndex, error);
    }

    private void append(GuestMemory mem, int queueIndex, long addr, int len, boolean writable)
            throws VirtqueueException {
        long ulen = Integer.toUnsignedLong(len);
        int r;
        try {
            r = mem.regionIndex(addr, ulen);
        } catch (GuestMemoryException e) {
            throw fail(queueIndex, new RingError.BufferOutsideMemory(head, addr, ulen));
        }
        if (writable) {
            writableBytes += ulen;
        } else {
            if (count > readableCount) {
                throw fail(queueIndex, new RingError.ReadableAfterWritable(head));
            }
            readableCount++;
            readableBytes += ulen;
        }
        if (readableBytes + writableBytes > 0x1_0000_0000L) {
            throw fail(queueIndex, new RingError.ChainTooLong(head, readableBytes + writableBytes));
        }
        if (count == address.length) {
            int n = count * 2;
            address = Arrays.copyOf(address, n);
            length = Arrays.copyOf(length, n);
            region = Arrays.copyOf(region, n);
        }
        address[count] = addr;
        length[count] = len;
        region[count] = r;
        count++;
    }

    @Override
    public String toString() {
        return "DescriptorChain[head=" + head + ", readable=" + readableCount + "/" + readableBytes
                + "B, writable=" + writableCount() + "/" + writableBytes + "B]";
    }
}
