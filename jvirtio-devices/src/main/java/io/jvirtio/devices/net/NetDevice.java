package io.jvirtio.devices.net;

import io.jvirtio.core.spec.Net;
import io.jvirtio.core.device.ConfigSpace;
import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.Poller;
import io.jvirtio.devices.PollerGroup;
import io.jvirtio.devices.QueueDevice;
import io.jvirtio.devices.QueueThread;
import io.jvirtio.devices.RxWorker;

import java.lang.foreign.MemorySegment;

/**
 * The network device (VIRTIO 1.2 §5.1): receive/transmit queue pairs plus a control queue, the 12-byte
 * {@code virtio_net_hdr} of VERSION_1, MAC, STATUS (link state), MRG_RXBUF (a frame may span several
 * receive buffers, {@code num_buffers} says how many), CTRL_VQ with CTRL_RX (promiscuous / all-multicast)
 * and the MAC filter table, CTRL_MAC_ADDR, and MQ (frames are steered over the active pairs by address
 * hash). Frames for the guest wait in a bounded queue per pair; when it is full, or a frame is larger
 * than the buffers the driver offers, the frame is dropped and counted — never truncated.
 */
public final class NetDevice extends QueueDevice {
    static final int QUEUE_SIZE = 256;
    /**
     * Frames that can wait per queue pair for the driver's receive buffers; one more is dropped, as a NIC
     * drops under overload. A sender that must lose nothing keeps fewer than this in flight.
     */
    public static final int INBOUND_LIMIT = 512;
    /** The largest frame an inbound slot holds (jumbo frames fit). */
    public static final int MAX_INBOUND_FRAME = 9216;

    /** The Ethernet header, which the MTU does not count. */
    static final int ETH_HLEN = 14;
    /** With GUEST_TSO a frame for the guest may be a 64 KiB segment, behind its virtio-net header. */
    static final int MAX_SEGMENT = 65536 + ETH_HLEN + Net.HDR_SIZE;
    /** Segments that may wait per pair: as many bytes as {@link #INBOUND_LIMIT} frames of 9 KiB, about. */
    static final int SEGMENT_LIMIT = 64;

    private final NetBackend backend;
    /** The offloads the backend carries; not 0: frames travel behind their virtio-net header both ways. */
    private final long offloads;
    private final int maxPairs;
    private final int mtu;
    private final ConfigSpace config = new ConfigSpace(Net.CONFIG_SIZE);
    private final QueuePair[] pairs;
    private volatile boolean active;
    private volatile boolean closed;
    private volatile long features;
    /**
     * {@link #features} with the GUEST_* offloads the driver takes now: all it negotiated, until it changes them
     * with VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET (§5.1.6.5.6). What reaches the driver is held to these.
     */
    private volatile long receiveFeatures;
    private volatile int activePairs = 1;
    private final RxFilter filter;
    /** Serve the pairs' queues by polling instead of a thread each ({@link #pollWith}); null: threads. */
    private volatile PollerGroup pollers;
    /** The poller of pair 0 in {@code pollers}; pair p has the p-th after it. */
    private volatile int firstPoller;

    /** Counted by whoever drops: senders' threads too, so per thread and without a locked instruction. */
    public final ThreadCounter rxDropped = new ThreadCounter();
    public final ThreadCounter rxFiltered = new ThreadCounter();
    public final ThreadCounter txDropped = new ThreadCounter();
    /**
     * Frames that waited in a pair's queue for the driver's buffers — copied there and again into the ring — because
     * the ring had no buffer then, or its thread (its poller) was not the one holding the frame.
     */
    public final ThreadCounter rxQueued = new ThreadCounter();

    /** Frames delivered to the driver, over every pair. */
    public long rxFrames() {
        long n = 0;
        for (QueuePair p : pairs) {
            n += p.rxFrames.get();
        }
        return n;
    }

    /**
     * Of {@link #rxFrames()}, those the backend read straight into the driver's buffers (a TAP device's frames
     * while the ring had buffers and nothing waited: one copy, the kernel's).
     */
    public long rxReadFrames() {
        long n = 0;
        for (QueuePair p : pairs) {
            n += p.rxRead.get();
        }
        return n;
    }

