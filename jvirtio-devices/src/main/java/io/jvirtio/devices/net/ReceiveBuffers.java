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

    /** {@link #writeWhole}: header and frame written and staged used. */
    static final int WRITTEN = 1;
    /** {@link #writeWhole}: the header, as copied, is not for this driver; the buffer was given back unused. */
    static final int REFUSED = 2;
    /** {@link #writeWhole}: the first writable buffer is too small; nothing was written. */
    static final int TOO_SMALL = 0;

    /** Whether a frame, behind the header at {@code at} of {@code frame}, may be given to the driver. */
    interface HeaderCheck {
        boolean takes(MemorySegment frame, long at, long length);
    }

    /**
     * The common case of a frame that travels behind its backend's header: header and frame ({@code total} bytes
     * at {@code at} of {@code data}) fit the chain's first writable buffer, so they go in one copy, and
     * num_buffers (1) and, for a driver without GUEST_CSUM, the flags (net-dev-9) are then set in place — no
     * header assembled apart, no second copy. The header is checked there, after the copy: {@code data} may be
     * the sending guest's buffer, which it can rewrite meanwhile, while the receiving buffer is written by this
     * side alone until it is used.
     *
     * @return {@link #WRITTEN} (the buffer staged used), {@link #REFUSED} ({@code check} said no: the buffer is
     *         given back) or {@link #TOO_SMALL} (nothing written: {@link #write} then)
     */
    int writeWhole(DescriptorChain chain, DeviceQueue queue, MemorySegment data, long at, long total,
                   boolean clearFlags, HeaderCheck check) {
        int first = chain.readableCount();
        if (chain.writableCount() == 0 || Integer.toUnsignedLong(chain.length(first)) < total) {
            return TOO_SMALL;
        }
        MemorySegment guest = chain.regionSegment(first);
        long off = chain.regionOffset(first);
        MemorySegment.copy(data, at, guest, off, total);
        if (!check.takes(guest, off, total)) {
            queue.undoPop();
            return REFUSED;
        }
        guest.set(GuestMemory.U16, off + Net.HDR_NUM_BUFFERS, (short) 1);
        if (clearFlags) {
            guest.set(java.lang.foreign.ValueLayout.JAVA_BYTE, off + Net.HDR_FLAGS, (byte) 0);
        }
        queue.addUsed(chain, (int) total);
        return WRITTEN;
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
        long done = writeFrom(chain, header, data, at, 0, length);
        queue.addUsed(chain, (int) done);
        for (int i = 0; i < used; i++) {
            long n = writeFrom(extra[i], header, data, at, done, length);
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
    private static long writeFrom(DescriptorChain chain, MemorySegment header, MemorySegment data, long at, long pos,
                                  long length) {
        long head = header.byteSize();
        long n = pos < head ? chain.writeWritable(0, header, pos, head - pos) : 0;
        long inData = pos + n - head;
        if (inData >= 0) {
            n += chain.writeWritable(n, data, at + inData, length - inData);
        }
        return n;
    }

    /**
     * §5.1.6.3.1: with MRG_RXBUF every receive buffer holds at least the header (the frame's bytes then start
     * after it in the first buffer). A smaller one is a broken driver: the queue stops with NEEDS_RESET rather
     * than splitting the header, or copying from before the frame, into the guest.
     */
    private static void requireHeaderRoom(DescriptorChain chain, DeviceQueue queue) throws VirtqueueException {
        if (chain.writableBytes() < Net.HDR_SIZE) {
            throw new VirtqueueException(queue.index(), new RingError.BufferTooSmall(
                    chain.head(), chain.writableBytes(), Net.HDR_SIZE, "VIRTIO_NET_F_MRG_RXBUF (§5.1.6.3.1)"));
        }
    }
}
