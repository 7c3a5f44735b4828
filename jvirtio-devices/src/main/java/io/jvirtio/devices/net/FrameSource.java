package io.jvirtio.devices.net;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.VirtqueueException;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.core.spec.Net;
import io.jvirtio.devices.RxWorker;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/** Fills receive buffers with frames: header (num_buffers) + frame, one or several buffers per frame. */
final class FrameSource implements RxWorker.WholeSource, RxWorker.InRing<NetBackend.FrameReader> {
    /** {@link #serve}: nothing read, the driver offers no buffer to read into (or none a read can take). */
    static final long NOT_READ = -1;
    private final NetDevice nic;
    private final QueuePair pair;
    /** The backend's offloads: not 0, frames come behind their header. */
    private final long offloads;
    private final ReceiveBuffers buffers = new ReceiveBuffers();
    private final DirectRead read = new DirectRead();
    /** The header that asks nothing, in front of a frame from a backend without headers. */
    private final MemorySegment header = Arena.ofAuto().allocate(Net.HDR_SIZE);
    /** A backend's header and the Ethernet header behind it, as checked. */
    private final MemorySegment headers = Arena.ofAuto().allocate(Net.HDR_SIZE + NetDevice.ETH_HLEN);
    private final int queue;

    FrameSource(NetDevice nic, QueuePair pair, long offloads, int queue) {
        this.nic = nic;
        this.pair = pair;
        this.offloads = offloads;
        this.queue = queue;
    }

    @Override
    public boolean hasPending() {
        long change = nic.pairsChange();
        if (queue / 2 >= nic.activePairs()) {
            // a pair VQ_PAIRS_SET removed: what waits for it is dropped, here, by its only consumer
            while (!pair.inbound.isEmpty()) {
                pair.inbound.poll();
                nic.rxDropped.increment();
            }
            pair.seenPairsChange = change;
            return false;
        }
        if (pair.seenPairsChange != change) {
            pair.seenPairsChange = change; // a store only when the pairs changed: none per frame
        }
        return nic.enabled(queue) && !pair.inbound.isEmpty(); // disabled: nothing new reaches the driver
    }

    /** Straight into the ring only when nothing waits here (order) and the queue takes frames now. */
    @Override
    public boolean direct() {
        return queue / 2 < nic.activePairs() && nic.enabled(queue) && pair.inbound.isDrained();
    }

    @Override
    public int fill(DescriptorChain chain, DeviceQueue queue) throws VirtqueueException {
        FrameRing ring = pair.inbound;
        try {
            return fillFrom(chain, queue, ring.slots(), ring.headOffset(), ring.headLength());
        } finally {
            ring.poll();
        }
    }

    /** {@link #fillWhole} for the frame that waits first; it leaves the queue unless it needs {@link #fill}. */
    @Override
    public int fillWholePending(DescriptorChain chain, DeviceQueue queue) throws VirtqueueException {
        FrameRing ring = pair.inbound;
        int r = fillWhole(chain, queue, ring.slots(), ring.headOffset(), ring.headLength());
        if (r != RxWorker.NOT_WHOLE) {
            ring.poll();
        }
        return r;
    }

    /**
     * Header + the frame at {@code at} of {@code data}, over one or (MRG_RXBUF) several buffers. {@code data}
     * may be the sending guest's buffer, which it can rewrite as we copy: the header is read once — into
     * registers, or with the Ethernet header into a copy of this side's — checked, and written as checked.
     */
    @Override
    public int fillFrom(DescriptorChain chain, DeviceQueue queue, MemorySegment data, long at, long length)
            throws VirtqueueException {
        if (offloads != 0) {
            long now = nic.receiveFeatures();
            // the backend's header travels on (flags only with GUEST_CSUM: net-dev-9), read once, checked,
            // and stored as checked
            long head0 = data.get(GuestMemory.U64, at);
            int flags = (int) head0 & 0xff;
            int gso = (int) (head0 >>> 8) & 0xff;
            if (gso != Offloads.GSO_UDP_L4) {
                if (!Offloads.driverTakes(flags, gso, now) || !nic.withinMtu(gso != Net.HDR_GSO_NONE, length)) {
                    return refuse(queue);
                }
                if (!Feature.NET_GUEST_CSUM.isSet(now)) {
                    head0 &= ~0xffL;
                }
                int head8 = (data.get(GuestMemory.U16, at + 8) & 0xffff) | 1 << 16; // num_buffers 1
                if (ReceiveBuffers.fitsWhole(chain, length - Net.HDR_SIZE)) {
                    buffers.writeWhole(chain, queue, head0, head8, data, at + Net.HDR_SIZE, length - Net.HDR_SIZE);
                    pair.rxFrames.lazySet(pair.rxFrames.get() + 1); // only the ring's owner writes it
                    return -1;
                }
            }
            // the header and the Ethernet header (the EtherType says which UDP segmentation a segment needs)
            // copied here, checked, and written from this copy
            MemorySegment.copy(data, at, headers, 0, headers.byteSize());
            if (!nic.driverTakes(headers, 0, length, now)) {
                return refuse(queue);
            }
            if (!Feature.NET_GUEST_CSUM.isSet(now)) {
                headers.set(ValueLayout.JAVA_BYTE, Net.HDR_FLAGS, (byte) 0);
            }
            return write(chain, queue, headers, data, at + headers.byteSize(), length - headers.byteSize());
        }
        header.fill((byte) 0);
        return write(chain, queue, header, data, at, length);
    }