    /** Frames the driver sent, over every pair. */
    public long txFrames() {
        long n = 0;
        for (QueuePair p : pairs) {
            n += p.txFrames.get();
        }
        return n;
    }

    /** Counts VQ_PAIRS_SET changes, for the handshake with the receive threads. */
    private volatile long pairsChange;

    /**
     * @param backend where frames go and come from; the device owns it and closes it in {@link #close()}
     * @param mac     the station address, 6 bytes
     * @param pairs   receive/transmit queue pairs (more than one offers VIRTIO_NET_F_MQ)
     */
    public NetDevice(NetBackend backend, byte[] mac, int pairs) {
        this(backend, mac, pairs, Net.MTU);
    }

    /**
     * A NIC whose link carries frames of up to {@code mtu} bytes of payload (VIRTIO_NET_F_MTU, §5.1.4): a
     * driver that negotiates it sends no larger frame and is given none (net-dev-3).
     *
     * @param mtu 68 (the IPv4 minimum) up to {@value #MAX_INBOUND_FRAME} - 14, e.g. 9000 for jumbo frames
     */
    public NetDevice(NetBackend backend, byte[] mac, int pairs, int mtu) {
        if (mac.length != 6 || pairs < 1 || pairs > 64) {
            throw new IllegalArgumentException("need a 6-byte MAC and 1..64 queue pairs");
        }
        if (mtu < 68 || mtu > MAX_INBOUND_FRAME - ETH_HLEN) {
            throw new IllegalArgumentException("MTU " + mtu + " not in 68.." + (MAX_INBOUND_FRAME - ETH_HLEN));
        }
        this.mtu = mtu;
        this.backend = backend;
        this.offloads = backend.offloads();
        this.maxPairs = pairs;
        this.pairs = new QueuePair[pairs];
        boolean segments = (offloads & Feature.maskOf(Feature.NET_GUEST_TSO4, Feature.NET_GUEST_TSO6,
                Feature.NET_GUEST_USO4, Feature.NET_GUEST_USO6)) != 0;
        for (int i = 0; i < pairs; i++) {
            this.pairs[i] = segments ? new QueuePair(SEGMENT_LIMIT, MAX_SEGMENT)
                    : new QueuePair(INBOUND_LIMIT, MAX_INBOUND_FRAME + (offloads != 0 ? Net.HDR_SIZE : 0));
        }
        config.store(Net.CFG_MAC, mac);
        config.store(Net.CFG_STATUS, Net.S_LINK_UP, 2);
        config.store(Net.CFG_MAX_VIRTQUEUE_PAIRS, pairs, 2);
        config.store(Net.CFG_MTU, mtu, 2);
        this.filter = new RxFilter(VirtualSwitch.mac(mac, 0));
        if (pairs > 1 && backend.queues() == pairs) {
            for (int q = 0; q < pairs; q++) {
                backend.connect(q, new Inbound(this, q)); // the backend's queue q: pair q
            }
        } else {
            backend.connect(new Inbound(this, -1));
        }
    }

    /** Whether queue {@code index} takes buffers now (for the {@link Transmitter}s and {@link FrameSource}s). */
    boolean enabled(int index) {
        return queueEnabled(index);
    }

    /** The features negotiated (for the {@link Transmitter}s and {@link FrameSource}s). */
    long negotiated() {
        return features;
    }

    /** The GUEST_* offloads the driver takes now (VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET). */
    long receiveFeatures() {
        return receiveFeatures;
    }

    /** The queue pairs in use (VQ_PAIRS_SET). */
    int activePairs() {
        return activePairs;
    }

    /** The count of VQ_PAIRS_SET changes, which each pair's receive side acknowledges ({@link #shrinkTo}). */
    long pairsChange() {
        return pairsChange;
    }

    /** Whether {@link #close()} ran (its connection ended): a NIC no longer to count in statistics. */
    public boolean isClosed() {
        return closed;
    }

    /** Link state in {@code status} (VIRTIO_NET_F_STATUS): a configuration change for the driver. */
    public void setLinkUp(boolean up) {
        config.update(Net.CFG_STATUS, up ? Net.S_LINK_UP : 0, 2);
    }

