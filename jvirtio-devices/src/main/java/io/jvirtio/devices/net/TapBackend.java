package io.jvirtio.devices.net;

import io.jvirtio.core.os.NativeException;
import io.jvirtio.core.os.Posix;
import io.jvirtio.core.os.RawIo;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.core.spec.Net;
import io.jvirtio.devices.Poller;

import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.locks.LockSupport;

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
    static final long TUNSETIFF = 0x400454caL;
    static final long TUNSETOFFLOAD = 0x400454d0L;
    static final long TUNSETVNETHDRSZ = 0x400454d8L;
    static final long TUNSETQUEUE = 0x400454d9L;
    static final short IFF_ATTACH_QUEUE = 0x0200;
    static final short IFF_DETACH_QUEUE = 0x0400;
    static final short IFF_TAP = 0x0002;
    static final short IFF_MULTI_QUEUE = 0x0100;
    static final short IFF_NO_PI = 0x1000;
    static final short IFF_VNET_HDR = 0x4000;
    // TUNSETOFFLOAD: what we, the TAP's reader, accept from the host
    static final int TUN_F_CSUM = 0x01;
    static final int TUN_F_TSO4 = 0x02;
    static final int TUN_F_TSO6 = 0x04;
    static final int TUN_F_TSO_ECN = 0x08;
    static final int TUN_F_USO4 = 0x20;
    static final int TUN_F_USO6 = 0x40;
    /** The offloads a TAP with the virtio-net header carries on any kernel. */
    static final long OFFLOADS = Feature.maskOf(Feature.NET_CSUM, Feature.NET_GUEST_CSUM, Feature.NET_HOST_TSO4,
            Feature.NET_HOST_TSO6, Feature.NET_HOST_ECN, Feature.NET_GUEST_TSO4, Feature.NET_GUEST_TSO6,
            Feature.NET_GUEST_ECN);
    /**
     * UDP segmentation, where the kernel has it (Linux 6.2+, TUN_F_USO4/6): the host takes the guest's large
     * UDP datagrams (HOST_USO) and hands over its own uncut (GUEST_USO4/6). Probed with TUNSETOFFLOAD at open.
     */
    static final long USO = Feature.maskOf(Feature.NET_HOST_USO, Feature.NET_GUEST_USO4, Feature.NET_GUEST_USO6);
    /** The largest frame either way: a 64 KiB segment, its Ethernet header and the virtio-net header. */
    static final int MAX_FRAME = 65536 + 14 + 12;
    /** The most pieces of a frame written with one writev (Linux sends a 64 KiB segment in at most 18). */
    static final int MAX_IOV = 64;
    /** How long a reader waits before looking again at a NIC that takes no frames. */
    static final long CONGESTED_NANOS = 1_000_000;
    /** Frames a poller reads from one TAP queue in a round, at most: its other rings get their turn. */
    static final int BURST = 32;
    /** Queues a multi-queue TAP device may have (the kernel's MAX_TAP_QUEUES). */
    public static final int MAX_QUEUES = 256;
    private static final Logger LOG = System.getLogger(TapBackend.class.getName());

    private final String name;
    private final boolean vnetHeader;
    /** Whether the kernel takes TUN_F_USO4/6 (a kernel before 6.2 refuses them with EINVAL). */
    private final boolean uso;
    private final Queue[] queues;
    private volatile boolean open = true;

    /**
     * One TAP queue: its descriptor, its reader thread, where its frames go. Its frames are read straight into the
     * NIC's receive buffers when the NIC can take one then ({@link Receiver#receiveRead}): the kernel's copy out of
     * the socket buffer is the only one, as with vhost-net; else into {@code rxBuffer}, and from there to the NIC.
     */
    private final class Queue implements FrameReader {
        final int fd;
        final Arena arena = Arena.ofShared();
        final MemorySegment txBuffer = arena.allocate(MAX_FRAME);
        /** The reader thread's: a frame read here, or the part of one the NIC's buffers could not hold. */
        final MemorySegment rxBuffer = arena.allocate(MAX_FRAME);
        /** What the last read into the NIC's buffers returned (reader thread only). */
        long lastRead;
        /** The iovecs of a gathered frame: its header, then a piece of each guest buffer it lies in. */
        final MemorySegment iov = arena.allocate(16L * MAX_IOV, 8);
        volatile Receiver receiver = (b, o, n) -> { };
        Thread reader;
        /** The poller that reads this queue in its rounds instead of {@code reader} ({@link #readIn}). */
        volatile Poller poller;
        /** Set by {@code reader} once it has stopped reading for the poller: from then on the poller alone reads. */
        volatile boolean handedOver;
        /** The poller sleeps: {@code reader} waits for a frame and wakes it. */
        volatile boolean armed;
        /** The device is gone (poll said so): nobody reads any more. */
        volatile boolean broken;
        /** Detached from the device (TUNSETQUEUE): the kernel gives it no frames, so the poller reads none. */
        volatile boolean detached;
        /** Reads in the poller's rounds that found nothing: now and then one asks poll whether the device is gone. */
        int emptyReads;
        final MemorySegment pollfd = arena.allocate(8);
        final Poller.Producer producer = new Poller.Producer() {
            @Override
            public boolean produce() {
                return readRound();
            }

            @Override
            public boolean arm() {
                if (handedOver && !broken && open) {
                    armed = true;
                    LockSupport.unpark(reader);
                }
                return false; // frames there already: the reader's poll sees them at once and wakes the poller
            }
        };

        Queue(int fd) {
            this.fd = fd;
        }

        /**
         * Header and frame in one {@code writev}, the frame's iovecs pointing into the guest's buffers (validated
         * when the chain was popped); false when the chain has more buffers than {@link #MAX_IOV} or the frame is
         * too large: the caller copies. Raw addresses hold no arena open, and need not: this runs on the thread
         * serving the guest's ring, inside its round, and a guest's memory is unmapped only once its rings have
         * stopped (vhost-user SET_MEM_TABLE, the end of a connection) — a rewrite of the header meanwhile is the
         * kernel's to refuse, as from any TAP writer.
         */
        synchronized boolean transmitGathered(MemorySegment header, DescriptorChain chain, long offset, long length) {
            if (!open) {
                return true; // dropped, as transmit drops it once closed
            }
            if (length + Net.HDR_SIZE > MAX_FRAME) {
                return false;
            }
            iov.set(ValueLayout.JAVA_LONG, 0, header.address());
            iov.set(ValueLayout.JAVA_LONG, 8, Net.HDR_SIZE);
            int n = 1;
            long skip = offset;
            long left = length;
            for (int i = 0; i < chain.readableCount() && left > 0; i++) {
                long len = Integer.toUnsignedLong(chain.length(i));
                if (skip >= len) {
                    skip -= len;
                    continue;
                }
                if (n == MAX_IOV) {
                    return false;
                }
                long take = Math.min(len - skip, left);
                iov.set(ValueLayout.JAVA_LONG, 16L * n, chain.regionSegment(i).address() + chain.regionOffset(i) + skip);
                iov.set(ValueLayout.JAVA_LONG, 16L * n + 8, take);
                n++;
                left -= take;
                skip = 0;
            }
            write(n);
            return true;
        }

        synchronized void transmit(MemorySegment buffer, long offset, long length) {
            if (!open || length > txBuffer.byteSize() || offset + length > buffer.byteSize()) {
                return;
            }
            if (buffer.isNative()) {
                // where it lies (a guest's buffer, at an offset, mapped while its sender's ring runs): one iovec,
                // no copy and no slice
                iov.set(ValueLayout.JAVA_LONG, 0, buffer.address() + offset);
                iov.set(ValueLayout.JAVA_LONG, 8, length);
                write(1);
                return;
            }
            MemorySegment.copy(buffer, offset, txBuffer, 0, length); // a heap frame: the kernel needs native memory
            iov.set(ValueLayout.JAVA_LONG, 0, txBuffer.address());
            iov.set(ValueLayout.JAVA_LONG, 8, length);
            write(1);
        }

        /**
         * The frame in the first {@code n} iovecs, in one writev (bound without errno: {@link RawIo}). A frame the
         * kernel refuses — a header a hostile or broken guest wrote, EINVAL — is dropped.
         */
        private void write(int n) {
            if (RawIo.writev(fd, iov, n) < 0) {
                LOG.log(Level.DEBUG, "{0}: writev refused a frame", name);
            }
        }

        /** One frame, with its virtio-net header when the device has them; the reading thread only. */
        @Override
        public long read(MemorySegment vectors, int count) {
            return lastRead = RawIo.readv(fd, vectors, count);
        }

        @Override
        public MemorySegment spill() {
            return rxBuffer;
        }

        /**
         * Reads frames while the queue has them — the descriptor is non-blocking: one system call a frame under
         * load, as QEMU's and DPDK's TAP readers — and polls once a read finds it empty (with a timeout, so close()
         * ends the thread without relying on close waking a read). The system calls are {@link RawIo}'s, without
         * errno: poll's revents tell an empty queue from a broken device (deleted under us: POLLERR).
         */
        void readLoop() {
            try (Arena a = Arena.ofConfined()) {
                MemorySegment pollfd = a.allocate(8);
                boolean ready = false;
                while (open) {
                    Poller p = poller;
                    if (p != null) {
                        watch(p, pollfd);
                        return;
                    }
                    if (receiver.congested()) {
                        // the NIC's queue is full: frames stay in the kernel's, which drops what overflows it
                        // (the device's TX dropped), rather than be read here only to be dropped
                        LockSupport.parkNanos(CONGESTED_NANOS);
                        continue;
                    }
                    if (!ready) {
                        int revents = RawIo.poll(fd, 200, pollfd);
                        if (revents <= 0) {
                            continue; // timed out, or a signal
                        }
                        if ((revents & RawIo.POLLIN) == 0) {
                            gone(revents);
                            return;
                        }
                        if (poller != null) {
                            continue; // handed over while this thread waited: the poller reads this frame
                        }
                    }
                    ready = readOne(receiver) > 0; // else empty (EAGAIN), interrupted, or broken: poll tells
                }
            }
        }

        /**
         * The next frame, read straight into the NIC's buffers when it can take one now ({@link Receiver#receiveRead}),
         * else into {@code rxBuffer} and handed to it; what the read returned (not positive: nothing read).
         */
        private long readOne(Receiver r) {
            lastRead = 0;
            if (r.receiveRead(this)) {
                return lastRead;
            }
            long n = RawIo.read(fd, rxBuffer);
            if (n > 0) {
                r.receive(rxBuffer, n);
            }
            return n;
        }

        /**
         * One round of the poller's: up to {@link #BURST} frames while the TAP has them and the NIC takes them, each
         * read straight into the NIC's buffers when it can take one ({@link Receiver#receiveRead}: from the poller,
         * which alone writes into a polled ring) — the kernel's copy the only one, as DPDK's TAP PMD on an lcore.
         * Never blocks: the descriptor is non-blocking. True if it read a frame.
         */
        boolean readRound() {
            if (!handedOver || broken || detached || !open) {
                return false;
            }
            Receiver r = receiver;
            int frames = 0;
            while (frames < BURST && !r.congested()) {
                if (readOne(r) <= 0) {
                    if ((++emptyReads & 1023) == 0) {
                        checkDevice(); // empty, or gone: a busy poller never sleeps for the reader's poll to tell
                    }
                    break;
                }
                frames++;
            }
            return frames > 0;
        }

        /** Whether the device is still there (poll's revents, without waiting); once gone, nobody reads again. */
        private void checkDevice() {
            int revents = RawIo.poll(fd, 0, pollfd);
            if (revents > 0 && (revents & RawIo.POLLIN) == 0) {
                gone(revents);
            }
        }

        private void gone(int revents) {
            if (!broken && open) {
                LOG.log(Level.WARNING, "{0}: reader stopped: poll revents 0x{1}", name, Integer.toHexString(revents));
            }
            broken = true;
        }

        /**
         * Polled: this thread hands reading over to {@code p} and only wakes it when it sleeps ({@code armed}) and a
         * frame comes — a poller that never sleeps costs no system call here. While the NIC takes no frames the
         * poller sleeps on its ring instead (the driver's notification wakes it when buffers come).
         */
        private void watch(Poller p, MemorySegment pollfd) {
            handedOver = true;
            p.wake(); // asleep since before the handover, it armed nothing for this queue: it does in its next sleep
            while (open && !broken) {
                if (!armed) {
                    LockSupport.parkNanos(200_000_000L); // the poller unparks this thread when it arms
                    continue;
                }
                if (receiver.congested()) {
                    LockSupport.parkNanos(CONGESTED_NANOS);
                    continue;
                }
                int revents = RawIo.poll(fd, 200, pollfd);
                if (revents <= 0) {
                    continue;
                }
                if ((revents & RawIo.POLLIN) == 0) {
                    gone(revents);
                    return;
                }
                armed = false;
                p.wake();
            }
        }

        synchronized void close() {
            try {
                Posix.close(fd);
            } catch (NativeException e) {
                LOG.log(Level.WARNING, e.getMessage());
            }
            arena.close();
        }
    }

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
        this.queues = new Queue[queues];
        short flags = (short) (IFF_TAP | IFF_NO_PI | (vnetHeader ? IFF_VNET_HDR : 0) | (queues > 1 ? IFF_MULTI_QUEUE : 0));
        String actual = name;
        try {
            for (int q = 0; q < queues; q++) {
                // the first open names (or creates) the device; the others attach to it by its actual name
                Opened o = openQueue(q == 0 ? n : actual.getBytes(StandardCharsets.US_ASCII), flags);
                this.queues[q] = new Queue(o.fd());
                actual = o.name();
            }
        } catch (NativeException e) {
            for (Queue q : this.queues) {
                if (q != null) {
                    q.close();
                }
            }
            throw e;
        }
        this.name = actual;
        this.uso = vnetHeader && probeUso(this.queues[0].fd);
        for (int q = 0; q < queues; q++) {
            Queue queue = this.queues[q];
            queue.reader = Thread.ofPlatform().name("jvirtio-tap-" + this.name + "-q" + q).daemon().start(queue::readLoop);
        }
    }

    private static boolean probeUso(int fd) {
        try {
            Posix.ioctlValue(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_USO4 | TUN_F_USO6);
            Posix.ioctlValue(fd, TUNSETOFFLOAD, 0);
            return true;
        } catch (NativeException e) {
            try {
                Posix.ioctlValue(fd, TUNSETOFFLOAD, 0);
            } catch (NativeException ignored) {
                // the descriptor refuses even no offloads: reading frames will say so
            }
            return false;
        }
    }

    /**
     * From now on {@code poller} reads the frames of TAP queue {@code queue} in its rounds, the queue's reader thread
     * only waking it when it sleeps and a frame comes: frames then go straight into the NIC's polled rings, which
     * only their poller writes into — from a reader thread they would wait in the NIC's queue for the poller, copied
     * twice more. The model of DPDK's TAP PMD on a polling lcore.
     */
    @Override
    public void readIn(int queue, Poller poller) {
        Queue q = queues[queue];
        if (q.poller == poller) {
            return;
        }
        if (q.poller != null) {
            throw new IllegalStateException("TAP device " + name + " queue " + queue + " is read by another poller");
        }
        q.poller = poller;
        LockSupport.unpark(q.reader);
        poller.addProducer(q.producer);
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
            Queue queue = queues[q];
            boolean attach = q < Math.max(n, 1);
            if (attach == !queue.detached) {
                continue; // already so
            }
            try (Arena a = Arena.ofConfined()) {
                MemorySegment ifreq = a.allocate(40);
                ifreq.set(ValueLayout.JAVA_SHORT, 16, attach ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE);
                Posix.ioctl(queue.fd, TUNSETQUEUE, ifreq);
                queue.detached = !attach;
            } catch (NativeException e) {
                LOG.log(Level.WARNING, "{0}: TUNSETQUEUE {1} queue {2}: {3}", name, attach ? "attach" : "detach", q,
                        e.getMessage());
            }
        }
    }

    /** A queue's descriptor, and the device's actual name, which TUNSETIFF writes back into the ifreq. */
    private record Opened(int fd, String name) {
    }

    private Opened openQueue(byte[] n, short flags) throws NativeException {
        int tun = Posix.openDevice("/dev/net/tun");
        try (Arena a = Arena.ofConfined()) {
            MemorySegment ifreq = a.allocate(40);
            MemorySegment.copy(n, 0, ifreq, ValueLayout.JAVA_BYTE, 0, n.length);
            ifreq.set(ValueLayout.JAVA_SHORT, 16, flags);
            Posix.ioctl(tun, TUNSETIFF, ifreq);
            String actual = ifreq.getString(0, StandardCharsets.US_ASCII);
            if (vnetHeader) {
                MemorySegment size = a.allocate(ValueLayout.JAVA_INT);
                size.set(ValueLayout.JAVA_INT, 0, Net.HDR_SIZE); // VERSION_1: num_buffers too
                Posix.ioctl(tun, TUNSETVNETHDRSZ, size);
                Posix.ioctlValue(tun, TUNSETOFFLOAD, 0); // nothing offloaded to us until a driver accepts it
            }
            // reads answer EAGAIN once the queue is empty (the reader then polls); a write never waits either
            // way: the TAP's socket has no send limit (its sndbuf is INT_MAX unless TUNSETSNDBUF lowers it)
            Posix.setNonBlocking(tun);
            return new Opened(tun, actual);
        } catch (NativeException e) {
            Posix.close(tun);
            throw e;
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
            tun = TUN_F_CSUM;
            tun |= Feature.NET_GUEST_TSO4.isSet(features) ? TUN_F_TSO4 : 0;
            tun |= Feature.NET_GUEST_TSO6.isSet(features) ? TUN_F_TSO6 : 0;
            tun |= Feature.NET_GUEST_ECN.isSet(features) && (tun & (TUN_F_TSO4 | TUN_F_TSO6)) != 0 ? TUN_F_TSO_ECN : 0;
            // Linux gives the reader uncut UDP datagrams only with both (tun.c set_offload: "for now USO4 and
            // USO6 should work simultaneously"); a driver that took one gets its datagrams cut, as without USO
            if (uso && Feature.NET_GUEST_USO4.isSet(features) && Feature.NET_GUEST_USO6.isSet(features)) {
                tun |= TUN_F_USO4 | TUN_F_USO6;
            }
        }
        for (Queue q : queues) {
            try {
                Posix.ioctlValue(q.fd, TUNSETOFFLOAD, tun);
            } catch (NativeException e) {
                LOG.log(Level.WARNING, "{0}: TUNSETOFFLOAD 0x{1}: {2}", name, Integer.toHexString(tun), e.getMessage());
            }
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
        for (Queue q : queues) {
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
        for (Queue q : queues) {
            Poller p = q.poller;
            if (p != null) {
                p.removeProducer(q.producer); // returns once the poller is out of the queue's last round
            }
        }
        open = false;
        for (Queue q : queues) {
            LockSupport.unpark(q.reader);
            try {
                q.reader.join(2000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            q.close();
        }
    }
}