    /**
     * {@link #fillFrom} for a frame over several of a sending guest's buffers: the header the sending NIC checked
     * (the first 12 bytes of {@code header}, its own memory) and {@code length} bytes of {@code from}'s readable
     * buffers from {@code offset} on. Header and Ethernet header are copied here and checked, as in {@link #fillFrom};
     * the rest goes from the sender's buffers into the driver's, once. Only behind a backend's header.
     */
    @Override
    public int fillGathered(DescriptorChain chain, DeviceQueue queue, MemorySegment header, DescriptorChain from,
                            long offset, long length) throws VirtqueueException {
        if (offloads == 0 || length < NetDevice.ETH_HLEN) {
            throw new IllegalArgumentException("a gathered frame comes behind a header, and has an Ethernet header");
        }
        long now = nic.receiveFeatures();
        MemorySegment.copy(header, 0, headers, 0, Net.HDR_SIZE);
        from.readReadable(offset, headers, Net.HDR_SIZE, NetDevice.ETH_HLEN);
        if (!nic.driverTakes(headers, 0, Net.HDR_SIZE + length, now)) {
            return refuse(queue);
        }
        if (!Feature.NET_GUEST_CSUM.isSet(now)) {
            headers.set(ValueLayout.JAVA_BYTE, Net.HDR_FLAGS, (byte) 0);
        }
        if (!buffers.writeGathered(chain, queue, headers, from, offset + NetDevice.ETH_HLEN,
                length - NetDevice.ETH_HLEN, Feature.NET_MRG_RXBUF.isSet(nic.negotiated()))) {
            nic.rxDropped.increment(); // too large for what the driver offers: dropped, never truncated
            return -1;
        }
        pair.rxFrames.lazySet(pair.rxFrames.get() + 1); // only the ring's owner writes it
        return -1;
    }

    /**
     * {@link #fillFrom} for the common frame — header and frame in the first writable buffer of {@code chain}, a
     * chain read ahead — with the same checks: the header read once, checked, stored as checked. A UDP segment (its
     * EtherType decides) and a frame larger than the buffer go through {@link #fillFrom}.
     */
    @Override
    public int fillWhole(DescriptorChain chain, DeviceQueue queue, MemorySegment data, long at, long length)
            throws VirtqueueException {
        long head0 = 0;
        int head8 = 1 << 16; // num_buffers 1
        long h = 0;
        if (offloads != 0) {
            long now = nic.receiveFeatures();
            head0 = data.get(GuestMemory.U64, at);
            int flags = (int) head0 & 0xff;
            int gso = (int) (head0 >>> 8) & 0xff;
            if (gso == Offloads.GSO_UDP_L4) {
                return RxWorker.NOT_WHOLE;
            }
            if (!Offloads.driverTakes(flags, gso, now) || !nic.withinMtu(gso != Net.HDR_GSO_NONE, length)) {
                nic.rxDropped.increment(); // net-dev-9, net-dev-3: not for this driver
                return RxWorker.DROPPED;
            }
            if (!Feature.NET_GUEST_CSUM.isSet(now)) {
                head0 &= ~0xffL;
            }
            head8 |= data.get(GuestMemory.U16, at + 8) & 0xffff;
            h = Net.HDR_SIZE;
        }
        if (!ReceiveBuffers.fitsWhole(chain, length - h)) {
            return RxWorker.NOT_WHOLE;
        }
        queue.take(chain);
        buffers.writeWhole(chain, queue, head0, head8, data, at + h, length - h);
        pair.rxFrames.lazySet(pair.rxFrames.get() + 1); // only the ring's owner writes it
        return RxWorker.FILLED;
    }