    @Override
    public DeviceType type() {
        return DeviceType.NET;
    }

    @Override
    public long deviceFeatures() {
        long f = RING_FEATURES | IN_ORDER | Feature.maskOf(Feature.NET_MAC,
                Feature.NET_STATUS, Feature.NET_MRG_RXBUF, Feature.NET_CTRL_VQ, Feature.NET_CTRL_RX,
                Feature.NET_CTRL_MAC_ADDR, Feature.NET_MTU);
        if (offloads != 0) {
            f |= offloads | Feature.NET_CTRL_GUEST_OFFLOADS.mask(); // the backend follows a change at run time
        }
        return maxPairs > 1 ? f | Feature.NET_MQ.mask() : f;
    }

    @Override
    public boolean acceptFeatures(long features) {
        // §5.1.3.1: CTRL_RX, CTRL_MAC_ADDR and MQ need the control queue; the offloads their own features.
        boolean ctrl = Feature.NET_CTRL_VQ.isSet(features);
        return (ctrl || (features & Feature.maskOf(Feature.NET_CTRL_RX, Feature.NET_CTRL_MAC_ADDR, Feature.NET_MQ,
                Feature.NET_CTRL_GUEST_OFFLOADS)) == 0)
                && Offloads.consistent(features);
    }

    @Override
    public int numQueues() {
        return 2 * maxPairs + 1;
    }

    @Override
    public int maxQueueSize(int index) {
        return QUEUE_SIZE;
    }

    /** §5.1.2: the control queue is queue 2N, with N = max_virtqueue_pairs only if MQ was negotiated. */
    private int ctrlIndex() {
        return Feature.NET_MQ.isSet(features) ? 2 * maxPairs : 2;
    }

    @Override
    public ConfigSpace config() {
        return config;
    }

    @Override
    protected void onActivate(DeviceContext ctx) {
        features = ctx.features();
        receiveFeatures = ctx.features();
        activePairs = 1;
        backend.activeQueues(1);
        if (offloads != 0) {
            backend.acceptOffloads(ctx.features());
        }
        active = true;
    }

    @Override
    protected QueueThread worker(int index, DeviceQueue queue, Interrupt interrupt, DeviceContext ctx) {
        if (index == ctrlIndex()) {
            return Feature.NET_CTRL_VQ.isSet(features) ? requestWorker(index, queue, interrupt, this::control, ctx) : null;
        }
        int pair = index / 2;
        if (pair >= (Feature.NET_MQ.isSet(features) ? maxPairs : 1)) {
            return null; // a queue the negotiated features do not give the device
        }
        QueueThread t;
        if (index % 2 == 0) {
            RxWorker rx = receiveWorker(index, queue, interrupt, new FrameSource(this, pairs[pair], offloads, index), ctx);
            pairs[pair].receiver = rx;
            t = rx;
        } else {
            t = requestWorker(index, queue, interrupt,
                    new Transmitter(this, backend, offloads, index, pairs[pair].txFrames), ctx);
        }
        PollerGroup g = pollers;
        if (g != null) {
            t.drivenBy(g.poller(firstPoller + pair)); // both rings of a pair on one poller
        }
        return t;
    }

    /** {@link #pollWith(PollerGroup)} with one poller: {@code p} serves every pair. */
    public NetDevice pollWith(Poller p) {
        if (p == null) {
            return this;
        }
        return pollWith(new PollerGroup(p), 0);
    }

    /**
     * Has {@code group} serve this NIC's receive and transmit queues by busy-polling, with other NICs' (the DPDK
     * model for dedicated cores), from the next time they start: each pair on one of its pollers, the pairs over
     * them in turn, starting one poller after the NIC before this one; the control queue keeps its thread. A
     * backend that reads frames on threads of its own (a TAP device) has each pair's poller read that pair's from now
     * on.
     */
    public NetDevice pollWith(PollerGroup group) {
        return group == null ? this : pollWith(group, group.claim());
    }

    private NetDevice pollWith(PollerGroup group, int first) {
        this.firstPoller = first;
        this.pollers = group;
        for (int q = 0; q < backend.queues(); q++) {
            // a TAP of its own: read by the pair's poller, straight into the polled rings
            backend.readIn(q, group.poller(first + q));
        }
        return this;
    }

