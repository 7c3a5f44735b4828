package io.jvirtio.devices.net;

import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.core.spec.Net;
import io.jvirtio.devices.QueueHandler;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A transmit queue: header, then the frame (§5.1.6.2); nothing is written back. One per pair. A frame that
 * lies in one buffer goes to the backend where it is, in the guest's memory, with the other such frames of its
 * group of chains as one {@link FrameBurst}, before any of those chains is published used: the switch reads its
 * addresses there and each receiver copies it once, straight into its own ring — no copy here. It goes on so when its
 * header asks nothing (its fields all zero), or when the driver may write one (CSUM) and this one asks what the
 * driver negotiated (a partial checksum, a segment of a kind it may send) — read once, into registers: a driver
 * that rewrites its buffer meanwhile changes no decision taken here, and every receiver checks the header it
 * gets again, for itself (a NIC against what its driver took, the switch in its own copy before it finishes an
 * offload, the kernel behind a TAP device). Else (a frame over several buffers, or a header written without
 * CSUM, which is cleared: net-drv-7) the header is read into memory of the device's own, checked there, and the
 * frame copied behind it.
 */
final class Transmitter implements QueueHandler.Touching {
    private final NetDevice nic;
    private final NetBackend backend;
    /** The backend's offloads: not 0, frames go on behind their header. */
    private final long offloads;
    private final int queue;
    private final int pair;
    /** The pair's transmit counter, written only by whoever serves this queue. */
    private final AtomicLong sent;
    /** Frames handed on where they lie, together once the group of chains they came in is handled. */
    private final FrameBurst burst = new FrameBurst();
    /** A frame, or with offloads a header and a segment of up to 64 KiB. */
    private final MemorySegment scratch;

    Transmitter(NetDevice nic, NetBackend backend, long offloads, int queue, AtomicLong sent) {
        this.nic = nic;
        this.backend = backend;
        this.offloads = offloads;
        this.queue = queue;
        this.pair = queue / 2;
        this.sent = sent;
        this.scratch = Arena.ofAuto().allocate(offloads != 0 ? NetDevice.MAX_SEGMENT : 65536, 64);
    }

    @Override
    public int handle(DescriptorChain chain) {
        // with offloads the header goes too (the backend finishes checksums and cuts segments); else the
        // frame alone, whatever the header said (net-dev-6)
        long from = offloads != 0 ? 0 : Net.HDR_SIZE;
        long len = chain.readableBytes() - from;
        if (!nic.enabled(queue) || len < Net.HDR_SIZE - from + NetDevice.ETH_HLEN || len > scratch.byteSize()) {
            // a disabled ring is consumed, its frames discarded (vhost-user "Ring states")
            nic.txDropped.increment();
            return 0;
        }
        if (offloads != 0) {
            if (chain.length(0) >= len) {
                // header and frame in one buffer: the header's first ten bytes read once, in two loads
                MemorySegment s = chain.regionSegment(0);
                long off = chain.regionOffset(0);
                long head0 = s.get(ValueLayout.JAVA_LONG_UNALIGNED, off);
                long negotiated = nic.negotiated();
                if (head0 == 0 && s.get(ValueLayout.JAVA_SHORT_UNALIGNED, off + 8) == 0
                        || Feature.NET_CSUM.isSet(negotiated)) {
                    // a header that asks nothing, or one the driver may write (CSUM: a partial checksum, a
                    // segment it negotiated — checked as read) goes on where it lies, with its frame
                    if (!Offloads.senderMay((int) (head0 >>> 8) & 0xff, negotiated)) {
                        nic.txDropped.increment(); // net-dev-6: a segment the driver may not send
                        return 0;
                    }
                    count();
                    send(s, off, len);
                    return 0;
                }
            }
            sendBurst(); // the frames before this one go first: order is kept
            chain.readReadable(0, scratch, 0, Net.HDR_SIZE);
            if (!Offloads.fitForBackend(scratch, nic.negotiated())) {
                nic.txDropped.increment();
                return 0;
            }
            // the header as checked, here, and the frame where it lies, if the backend takes it so (a TAP device)
            if (backend.transmitGathered(pair, scratch, chain, Net.HDR_SIZE, len - Net.HDR_SIZE)) {
                count();
                return 0;
            }
            chain.readReadable(Net.HDR_SIZE, scratch, Net.HDR_SIZE, len - Net.HDR_SIZE);
        } else {
            // the frame after the header: in the header's buffer, or alone in the next (a header apart)
            int first = chain.length(0) >= Net.HDR_SIZE + len ? 0
                    : chain.length(0) == Net.HDR_SIZE && chain.readableCount() == 2 ? 1 : -1;
            if (first >= 0) {
                count();
                send(chain.regionSegment(first), chain.regionOffset(first) + (first == 0 ? Net.HDR_SIZE : 0), len);
                return 0;
            }
            sendBurst();
            chain.readReadable(from, scratch, 0, len);
        }
        count();
        backend.transmit(pair, scratch, 0, len); // a multi-queue backend: this pair's own queue
        return 0;
    }

    /** The header and the addresses behind it: what is read first, in the guest's buffer (or its first two). */
    @Override
    public long touch(DescriptorChain chain) {
        long t = 0;
        for (int i = 0; i < Math.min(2, chain.readableCount()); i++) {
            int len = chain.length(i);
            if (len >= 8) {
                MemorySegment s = chain.regionSegment(i);
                long off = chain.regionOffset(i);
                t += s.get(ValueLayout.JAVA_LONG_UNALIGNED, off);
                if (len >= Net.HDR_SIZE + 8) {
                    t += s.get(ValueLayout.JAVA_LONG_UNALIGNED, off + Net.HDR_SIZE);
                }
            }
        }
        return t;
    }

    /**
     * A frame where it lies, in the guest's buffer, joins the burst handed on when the group is handled
     * ({@link #groupHandled}): its chain is staged used but not published before then, so the buffer stays ours.
     */
    private void send(MemorySegment segment, long offset, long length) {
        if (!burst.add(segment, offset, length)) {
            sendBurst();
            burst.add(segment, offset, length);
        }
    }

    @Override
    public void groupHandled() {
        sendBurst();
    }

    private void sendBurst() {
        if (burst.count() > 0) {
            try {
                backend.transmit(pair, burst); // a multi-queue backend: this pair's own queue
            } finally {
                burst.clear();
            }
        }
    }

    private void count() {
        sent.lazySet(sent.get() + 1); // only this queue's server writes it
    }
}