    /**
     * The next frame of {@code reader} read straight into the driver's buffers ({@link DirectRead}): behind a
     * backend's header, the header lands where the driver reads it and is checked there; without one, room is
     * left for the header, written here. Checked as {@link #fillFrom} checks (net-dev-3, net-dev-9, the receive
     * filter), and stored as checked: the header with {@code num_buffers}, the flags cleared without GUEST_CSUM.
     * A frame not for the driver leaves its chains untaken — the driver's, whatever the read wrote into them.
     *
     * @return the frame's length, delivered or dropped and counted; {@link #NOT_READ}; 0 when the reader had no
     *         frame (or failed, and says so); or {@link #spilled} of its length when it did not fit the buffers
     *         offered: it is whole at the start of the reader's spill, for the general path
     */
    @Override
    public long serve(DeviceQueue queue, NetBackend.FrameReader reader) throws VirtqueueException {
        long now = nic.receiveFeatures();
        boolean mergeable = Feature.NET_MRG_RXBUF.isSet(nic.negotiated());
        long room = offloads != 0 ? 0 : Net.HDR_SIZE; // a reader without headers: ours goes in front
        if (!read.prepare(queue, mergeable, room + nic.largestFrame(now), room)) {
            return NOT_READ;
        }
        long n = read.read(reader);
        if (n <= 0) {
            return 0;
        }
        if (!read.fits(n)) {
            if (!read.gather(reader.spill(), n)) {
                nic.rxDropped.increment(); // cut by the reader: never delivered
                return n;
            }
            return spilled(n);
        }
        if (n < Net.HDR_SIZE - room + NetDevice.ETH_HLEN) {
            nic.rxDropped.increment(); // a runt
            return n;
        }
        if (room != 0) {
            headers.set(GuestMemory.U64, 0, 0L); // the header that asks nothing
            headers.set(GuestMemory.U32, 8, 0);
        }
        read.copyOut(room, headers, room, headers.byteSize() - room); // the header as read, the Ethernet header
        if (!nic.driverTakes(headers, 0, n, now)) {
            nic.rxDropped.increment(); // net-dev-9, net-dev-3: not for this driver
            return n;
        }
        if (!nic.filter().accepts(VirtualSwitch.mac(headers, Net.HDR_SIZE))) {
            nic.rxFiltered.increment();
            return n;
        }
        if (!Feature.NET_GUEST_CSUM.isSet(now)) {
            headers.set(ValueLayout.JAVA_BYTE, Net.HDR_FLAGS, (byte) 0);
        }
        int m = read.chainsFor(room + n);
        headers.set(GuestMemory.U16, Net.HDR_NUM_BUFFERS, (short) m);
        read.writeStart(headers, 0, Net.HDR_SIZE);
        read.commit(queue, m, room + n, mergeable);
        pair.rxFrames.lazySet(pair.rxFrames.get() + 1); // only the ring's owner writes them
        pair.rxRead.lazySet(pair.rxRead.get() + 1);
        return n;
    }

    /** What {@link #serve} returns for a frame of {@code length} bytes that is whole in the reader's spill. */
    static long spilled(long length) {
        return -2 - length;
    }

    /**
     * A frame not for this driver: queued before it turned the offload off (CTRL_GUEST_OFFLOADS_SET), or its
     * header rewritten by the sender since it was switched. The buffer goes back unused.
     */
    private int refuse(DeviceQueue queue) {
        queue.undoPop();
        nic.rxDropped.increment();
        return -1;
    }

    private int write(DescriptorChain chain, DeviceQueue queue, MemorySegment head, MemorySegment data, long at,
                      long length) throws VirtqueueException {
        if (!buffers.write(chain, queue, head, data, at, length, Feature.NET_MRG_RXBUF.isSet(nic.negotiated()))) {
            nic.rxDropped.increment(); // too large for what the driver offers: dropped, never truncated
            return -1;
        }
        pair.rxFrames.lazySet(pair.rxFrames.get() + 1); // only the ring's owner writes it
        return -1;
    }
}