    @Override
    protected void onReset() {
        active = false;
        for (QueuePair p : pairs) {
            p.inbound.clear();
        }
        filter.reset();
        activePairs = 1;
        backend.activeQueues(1);
        features = 0;
        receiveFeatures = 0;
    }

    /**
     * SEND_RARP: a RARP request from {@code mac} to everyone (ethertype 0x8035, the frame QEMU's
     * self-announcement sends), so switches learn the migrated guest's port at once.
     */
    @Override
    public boolean announce(byte[] mac) {
        if (mac.length != 6) {
            return false;
        }
        int h = offloads != 0 ? Net.HDR_SIZE : 0; // behind a zero header: no offload asked
        byte[] f = new byte[h + 60];
        java.util.Arrays.fill(f, h, h + 6, (byte) 0xff);
        System.arraycopy(mac, 0, f, h + 6, 6);
        f[h + 12] = (byte) 0x80;
        f[h + 13] = 0x35;
        f[h + 15] = 1;                 // htype: Ethernet
        f[h + 16] = 0x08;              // ptype: IPv4
        f[h + 18] = 6;                 // hlen
        f[h + 19] = 4;                 // plen
        f[h + 21] = 3;                 // op: reverse request
        System.arraycopy(mac, 0, f, h + 22, 6); // sender hardware address
        System.arraycopy(mac, 0, f, h + 32, 6); // target hardware address
        backend.transmit(java.lang.foreign.MemorySegment.ofArray(f), f.length);
        return true;
    }

    /**
     * Stops the device, closes its backend (which it owns: a switch port leaves the switch) and frees the
     * frame queues at once — megabytes of native memory a connection must not leave to the garbage collector.
     * A sender that took the port's receiver just before the port closed may still be offering a frame: the
     * queues' shared arena makes that access fail rather than touch freed memory, and {@link #receive} drops it.
     */
    @Override
    public void close() {
        closed = true;
        reset();
        backend.close();
        for (QueuePair p : pairs) {
            p.inbound.close();
        }
    }

    /** Whether the device runs (DRIVER_OK, not reset since): frames reach its driver only then. */
    boolean isActive() {
        return active;
    }

    /** The offloads the backend carries; not 0: frames come behind their virtio-net header. */
    long offloads() {
        return offloads;
    }

    RxFilter filter() {
        return filter;
    }

    QueuePair pair(int p) {
        return pairs[p];
    }

    /** Frames wait for pair {@code p}'s receive queue: its thread (or poller) delivers them. */
    void wakeReceiver(int p) {
        wake(2 * p);
    }

    /**
     * Whether the driver may be given the frame of {@code length} bytes at {@code at}: net-dev-3, with
     * VIRTIO_NET_F_MTU no frame larger than the link's MTU (a segment the driver accepted with GUEST_TSO is not a
     * frame on the link); net-dev-9, behind the backend's header, no offload the driver did not take.
     */
    boolean driverTakes(MemorySegment frame, long at, long length, long receiveFeatures) {
        if (offloads == 0) {
            return withinMtu(false, length);
        }
        int fg = Offloads.flagsAndGso(frame, at);
        return withinMtu(fg >>> 8 != 0, length) && Offloads.driverTakes(frame, at, fg, receiveFeatures);
    }

    /**
     * The largest frame, its header too, the driver may be given with {@code receiveFeatures}: a 64 KiB segment
     * with GUEST_TSO4/6 or GUEST_USO4/6, else a frame of the MTU with a VLAN tag. For how much to read ahead.
     */
    long largestFrame(long receiveFeatures) {
        return (receiveFeatures & GUEST_SEGMENTS) != 0 ? MAX_SEGMENT : Net.HDR_SIZE + ETH_HLEN + 4 + mtu;
    }

    private static final long GUEST_SEGMENTS = Feature.maskOf(Feature.NET_GUEST_TSO4, Feature.NET_GUEST_TSO6,
            Feature.NET_GUEST_USO4, Feature.NET_GUEST_USO6);

