package io.jvirtio.devices.net;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.RingError;
import io.jvirtio.core.queue.VirtqueueException;
import io.jvirtio.core.spec.Net;

import java.lang.foreign.MemorySegment;

/**
 * Places one received frame, behind its virtio-net header, in the driver's receive buffers (§5.1.6.4): the
 * buffer popped for it, and with MRG_RXBUF as many more as the frame needs, each filled completely but the last
 * (net-dev-8), {@code num_buffers} saying how many (net-dev-7). One per receive queue, used by whoever serves
 * it; its chains are reused, so nothing is allocated per frame.
 */
final class ReceiveBuffers {
    /** Buffers one frame may take besides the first. */
    static final int MAX_EXTRA_BUFFERS = 32;

    private final DescriptorChain[] extra = new DescriptorChain[MAX_EXTRA_BUFFERS];

    ReceiveBuffers() {
        for (int i = 0; i < extra.length; i++) {
            extra[i] = new DescriptorChain();
        }
    }

    /**
     * The common case of a frame that travels behind its backend's header: header and frame fit the chain's first
     * writable buffer. The header is stored from the values given — read once and checked by the caller, so what
     * the driver gets is what was checked, however the sender's buffer changes meanwhile — and the
     * {@code length} bytes of the frame at {@code at} of {@code data} are copied behind it: nothing is read back
     * from the receiving buffer (a load there would wait for the lines the driver last had). Stages the buffer used.
     * Only for a chain the frame {@link #fitsWhole}: else {@link #write}.
     *
     * @param head0 the header's first eight bytes (flags, gso_type, hdr_len, gso_size, csum_start), little-endian
     * @param head8 its last four (csum_offset, num_buffers)
     */
    void writeWhole(DescriptorChain chain, DeviceQueue queue, long head0, int head8, MemorySegment data, long at,
                    long length) {
        int first = chain.readableCount();
        long total = Net.HDR_SIZE + length;
        MemorySegment guest = chain.regionSegment(first);
        long off = chain.regionOffset(first);
        guest.set(GuestMemory.U64, off, head0);
        guest.set(GuestMemory.U32, off + 8, head8);
        MemorySegment.copy(data, at, guest, off + Net.HDR_SIZE, length);
        queue.addUsed(chain, (int) total);
    }

    /** Whether the header and a frame of {@code length} bytes fit {@code chain}'s first writable buffer. */
    static boolean fitsWhole(DescriptorChain chain, long length) {
        return chain.writableCount() != 0
                && Integer.toUnsignedLong(chain.length(chain.readableCount())) >= Net.HDR_SIZE + length;
    }

    /**
     * Writes {@code header} (the virtio-net header, its num_buffers set here, and perhaps the first bytes of the
     * frame after it) and the {@code length} bytes at {@code at} of {@code data}
     * into {@code chain} and, when {@code mergeable}, the further buffers it pops; stages them all used.
     *
     * @return false when the frame is larger than what the driver offers: every buffer popped for it, {@code chain}
     *         too, is given back, nothing is written
     * @throws VirtqueueException when a mergeable buffer cannot hold the header (the driver broke §5.1.6.3.1)
     */
    boolean write(DescriptorChain chain, DeviceQueue queue, MemorySegment header, MemorySegment data, long at,
                  long length, boolean mergeable) throws VirtqueueException {
        return write(chain, queue, header, data, null, at, length, mergeable);
    }

    /**
     * {@link #write(DescriptorChain, DeviceQueue, MemorySegment, MemorySegment, long, long, boolean)} with the frame's
     * bytes after {@code header} taken from {@code from}'s readable buffers, {@code offset} bytes in: a frame over
     * several of a sending guest's buffers, copied once, buffer to buffer.
     */
    boolean writeGathered(DescriptorChain chain, DeviceQueue queue, MemorySegment header, DescriptorChain from,
                          long offset, long length, boolean mergeable) throws VirtqueueException {
        return write(chain, queue, header, null, from, offset, length, mergeable);
    }

    /** The frame's bytes after the header: {@code length} at {@code at} of {@code data}, or of {@code from}'s. */
    private boolean write(DescriptorChain chain, DeviceQueue queue, MemorySegment header, MemorySegment data,
                          DescriptorChain from, long at, long length, boolean mergeable) throws VirtqueueException {
        long head = header.byteSize();
        long total = head + length;
        int used = 0;
        long capacity = chain.writableBytes();
        if (mergeable) {
            requireHeaderRoom(chain, queue);
        }
        while (capacity < total && mergeable && used < extra.length && queue.pop(extra[used])) {
            requireHeaderRoom(extra[used], queue);
            capacity += extra[used].writableBytes();
            used++;
        }
        if (capacity < total) {
            for (int i = 0; i <= used; i++) {
                queue.undoPop();
            }
            return false;
        }
        header.set(GuestMemory.U16, Net.HDR_NUM_BUFFERS, (short) (used + 1));
        long done = writeFrom(chain, header, data, from, at, 0, length);
        queue.addUsed(chain, (int) done);
        for (int i = 0; i < used; i++) {
            long n = writeFrom(extra[i], header, data, from, at, done, length);
            queue.addUsed(extra[i], (int) n);
            done += n;
        }
        return true;
    }

    /**
     * Fills {@code chain}'s writable buffers with what follows the first {@code pos} bytes of {@code header} and
     * then {@code length} bytes at {@code at} of {@code data}, taken as one stream.
     *
     * @return the bytes written
     */
    private static long writeFrom(DescriptorChain chain, MemorySegment header, MemorySegment data,
                                  DescriptorChain from, long at, long pos, long length) {
        long head = header.byteSize();
        long n = pos < head ? chain.writeWritable(0, header, pos, head - pos) : 0;
        long inData = pos + n - head;
        if (inData >= 0) {
            n += data != null ? chain.writeWritable(n, data, at + inData, length - inData)
                    : copyChain(from, at + inData, length - inData, chain, n);
        }
        return n;
    }

    /**
     * Up to {@code length} bytes of {@code from}'s readable buffers, {@code offset} bytes in, into {@code to}'s
     * writable buffers from {@code toOffset} on, buffer to buffer; returns how many fitted.
     */
    private static long copyChain(DescriptorChain from, long offset, long length, DescriptorChain to, long toOffset) {
        long done = 0;
        long skip = offset;
        for (int i = 0; i < from.readableCount() && done < length; i++) {
            long len = Integer.toUnsignedLong(from.length(i));
            if (skip >= len) {
                skip -= len;
                continue;
            }
            long want = Math.min(len - skip, length - done);
            long n = to.writeWritable(toOffset + done, from.regionSegment(i), from.regionOffset(i) + skip, want);
            done += n;
            if (n < want) {
                break; // the receiving chain is full
            }
            skip = 0;
        }
        return done;
    }

    /**
     * §5.1.6.3.1: with MRG_RXBUF every receive buffer holds at least the header (the frame's bytes then start
     * after it in the first buffer). A smaller one is a broken driver: the queue stops with NEEDS_RESET rather
     * than splitting the header, or copying from before the frame, into the guest.
     */
    static void requireHeaderRoom(DescriptorChain chain, DeviceQueue queue) throws VirtqueueException {
        if (chain.writableBytes() < Net.HDR_SIZE) {
            throw new VirtqueueException(queue.index(), new RingError.BufferTooSmall(
                    chain.head(), chain.writableBytes(), Net.HDR_SIZE, "VIRTIO_NET_F_MRG_RXBUF (§5.1.6.3.1)"));
        }
    }
}
