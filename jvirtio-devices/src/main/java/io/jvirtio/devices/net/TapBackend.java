package io.jvirtio.devices.net;

import io.jvirtio.core.os.NativeException;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.Poller;

import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;

/**
 * A host TAP device as a NIC's backend (Linux {@code /dev/net/tun}, {@code IFF_TAP | IFF_NO_PI}): frames
 * the guest transmits are written to the TAP fd from where they lie in its memory (one {@code writev}, a frame
 * over several buffers too) and appear on the host interface; frames the host sends
 * out of that interface are read by a thread and delivered to the NIC. Needs CAP_NET_ADMIN; bring the
 * interface up with {@code ip link set NAME up}. A TAP device the process created disappears when it closes.
 *
 * <p>With the virtio-net header ({@code IFF_VNET_HDR}, {@code TUNSETVNETHDRSZ} 12) the TAP carries offloads
 * both ways, as QEMU's {@code -netdev tap,vnet_hdr=on}: the guest's 64 KiB TCP segments and partial checksums
 * go to the host kernel, which finishes them, and the host hands over coalesced segments and unfinished
 * checksums as far as the driver accepted them ({@code TUNSETOFFLOAD}).
 *
 * <p>With several queues ({@code IFF_MULTI_QUEUE}) each queue is a descriptor of its own with its own reader
 * thread, for one queue pair of the NIC: the kernel spreads the host's flows over them, and nothing is shared
 * between them on the frame path.
 */
public final class TapBackend implements NetBackend {
    /** The offloads a TAP with the virtio-net header carries on any kernel. */
    static final long OFFLOADS = Feature.maskOf(Feature.NET_CSUM, Feature.NET_GUEST_CSUM, Feature.NET_HOST_TSO4,
            Feature.NET_HOST_TSO6, Feature.NET_HOST_ECN, Feature.NET_GUEST_TSO4, Feature.NET_GUEST_TSO6,
            Feature.NET_GUEST_ECN);
    /**
     * UDP segmentation, where the kernel has it (Linux 6.2+, Tun.TUN_F_USO4/6): the host takes the guest's large
     * UDP datagrams (HOST_USO) and hands over its own uncut (GUEST_USO4/6). Probed with TUNSETOFFLOAD at open.
     */
    static final long USO = Feature.maskOf(Feature.NET_HOST_USO, Feature.NET_GUEST_USO4, Feature.NET_GUEST_USO6);
    /** Queues a multi-queue TAP device may have (the kernel's MAX_TAP_QUEUES). */
    public static final int MAX_QUEUES = 256;

    private final String name;
    private final boolean vnetHeader;
    /** Whether the kernel takes Tun.TUN_F_USO4/6 (a kernel before 6.2 refuses them with EINVAL). */
    private final boolean uso;
    private final TapQueue[] queues;
    private volatile boolean open = true;

    /** A TAP device carrying plain frames; see {@link #TapBackend(String, boolean, int)}. */
    public TapBackend(String name) throws NativeException {
        this(name, false, 1);
    }

    /** A TAP device with one queue; see {@link #TapBackend(String, boolean, int)}. */
    public TapBackend(String name, boolean vnetHeader) throws NativeException {
        this(name, vnetHeader, 1);
    }

    /**
     * Opens (creating if needed) the TAP interface {@code name}; a name with {@code %d} (such as {@code jv%d})
     * is a template the kernel completes with the first free number — {@link #name()} tells which.
     *
     * @param vnetHeader frames carry the virtio-net header, and with it the offloads of {@link #offloads()}
     * @param queues     1, or up to {@link #MAX_QUEUES} queues of a multi-queue device, one per queue pair
     * @throws NativeException naming {@code open} or {@code ioctl} when /dev/net/tun is missing or the
     *                         process lacks CAP_NET_ADMIN
     */
    public TapBackend(String name, boolean vnetHeader, int queues) throws NativeException {
        byte[] n = name.getBytes(StandardCharsets.US_ASCII);
        if (n.length == 0 || n.length > 15) {
            throw new IllegalArgumentException("interface name '" + name + "' must be 1..15 characters");
        }
        if (queues < 1 || queues > MAX_QUEUES) {
            throw new IllegalArgumentException("TAP queues " + queues + " not in 1.." + MAX_QUEUES);
        }
        this.vnetHeader = vnetHeader;
        this.queues = new TapQueue[queues];
        short flags = (short) (Tun.IFF_TAP | Tun.IFF_NO_PI | (vnetHeader ? Tun.IFF_VNET_HDR : 0)
                | (queues > 1 ? Tun.IFF_MULTI_QUEUE : 0));
        String actual = name;
        try {
            for (int q = 0; q < queues; q++) {
                // the first open names (or creates) the device; the others attach to it by its actual name
                Tun.Opened o = Tun.open(q == 0 ? n : actual.getBytes(StandardCharsets.US_ASCII), flags, vnetHeader);
                actual = o.name();
                this.queues[q] = new TapQueue(actual, q, o.fd());
            }
        } catch (NativeException e) {
            for (TapQueue q : this.queues) {
                if (q != null) {
                    q.close();
                }
            }
            throw e;
        }
        this.name = actual;
        this.uso = vnetHeader && Tun.probeUso(this.queues[0].fd);
    }