    /** net-dev-3 for a frame of {@code length} bytes (its header too, with offloads), a segment or not. */
    boolean withinMtu(boolean segment, long length) {
        int h = offloads != 0 ? Net.HDR_SIZE : 0;
        return segment || length <= h + ETH_HLEN + mtu || !Feature.NET_MTU.isSet(features);
    }

    /** Control queue (§5.1.6.5): class, command, data; the device writes one ack byte. */
    private int control(DescriptorChain chain) {
        if (chain.writableBytes() < 1) {
            return 0;
        }
        int n = (int) Math.min(chain.readableBytes(), 2 + 8 + 64 * 6 * 2L + 64);
        byte[] cmd = new byte[n];
        chain.readReadable(0, MemorySegment.ofArray(cmd));
        int ack = n < 2 ? Net.ERR : command(cmd[0] & 0xff, cmd[1] & 0xff, cmd, n, chain.readableBytes());
        chain.writeWritable(chain.writableBytes() - 1, MemorySegment.ofArray(new byte[] {(byte) ack}));
        return 1;
    }

    private int command(int cls, int cmd, byte[] b, int n, long total) {
        switch (cls) {
            case Net.CTRL_RX -> {
                if (!Feature.NET_CTRL_RX.isSet(features) || n < 3) {
                    return Net.ERR;
                }
                return filter.rxMode(cmd, b[2] != 0);
            }
            case Net.CTRL_MAC -> {
                if (cmd == Net.CTRL_MAC_ADDR_SET && Feature.NET_CTRL_MAC_ADDR.isSet(features) && n == 8) {
                    byte[] m = java.util.Arrays.copyOfRange(b, 2, 8);
                    config.store(Net.CFG_MAC, m); // net-dev-13: the config first, then the ack
                    filter.mac(VirtualSwitch.mac(m, 0));
                    return Net.OK;
                }
                if (cmd == Net.CTRL_MAC_TABLE_SET && Feature.NET_CTRL_RX.isSet(features)) {
                    return filter.macTable(b, n, total);
                }
                return Net.ERR;
            }
            case Net.CTRL_GUEST_OFFLOADS -> {
                if (cmd != Net.CTRL_GUEST_OFFLOADS_SET || !Feature.NET_CTRL_GUEST_OFFLOADS.isSet(features) || n != 10) {
                    return Net.ERR;
                }
                long wanted = MemorySegment.ofArray(b).get(java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED, 2);
                long next = Offloads.withGuestOffloads(features, wanted);
                if (next < 0) {
                    return Net.ERR; // an offload not negotiated, or a set that breaks §5.1.3.1's dependencies
                }
                receiveFeatures = next;
                backend.acceptOffloads(next);
                return Net.OK;
            }
            case Net.CTRL_MQ -> {
                if (cmd != Net.CTRL_MQ_VQ_PAIRS_SET || !Feature.NET_MQ.isSet(features) || n != 4) {
                    return Net.ERR;
                }
                int want = (b[2] & 0xff) | (b[3] & 0xff) << 8;
                // §5.1.6.5.5: 1 ≤ virtqueue_pairs ≤ max_virtqueue_pairs, else the device answers ERR.
                if (want < 1 || want > maxPairs) {
                    return Net.ERR;
                }
                shrinkTo(want);
                return Net.OK;
            }
            default -> {
                return Net.ERR;
            }
        }
    }

    /**
     * §5.1.6.5.5 (net-dev-16): once the ack of VQ_PAIRS_SET is in the used ring, no frame may reach a receive
     * queue beyond the new count. New frames are steered by the new count at once; frames already waiting
     * for a removed pair are dropped by that pair's own receive thread (the one consumer of its queue), and
     * the command is acknowledged only after each running one has done so.
     */
    private void shrinkTo(int want) {
        // activePairs first: a receive thread that reads the new change number then reads the new count
        activePairs = want;
        backend.activeQueues(want); // the host's flows to the pairs in use from now on
        long change = pairsChange + 1;
        pairsChange = change;
        long deadline = System.nanoTime() + 1_000_000_000L;
        for (int p = want; p < maxPairs; p++) {
            wake(2 * p);
            while (serving(2 * p) && pairs[p].seenPairsChange < change && System.nanoTime() < deadline) {
                Thread.onSpinWait();
            }
        }
    }
}
