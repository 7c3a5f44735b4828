package io.jvirtio.devices.net;

import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.VirtqueueException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * A frame its backend reads straight into the driver's receive buffers (a TAP device's {@code readv}), the reader's
 * copy — the kernel's — the only one. The next chains are peeked ({@link DeviceQueue#peek}): one, or with MRG_RXBUF
 * as many as the largest frame may need; their writable buffers, one chain after the other, are the read's
 * <em>stream</em>, and the stream and then the backend's spill the iovecs of one read. The chains the frame filled
 * are then taken and staged used; the others stay the driver's, untouched by the ring. A frame longer than the
 * chains continues in the spill, and is gathered there for the general path. One per receive queue, used under the
 * ring's ownership; nothing is allocated per frame.
 */
final class DirectRead {
    /** iovecs of one read: the chains' writable buffers, and the spill. */
    static final int MAX_IOV = 64;

    private final DescriptorChain[] chains = new DescriptorChain[1 + ReceiveBuffers.MAX_EXTRA_BUFFERS];
    /** Where each chain's buffers end in the stream. */
    private final long[] chainEnd = new long[chains.length];
    private final MemorySegment iov = Arena.ofAuto().allocate(16L * MAX_IOV, 8);
    private int chainCount;
    private int iovCount;
    /** The bytes of the stream the read may fill: the chains' but the room left at its start. */
    private long capacity;
    private long room;

    DirectRead() {
        for (int i = 0; i < chains.length; i++) {
            chains[i] = new DescriptorChain();
        }
    }

    /**
     * Peeks the chains for a frame of up to {@code largest} bytes (only one without {@code mergeable}) and makes
     * their writable buffers the iovecs, the stream's first {@code room} bytes left out (for a header written
     * later). False when there is nothing to read into: the driver offers no chain, or the first has more
     * buffers than one read takes.
     */
    boolean prepare(DeviceQueue queue, boolean mergeable, long largest, long room) throws VirtqueueException {
        int k = queue.peek(chains, 1);
        if (k == 0) {
            return false;
        }
        long first = chains[0].writableBytes();
        if (mergeable && first > 0 && first < largest) {
            // as many more as buffers like the first would need: the peek walks again from the first
            k = queue.peek(chains, (int) Math.min(chains.length, (largest + first - 1) / first));
        }
        this.room = room;
        chainCount = 0;
        iovCount = 0;
        capacity = 0;
        long end = 0;
        long skip = room;
        for (int c = 0; c < k; c++) {
            DescriptorChain chain = chains[c];
            if (iovCount + chain.writableCount() >= MAX_IOV) {
                break; // a chain goes in whole or not at all; the spill keeps the last iovec
            }
            for (int i = chain.readableCount(); i < chain.count(); i++) {
                long len = Integer.toUnsignedLong(chain.length(i));
                long drop = Math.min(skip, len);
                skip -= drop;
                if (len > drop) {
                    long at = 16L * iovCount++;
                    iov.set(ValueLayout.JAVA_LONG, at, chain.regionSegment(i).address() + chain.regionOffset(i) + drop);
                    iov.set(ValueLayout.JAVA_LONG, at + 8, len - drop);
                    capacity += len - drop;
                }
            }
            end += chain.writableBytes();
            chainEnd[c] = end;
            chainCount = c + 1;
        }
        return chainCount > 0;
    }

    /**
     * Reads one frame with {@code reader} into the chains and then its spill: the frame's length, or what the
     * reader returned when it read none (0, or a negative errno).
     */
    long read(NetBackend.FrameReader reader) {
        MemorySegment spill = reader.spill();
        long at = 16L * iovCount;
        iov.set(ValueLayout.JAVA_LONG, at, spill.address());
        iov.set(ValueLayout.JAVA_LONG, at + 8, spill.byteSize());
        return reader.read(iov, iovCount + 1);
    }

    /** Whether a frame of {@code length} bytes lies in the chains alone. */
    boolean fits(long length) {
        return length <= capacity;
    }

    /**
     * Makes a frame of {@code length} bytes that did not fit — its start in the chains, its rest at the start of
     * {@code spill} — whole at the start of {@code spill}. False when the reader cut it (longer than both).
     */
    boolean gather(MemorySegment spill, long length) {
        if (length > spill.byteSize()) {
            return false;
        }
        MemorySegment.copy(spill, 0, spill, capacity, length - capacity); // overlapping: copied as through a buffer
        copyOut(room, spill, 0, capacity);
        return true;
    }

    /** Copies {@code length} bytes of the stream from {@code pos} on into {@code dst} at {@code at}. */
    void copyOut(long pos, MemorySegment dst, long at, long length) {
        long done = 0;
        long start = 0;
        for (int c = 0; c < chainCount && done < length; c++) {
            long end = chainEnd[c];
            if (pos + done < end) {
                done += chains[c].readWritable(pos + done - start, dst, at + done,
                        Math.min(length - done, end - pos - done));
            }
            start = end;
        }
    }

    /** Writes {@code length} bytes of {@code src} from {@code from} on at the start of the stream (a header). */
    void writeStart(MemorySegment src, long from, long length) {
        chains[0].writeWritable(0, src, from, length);
    }

    /** How many chains the stream's first {@code bytes} take (at least the first). */
    int chainsFor(long bytes) {
        int m = 1;
        while (m < chainCount && chainEnd[m - 1] < bytes) {
            m++;
        }
        return m;
    }

    /**
     * Takes the first {@code m} chains and stages each used with the bytes of the stream's first {@code total} it
     * holds. With {@code mergeable} each must hold a header (§5.1.6.3.1), or the ring breaks as for a frame written
     * any other way.
     */
    void commit(DeviceQueue queue, int m, long total, boolean mergeable) throws VirtqueueException {
        long start = 0;
        for (int c = 0; c < m; c++) {
            DescriptorChain chain = chains[c];
            if (mergeable) {
                ReceiveBuffers.requireHeaderRoom(chain, queue);
            }
            queue.take(chain);
            queue.addUsed(chain, (int) (Math.min(chainEnd[c], total) - start));
            start = chainEnd[c];
        }
    }
}