    /**
     * From now on {@code poller} reads the frames of TAP queue {@code queue} in its rounds, the queue's reader thread
     * only waking it when it sleeps and a frame comes: frames then go straight into the NIC's polled rings, which
     * only their poller writes into — from a reader thread they would wait in the NIC's queue for the poller, copied
     * twice more. The model of DPDK's TAP PMD on a polling lcore.
     */
    @Override
    public void readIn(int queue, Poller poller) {
        queues[queue].readBy(poller);
    }

    /**
     * {@inheritDoc} A multi-queue TAP device's queues from {@code n} on are detached ({@code TUNSETQUEUE}) and
     * the others attached: the kernel spreads the host's flows over the attached ones only, each read for the
     * pair that uses it — a frame on a queue of an unused pair would go to another pair's ring, from a thread (or
     * a poller) that is not that ring's. A detached queue is still polled (it says nothing) and read again once
     * attached; a poller does not read it meanwhile.
     */
    @Override
    public synchronized void activeQueues(int n) {
        if (queues.length == 1 || !open) {
            return; // TUNSETQUEUE is for multi-queue devices; a single queue is always attached
        }
        for (int q = 0; q < queues.length; q++) {
            queues[q].attach(q < Math.max(n, 1));
        }
    }

    public String name() {
        return name;
    }

    @Override
    public int queues() {
        return queues.length;
    }

    @Override
    public long offloads() {
        return vnetHeader ? OFFLOADS | (uso ? USO : 0) : 0;
    }

    /** TUNSETOFFLOAD from the driver's GUEST_* features: the host finishes what the guest cannot. */
    @Override
    public void acceptOffloads(long features) {
        if (!vnetHeader || !open) {
            return;
        }
        int tun = 0;
        if (Feature.NET_GUEST_CSUM.isSet(features)) {
            // the kernel segments for us only together with partial checksums (TUN_F_CSUM)
            tun = Tun.TUN_F_CSUM;
            tun |= Feature.NET_GUEST_TSO4.isSet(features) ? Tun.TUN_F_TSO4 : 0;
            tun |= Feature.NET_GUEST_TSO6.isSet(features) ? Tun.TUN_F_TSO6 : 0;
            boolean tso = (tun & (Tun.TUN_F_TSO4 | Tun.TUN_F_TSO6)) != 0;
            tun |= Feature.NET_GUEST_ECN.isSet(features) && tso ? Tun.TUN_F_TSO_ECN : 0;
            // Linux gives the reader uncut UDP datagrams only with both (tun.c set_offload: "for now USO4 and
            // USO6 should work simultaneously"); a driver that took one gets its datagrams cut, as without USO
            if (uso && Feature.NET_GUEST_USO4.isSet(features) && Feature.NET_GUEST_USO6.isSet(features)) {
                tun |= Tun.TUN_F_USO4 | Tun.TUN_F_USO6;
            }
        }
        for (TapQueue q : queues) {
            q.acceptOffloads(tun);
        }
    }

    @Override
    public void transmit(MemorySegment buffer, long offset, long length) {
        queues[0].transmit(buffer, offset, length);
    }

    @Override
    public void transmit(int queue, MemorySegment buffer, long offset, long length) {
        queues[queue % queues.length].transmit(buffer, offset, length);
    }

    @Override
    public boolean transmitGathered(int queue, MemorySegment header, DescriptorChain chain, long offset, long length) {
        return vnetHeader && queues[queue % queues.length].transmitGathered(header, chain, offset, length);
    }

    @Override
    public void connect(Receiver receiver) {
        for (TapQueue q : queues) {
            q.receiver = receiver;
        }
    }

    @Override
    public void connect(int queue, Receiver receiver) {
        queues[queue].receiver = receiver;
    }

    @Override
    public void close() {
        if (!open) {
            return;
        }
        open = false;
        for (TapQueue q : queues) {
            q.close();
        }
    }
}
