package io.jvirtio.devices.net;

import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.core.spec.Net;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A learning Ethernet switch between NICs in the machine: it remembers which port each source MAC came
 * from, forwards unicast frames to that port, and floods broadcast, multicast and unknown destinations
 * to every other port. Switching a frame allocates nothing and takes no lock (learning a new address
 * does, once); the receiving NIC copies what it keeps.
 *
 * <p>Offloads between guests, as a Linux bridge of TAP devices passes them: a port from {@link #offloadPort()}
 * carries every frame behind its virtio-net header, so its NIC offers checksum and segmentation offloads
 * ({@link #OFFLOADS}). A 64 KiB segment or a partial checksum goes as it is to a port whose receiver took that
 * offload (the driver's GUEST_* features, told with {@link NetBackend#acceptOffloads}), and is finished in
 * software ({@link SoftwareOffload}: checksum completed, segment cut) for one that did not, or for a plain port.
 */
public final class VirtualSwitch {
    private static final ValueLayout.OfInt BE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final ValueLayout.OfLong BE_LONG = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final ValueLayout.OfShort BE_SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    /**
     * The ports, replaced whole when one joins or leaves: flooding walks the array it read, with no iterator
     * object per frame (a list's iterator is not always optimized away on this path).
     */
    private volatile Port[] ports = new Port[0];
    /** Where each station address was last seen. */
    private final MacTable<Port> table = new MacTable<>();
    /** Per frame, on every sender's thread: counted without a locked instruction. */
    private final ThreadCounter forwarded = new ThreadCounter();
    private final ThreadCounter flooded = new ThreadCounter();
    private final ThreadCounter gathered = new ThreadCounter();
    private final AtomicLong finished = new AtomicLong();
    private final AtomicLong refused = new AtomicLong();

    /** What an offload port offers its NIC: all the switch can pass on or finish in software. */
    public static final long OFFLOADS = TapBackend.OFFLOADS | TapBackend.USO;
    /** A header, the frame's headers, a segment of up to 64 KiB. */
    private static final long SCRATCH = Net.HDR_SIZE + 256 + 65536;
    /** Where each sending thread cuts segments for receivers that did not take them (made once per thread). */
    private static final ThreadLocal<MemorySegment> SCRATCHES =
            ThreadLocal.withInitial(() -> java.lang.foreign.Arena.ofAuto().allocate(SCRATCH, 64));
    /**
     * Where each sending thread copies a frame before finishing it in software: finishing writes (a checksum, the
     * header), and the frame may lie in a guest's transmit buffer, which the device only reads (§2.7.4) and the
     * guest may rewrite meanwhile.
     */
    private static final ThreadLocal<MemorySegment> HELD =
            ThreadLocal.withInitial(() -> java.lang.foreign.Arena.ofAuto().allocate(SCRATCH, 64));

    /** Where each thread reads a gathered frame's addresses: destination and source, 12 bytes. */
    static final ThreadLocal<MemorySegment> ADDRESSES =
            ThreadLocal.withInitial(() -> java.lang.foreign.Arena.ofAuto().allocate(12));

    /** A new port of plain frames (no virtio-net header): no offloads; what arrives for it is finished. */
    public NetBackend port() {
        return join(new Port(false));
    }

    /**
     * A new port whose frames travel behind the virtio-net header both ways: give it to a NIC, which then
     * offers {@link #OFFLOADS}, or plug a header-carrying link into it.
     */
    public NetBackend offloadPort() {
        return join(new Port(true));
    }

    /**
     * Plugs {@code link} (a host TAP device, another switch's port) into a new port: what the switch sends to
     * that port goes out of {@code link}, and what arrives on {@code link} is switched like a NIC's frames.
     *
     * @return closing it unplugs the port and closes {@code link}
     */
    public Attached attach(NetBackend link) {
        long linkOffloads = link.offloads();
        NetBackend port = linkOffloads != 0 ? offloadPort() : port();
        if (linkOffloads != 0) {
            // a header-carrying link (a TAP device with IFF_VNET_HDR): the host kernel finishes whatever it is
            // sent, within what the link offers (HOST_*), and hands over what it may (GUEST_*), unfinished
            port.acceptOffloads(hostToGuest(linkOffloads));
            link.acceptOffloads(linkOffloads);
        }
        port.connect(link::transmit);
        link.connect(port::transmit);
        return new Attached(port, link);
    }

    private synchronized Port join(Port p) {
        Port[] ps = Arrays.copyOf(ports, ports.length + 1);
        ps[ps.length - 1] = p;
        ports = ps;
        return p;
    }

    private synchronized void leave(Port p) {
        ports = Arrays.stream(ports).filter(x -> x != p).toArray(Port[]::new);
    }

    /** The GUEST_* offloads that mean, for a receiver, what the HOST_* ones of {@code offloads} mean for a link. */
    static long hostToGuest(long offloads) {
        long g = 0;
        g |= Feature.NET_CSUM.isSet(offloads) ? Feature.NET_GUEST_CSUM.mask() : 0;
        g |= Feature.NET_HOST_TSO4.isSet(offloads) ? Feature.NET_GUEST_TSO4.mask() : 0;
        g |= Feature.NET_HOST_TSO6.isSet(offloads) ? Feature.NET_GUEST_TSO6.mask() : 0;
        g |= Feature.NET_HOST_ECN.isSet(offloads) ? Feature.NET_GUEST_ECN.mask() : 0;
        g |= Feature.NET_HOST_USO.isSet(offloads) ? Feature.maskOf(Feature.NET_GUEST_USO4, Feature.NET_GUEST_USO6) : 0;
        return g;
    }

    /** A link plugged into the switch by {@link #attach}. */
    public record Attached(NetBackend port, NetBackend link) implements AutoCloseable {
        @Override
        public void close() {
            port.close();
            link.close();
        }
    }

    /** Ports currently connected. */
    public int portCount() {
        return ports.length;
    }

    public long forwarded() {
        return forwarded.get();
    }

    public long flooded() {
        return flooded.get();
    }

    /**
     * Frames over several of a sending guest's buffers that went to their receiver from where they lay (copied
     * once, into the receiving ring), not gathered into a copy by the sending NIC first.
     */
    public long gathered() {
        return gathered.get();
    }

    /** Frames finished in software for a receiver that did not take their offload (each counted once). */
    public long finished() {
        return finished.get();
    }

    /** Frames whose header asked what their bytes cannot hold (dropped for receivers that needed it done). */
    public long refused() {
        return refused.get();
    }

    /** The 48-bit address at {@code offset} of {@code frame}. */
    static long mac(MemorySegment frame, long offset) {
        return (Integer.toUnsignedLong(frame.get(BE_INT, offset)) << 16) | Short.toUnsignedLong(frame.get(BE_SHORT, offset + 4));
    }

    static long mac(byte[] b, int at) {
        return mac(MemorySegment.ofArray(b), at);
    }

    /** The {@code length} bytes at {@code at} of {@code frame}, from {@code from}, to where they go. */
    private void switchFrame(Port from, MemorySegment frame, long at, long length) {
        int h = from.header ? Net.HDR_SIZE : 0;
        if (length < h + 14 || from.closed) {
            // a sender still inside its last frame as its port closes (a traffic source's last round): were it
            // switched, its source address would be learned again for a port no longer on the switch
            return;
        }
        // the group bit is the first byte's lowest: bit 40 of the address read as a number
        long src = mac(frame, at + h + 6);
        if ((src & 1L << 40) == 0) {
            table.learn(src, from);
        }
        long dst = mac(frame, at + h);
        if ((dst & 1L << 40) == 0) {
            Port to = table.lookup(dst);
            if (to != null) {
                if (to != from && to.receiver != null) {
                    forwarded.increment();
                    deliver(from, to, frame, at, length);
                }
                return;
            }
        }
        flooded.increment();
        for (Port p : ports) {
            NetBackend.Receiver r = p.receiver;
            if (p != from && r != null && r.wants(dst)) {
                deliver(from, p, frame, at, length);
            }
        }
    }

    /**
     * A frame over several of a sending guest's buffers (a Linux guest's TSO segment: headers, then pages), behind
     * the header its NIC checked, to one port whose receiver takes it as it lies — a NIC writing it straight into its
     * ring, one copy in all. Anything else — a group or unknown address (a flood), a receiver that cannot take it
     * now, a header it did not accept (finished here in a copy), a UDP segment (its EtherType decides) — is left to
     * the sending NIC: false, and it gathers the frame into a copy and transmits that.
     */
    private boolean switchGathered(Port from, MemorySegment header, DescriptorChain chain, long offset, long length) {
        if (!from.header || from.closed || length < 14) {
            return false;
        }
        MemorySegment a = ADDRESSES.get();
        if (chain.readReadable(offset, a, 0, 12) < 12) {
            return false;
        }
        long dst = mac(a, 0);
        long src = mac(a, 6);
        if ((dst & 1L << 40) != 0) {
            return false;
        }
        Port to = table.lookup(dst);
        if (to == null || to == from || !to.header) {
            return false;
        }
        NetBackend.Receiver r = to.receiver;
        int fg = Offloads.flagsAndGso(header, 0);
        if (r == null || fg >>> 8 == Offloads.GSO_UDP_L4 || !Offloads.driverTakes(header, 0, fg, to.accepted)
                || !r.receiveGathered(header, chain, offset, length)) {
            return false;
        }
        if ((src & 1L << 40) == 0) {
            table.learn(src, from);
        }
        forwarded.increment();
        gathered.increment();
        return true;
    }

    /**
     * The frames of {@code burst} from {@code from}, each switched as {@link #switchFrame} would, in order: a run
     * of frames to one destination address is looked up, counted and delivered once, as a run, so a receiving NIC
     * writes it into its ring with one set of checks. A run ends before a frame whose source is the run's
     * destination, which learning that source could send elsewhere: frames go where they would one at a time.
     */
    private void switchBurst(Port from, FrameBurst burst) {
        int h = from.header ? Net.HDR_SIZE : 0;
        int n = burst.count();
        if (from.closed) {
            return; // as for one frame: nothing a closing port sends is learned or switched
        }
        int runStart = 0;
        long runDst = -1; // no address: set by the run's first frame
        long lastSrc = -1;
        for (int i = 0; i < n; i++) {
            if (burst.length(i) < h + 14) {
                if (i > runStart) {
                    route(from, runDst, burst, runStart, i);
                }
                runStart = i + 1; // too short to switch: dropped, as one frame is
                continue;
            }
            // both addresses, as mac() reads them, in two loads (the frame holds 14 bytes: the second ends there)
            MemorySegment frame = burst.data(i);
            long at = burst.offset(i) + h;
            long dst = frame.get(BE_LONG, at) >>> 16;
            long src = frame.get(BE_LONG, at + 6) >>> 16;
            if (dst == runDst && src == lastSrc) {
                continue; // the frame before's addresses: the same run, its source learned
            }
            if (i > runStart && (dst != runDst || src == runDst)) {
                route(from, runDst, burst, runStart, i);
                runStart = i;
            }
            runDst = dst;
            lastSrc = src;
            if ((src & 1L << 40) == 0) {
                table.learn(src, from);
            }
        }
        if (n > runStart) {
            route(from, runDst, burst, runStart, n);
        }
    }

    /** Frames {@code start} to {@code end} of {@code burst}, all to {@code dst}: forwarded or flooded together. */
    private void route(Port from, long dst, FrameBurst burst, int start, int end) {
        if ((dst & 1L << 40) == 0) {
            Port to = table.lookup(dst);
            if (to != null) {
                if (to != from && to.receiver != null) {
                    forwarded.add(end - start);
                    deliver(from, to, burst, start, end);
                }
                return;
            }
        }
        flooded.add(end - start);
        for (Port p : ports) {
            NetBackend.Receiver r = p.receiver;
            if (p != from && r != null && r.wants(dst)) {
                deliver(from, p, burst, start, end);
            }
        }
    }

    /**
     * Frames {@code start} to {@code end} of {@code burst} from {@code from} to {@code to}: between ports of one
     * kind, runs of frames the receiver takes as they are go on together; every other frame as {@link #deliver}
     * hands on one (finished in software, or put behind a header or taken from behind one).
     */
    private void deliver(Port from, Port to, FrameBurst burst, int start, int end) {
        NetBackend.Receiver r = to.receiver;
        if (r == null) {
            return;
        }
        if (from.header != to.header) {
            for (int i = start; i < end; i++) {
                deliver(from, to, burst.data(i), burst.offset(i), burst.length(i));
            }
            return;
        }
        if (!from.header) {
            r.receive(burst, start, end);
            return;
        }
        long accepted = to.accepted;
        int run = start;
        for (int i = start; i < end; i++) {
            if (!Offloads.driverTakes(burst.data(i), burst.offset(i), accepted)) {
                if (i > run) {
                    r.receive(burst, run, i);
                }
                deliver(from, to, burst.data(i), burst.offset(i), burst.length(i));
                run = i + 1;
            }
        }
        if (end > run) {
            r.receive(burst, run, end);
        }
    }

    /**
     * {@code frame} from {@code from} to {@code to}, in {@code to}'s format: as it is between ports of one kind
     * when the receiver takes what its header asks; else finished in software, header by header.
     */
    private void deliver(Port from, Port to, MemorySegment frame, long at, long length) {
        NetBackend.Receiver r = to.receiver;
        if (r == null) {
            return;
        }
        if (!from.header) {
            if (!to.header) {
                r.receive(frame, at, length);
            } else {
                // a plain frame to a header port: behind a header that asks nothing (a copy; plain ports are
                // the responder and links without the header, never the guest-to-guest path)
                MemorySegment s = SCRATCHES.get();
                int h = Net.HDR_SIZE;
                if (length + h <= s.byteSize()) {
                    s.set(ValueLayout.JAVA_LONG_UNALIGNED, 0, 0L); // a header that asks nothing
                    s.set(ValueLayout.JAVA_INT_UNALIGNED, 8, 0);
                    MemorySegment.copy(frame, at, s, h, length);
                    r.receive(s, 0, length + h);
                }
            }
            return;
        }
        if (to.header && Offloads.driverTakes(frame, at, to.accepted)) {
            r.receive(frame, at, length);
            return;
        }
        if (!to.header && !Offloads.asksAnything(frame, at)) {
            r.receive(frame, at + Net.HDR_SIZE, length - Net.HDR_SIZE);
            return;
        }
        finished.incrementAndGet();
        MemorySegment held = HELD.get();
        if (length > held.byteSize()) {
            refused.incrementAndGet();
            return;
        }
        MemorySegment.copy(frame, at, held, 0, length);
        if (!SoftwareOffload.finish(held, length, SCRATCHES.get(), to)) {
            refused.incrementAndGet();
        }
    }

    /** A port: a backend for its NIC, and where frames finished in software for it go ({@link #frame}). */
    private final class Port implements NetBackend, SoftwareOffload.Sink {
        final boolean header;
        volatile Receiver receiver;
        /** What this port's receiver takes (GUEST_* features); until told, nothing: everything is finished. */
        volatile long accepted;
        volatile boolean closed;

        Port(boolean header) {
            this.header = header;
        }

        @Override
        public void transmit(MemorySegment buffer, long offset, long length) {
            switchFrame(this, buffer, offset, length);
        }

        @Override
        public void transmit(int queue, FrameBurst burst) {
            switchBurst(this, burst);
        }

        @Override
        public boolean transmitGathered(int queue, MemorySegment header, DescriptorChain chain, long offset,
                                        long length) {
            return switchGathered(this, header, chain, offset, length);
        }

        @Override
        public void connect(Receiver receiver) {
            this.receiver = receiver;
        }

        @Override
        public long offloads() {
            return header ? OFFLOADS : 0;
        }

        /** A frame finished for this port: behind its header-that-asks-nothing, or without it for a plain port. */
        @Override
        public void frame(MemorySegment buffer, long length) {
            Receiver r = receiver;
            if (r == null) {
                return;
            }
            int h = Net.HDR_SIZE;
            if (header) {
                r.receive(buffer, 0, length);
            } else {
                r.receive(buffer, h, length - h); // plain ports: the responder, links without the header
            }
        }

        @Override
        public void acceptOffloads(long features) {
            accepted = features;
        }

        @Override
        public void close() {
            closed = true; // first: nothing this port sends from now on is learned or switched
            leave(this);
            table.forget(this);
            receiver = null;
        }
    }
}
