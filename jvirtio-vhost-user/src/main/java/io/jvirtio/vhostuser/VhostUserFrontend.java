package io.jvirtio.vhostuser;

import io.jvirtio.bus.ConfigOps;
import io.jvirtio.bus.QueueSpec;
import io.jvirtio.bus.TransportException;
import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.memory.MemoryRegion;
import io.jvirtio.core.os.FileIo;
import io.jvirtio.core.os.NativeException;
import io.jvirtio.core.os.Posix;
import io.jvirtio.core.os.SocketIo;
import io.jvirtio.core.os.UnixSockets;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.RingAddresses;
import io.jvirtio.core.queue.split.SplitLayout;
import io.jvirtio.core.spec.DeviceStatus;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * A vhost-user front-end (what QEMU's vhost-user code and DPDK's virtio_user do) as the
 * {@link ConfigOps} of a device on the {@link io.jvirtio.bus.VirtioBus}, so jvirtio's own drivers run
 * against any vhost-user back-end: guest memory is a shared memfd whose descriptor goes over the socket,
 * rings live in it, and each queue gets a kick and a call eventfd.
 *
 * <p>vhost-user has no device status register: the status byte is kept here, and DRIVER_OK is what
 * enables the rings (SET_VRING_ENABLE).
 */
public final class VhostUserFrontend implements ConfigOps, AutoCloseable {
    /** Ring size when the driver asks for "the maximum" (vhost-user has no way to ask the back-end). */
    static final int DEFAULT_QUEUE_SIZE = 256;
    static final int MAX_INDIRECT = 64;
    /** How long a reply may take by default: a back-end that stops answering fails the call, not the caller. */
    public static final java.time.Duration REPLY_TIMEOUT = java.time.Duration.ofSeconds(10);

    private final Path socket;
    private final Channel channel;
    private final GuestMemory memory;
    private final GuestAllocator dma;
    private final long offeredFeatures;
    private final long protocolFeatures;
    private final long replyTimeoutMs;
    /** Why the connection can no longer be used (a reply that never came), or null. */
    private String broken;
    private long acked;
    private int status;
    private final List<Queue> queues = new ArrayList<>();

    /** One ring's frontend state: its driver queue, eventfds and the thread waiting for calls. */
    private static final class Queue {
        final DriverQueue<Object> ring;
        final int kickFd;
        final int callFd;
        final Thread caller;

        Queue(DriverQueue<Object> ring, int kickFd, int callFd, Thread caller) {
            this.ring = ring;
            this.kickFd = kickFd;
            this.callFd = callFd;
            this.caller = caller;
        }
    }

    /** Features not to accept whatever the back-end offers ({@link #refuse}). */
    private volatile long refused;
    /** The configuration space the front-end keeps itself ({@link #localConfig}), or null: the back-end's. */
    private volatile byte[] localConfig;

    private VhostUserFrontend(Path socket, Channel channel, GuestMemory memory, GuestAllocator dma, long replyTimeoutMs)
            throws IOException, ProtocolException {
        this.socket = socket;
        this.channel = channel;
        this.memory = memory;
        this.dma = dma;
        this.replyTimeoutMs = replyTimeoutMs;
        // every read and write on the socket is bounded: a back-end that stops answering (or reading) makes the
        // call fail with EAGAIN instead of blocking this thread for ever (QEMU's front-end would hang there)
        SocketIo.setTimeouts(channel.fd(), replyTimeoutMs, replyTimeoutMs);
        request(Message.of(VhostUser.SET_OWNER, new byte[0]));
        this.offeredFeatures = call(Message.of(VhostUser.GET_FEATURES, new byte[0])).u64();
        long pf = 0;
        if ((offeredFeatures & VhostUser.F_PROTOCOL_FEATURES) != 0) {
            long offered = call(Message.of(VhostUser.GET_PROTOCOL_FEATURES, new byte[0])).u64();
            long wanted = (1L << VhostUser.PROTOCOL_F_REPLY_ACK) | (1L << VhostUser.PROTOCOL_F_CONFIG)
                    | (1L << VhostUser.PROTOCOL_F_MQ);
            pf = offered & wanted;
            request(Message.u64(VhostUser.SET_PROTOCOL_FEATURES, pf));
        }
        this.protocolFeatures = pf;
        sendMemTable();
    }

    /**
     * Connects to the back-end at {@code socket} and shares {@code memory} with it.
     *
     * @param memory guest memory whose regions are all shareable (memfd or file backed)
     * @param dma    where rings and buffers are allocated, inside {@code memory}
     */
    public static VhostUserFrontend connect(Path socket, GuestMemory memory, GuestAllocator dma) throws IOException {
        return connect(socket, memory, dma, REPLY_TIMEOUT);
    }

    /**
     * {@link #connect(Path, GuestMemory, GuestAllocator)} with a bound on each reply's wait other than
     * {@link #REPLY_TIMEOUT}: a back-end that takes longer has failed, and the connection is not used again.
     */
    public static VhostUserFrontend connect(Path socket, GuestMemory memory, GuestAllocator dma,
                                            java.time.Duration replyTimeout) throws IOException {
        long ms = replyTimeout.toMillis();
        if (ms <= 0 || ms > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("reply timeout " + replyTimeout + " must be between 1 ms and "
                    + Integer.MAX_VALUE + " ms");
        }
        for (MemoryRegion r : memory.regions()) {
            if (!r.shareable()) {
                throw new IllegalArgumentException("region at 0x" + Long.toHexString(r.guestAddress())
                        + " is private memory; vhost-user needs memfd or file-backed guest memory");
            }
        }
        Channel ch = new Channel(UnixSockets.connect(socket.toString()));
        try {
            return new VhostUserFrontend(socket, ch, memory, dma, ms);
        } catch (ProtocolException e) {
            ch.close();
            throw new IOException("vhost-user back-end at " + socket + ": " + e.getMessage(), e);
        } catch (IOException | RuntimeException e) {
            ch.close();
            throw e;
        }
    }

    /** The frontend's "user address" of a guest address: where our own mapping of it lives. */
    private long userAddress(long guest) {
        for (MemoryRegion r : memory.regions()) {
            if (r.contains(guest, 1)) {
                return r.segment().address() + (guest - r.guestAddress());
            }
        }
        throw new IllegalArgumentException("guest address 0x" + Long.toHexString(guest) + " outside memory");
    }

    void sendMemTable() throws IOException, ProtocolException {
        List<MemoryRegion> rs = memory.regions();
        ByteBuffer b = ByteBuffer.allocate(8 + 32 * rs.size()).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(rs.size()).putInt(0);
        int[] fds = new int[rs.size()];
        for (int i = 0; i < rs.size(); i++) {
            MemoryRegion r = rs.get(i);
            b.putLong(r.guestAddress()).putLong(r.size()).putLong(r.segment().address()).putLong(r.fdOffset());
            fds[i] = r.fd();
        }
        request(Message.of(VhostUser.SET_MEM_TABLE, b.array(), fds));
    }

    private boolean replyAck() {
        return (protocolFeatures & (1L << VhostUser.PROTOCOL_F_REPLY_ACK)) != 0;
    }

    /** Sends a request without a reply of its own; with REPLY_ACK waits for the back-end's verdict. */
    synchronized void request(Message m) throws IOException, ProtocolException {
        boolean ack = replyAck() && m.request() != VhostUser.SET_OWNER;
        send(ack ? new Message(m.request(), m.flags() | VhostUser.FLAG_NEED_REPLY, m.payload(), m.fds()) : m);
        if (ack) {
            long verdict = expectReply(m.request()).u64();
            if (verdict != 0) {
                throw new ProtocolException(VhostUser.name(m.request()) + " failed in the back-end (" + verdict + ")");
            }
        }
    }

    /** Sends a request that has a reply and returns the reply. */
    synchronized Message call(Message m) throws IOException, ProtocolException {
        send(m);
        return expectReply(m.request());
    }

    private void send(Message m) throws IOException, ProtocolException {
        if (broken != null) {
            throw new ProtocolException(VhostUser.name(m.request()) + " not sent: " + broken);
        }
        try {
            channel.write(m);
        } catch (NativeException e) {
            if (e.errno() == FileIo.EAGAIN) {
                throw fail(VhostUser.name(m.request()) + " not taken by the back-end within " + replyTimeoutMs + " ms");
            }
            throw e;
        }
    }

    /**
     * The connection is out of step with the back-end (a reply may still come, and would be taken for the
     * next one's): it is closed, and every later request fails with {@code why}.
     */
    private ProtocolException fail(String why) {
        broken = why;
        channel.shutdown();
        return new ProtocolException(why);
    }

    private Message expectReply(int request) throws IOException, ProtocolException {
        Message r;
        try {
            r = channel.read();
        } catch (NativeException e) {
            if (e.errno() == FileIo.EAGAIN) {
                throw fail("no reply to " + VhostUser.name(request) + " within " + replyTimeoutMs + " ms");
            }
            throw e;
        }
        if (r == null) {
            throw new ProtocolException("back-end closed the connection awaiting the reply to " + VhostUser.name(request));
        }
        for (int fd : r.fds()) {
            Channel.closeQuietly(fd);
        }
        if (r.request() != request || (r.flags() & VhostUser.FLAG_REPLY) == 0) {
            throw new ProtocolException("expected the reply to " + VhostUser.name(request) + ", got " + r);
        }
        return r;
    }

    private static TransportException transport(String what, Exception e) {
        return new TransportException(what + ": " + e.getMessage(), e);
    }

    @Override
    public synchronized int getStatus() {
        return status;
    }

    @Override
    public synchronized void setStatus(int next) {
        int added = next & ~status;
        status = next;
        if ((added & DeviceStatus.DRIVER_OK) != 0 && (acked & VhostUser.F_PROTOCOL_FEATURES) != 0) {
            // With PROTOCOL_FEATURES rings start disabled; DRIVER_OK is when the driver lets them run.
            for (int i = 0; i < queues.size(); i++) {
                try {
                    request(Message.of(VhostUser.SET_VRING_ENABLE, Message.vringState(i, 1)));
                } catch (IOException | ProtocolException e) {
                    status |= DeviceStatus.DEVICE_NEEDS_RESET;
                }
            }
        }
    }

    @Override
    public synchronized void reset() {
        stopRings();
        status = 0;
    }

    /** GET_VRING_BASE on every ring: the back-end stops using them. */
    private void stopRings() {
        for (int i = 0; i < queues.size(); i++) {
            try {
                call(Message.of(VhostUser.GET_VRING_BASE, Message.vringState(i, 0)));
            } catch (IOException | ProtocolException e) {
                System.getLogger(VhostUserFrontend.class.getName()).log(System.Logger.Level.WARNING, e.getMessage());
            }
        }
    }

    /**
     * Features this front-end will not accept even when the back-end offers them — QEMU's {@code packed=off}
     * or {@code in_order=off}, say. Call before the device is registered with the bus.
     */
    public void refuse(long features) {
        refused |= features;
    }

    @Override
    public long getFeatures() {
        return offeredFeatures & ~VhostUser.F_PROTOCOL_FEATURES & ~refused;
    }

    @Override
    public synchronized void finalizeFeatures(long features) {
        acked = features | (offeredFeatures & VhostUser.F_PROTOCOL_FEATURES);
        try {
            request(Message.u64(VhostUser.SET_FEATURES, acked));
        } catch (IOException | ProtocolException e) {
            status |= DeviceStatus.FAILED;
        }
    }

    @Override
    public int generation() {
        return 0;
    }

    /**
     * Keeps the device configuration space in the front-end, for a back-end without
     * VHOST_USER_PROTOCOL_F_CONFIG — DPDK's vhost library and most net back-ends: the driver reads
     * {@code config} and its writes change only this copy, as QEMU's virtio-net keeps the configuration
     * (its {@code mac=}, the link status, the queue pairs) in front of a vhost-user-net back-end. Call before
     * the device is registered with the bus.
     */
    public void localConfig(byte[] config) {
        localConfig = config.clone();
    }

    @Override
    public void readConfig(int offset, byte[] dst, int dstOffset, int length) {
        byte[] local = localConfig;
        if (local != null) {
            if (offset < 0 || length < 0 || offset + length > local.length) {
                throw new IllegalArgumentException("configuration bytes " + offset + "+" + length + " outside the "
                        + local.length + " the front-end keeps");
            }
            System.arraycopy(local, offset, dst, dstOffset, length);
            return;
        }
        if ((protocolFeatures & (1L << VhostUser.PROTOCOL_F_CONFIG)) == 0) {
            throw new IllegalStateException("back-end does not offer VHOST_USER_PROTOCOL_F_CONFIG, and no local"
                    + " configuration was given (localConfig)");
        }
        ByteBuffer b = ByteBuffer.allocate(12 + length).order(ByteOrder.LITTLE_ENDIAN).putInt(offset).putInt(length).putInt(0);
        try {
            Message r = call(Message.of(VhostUser.GET_CONFIG, b.array()));
            if (r.size() != 12 + length) {
                throw new ProtocolException("GET_CONFIG reply of " + r.size() + " bytes");
            }
            System.arraycopy(r.payload(), 12, dst, dstOffset, length);
        } catch (IOException | ProtocolException e) {
            throw new IllegalStateException("GET_CONFIG: " + e.getMessage(), e);
        }
    }

    @Override
    public void writeConfig(int offset, byte[] src) {
        byte[] local = localConfig;
        if (local != null) {
            if (offset >= 0 && offset + src.length <= local.length) {
                System.arraycopy(src, 0, local, offset, src.length);
            }
            return;
        }
        ByteBuffer b = ByteBuffer.allocate(12 + src.length).order(ByteOrder.LITTLE_ENDIAN).putInt(offset)
                .putInt(src.length).putInt(0).put(src);
        try {
            request(Message.of(VhostUser.SET_CONFIG, b.array()));
        } catch (IOException | ProtocolException e) {
            throw new IllegalStateException("SET_CONFIG: " + e.getMessage(), e);
        }
    }

    /**
     * Starts ring {@code index} again after GET_VRING_BASE stopped it (from the base the front-end sent since):
     * gives the back-end its kick descriptor anew, as QEMU does when a stopped ring resumes.
     */
    synchronized void restartRing(int index) throws IOException, ProtocolException {
        request(Message.u64(VhostUser.SET_VRING_KICK, index, queues.get(index).kickFd));
    }

    @Override
    public synchronized List<DriverQueue<Object>> findQueues(List<QueueSpec> specs) throws TransportException {
        try {
            for (int i = 0; i < specs.size(); i++) {
                QueueSpec spec = specs.get(i);
                int size = spec.size() > 0 ? Integer.highestOneBit(Math.min(spec.size(), 32768)) : DEFAULT_QUEUE_SIZE;
                int kick = Posix.eventfd();
                int callFd = Posix.eventfd();
                Arena arena = Arena.ofShared();
                MemorySegment one = arena.allocate(8);
                MemorySegment state = Posix.callState(arena);
                DriverQueue<Object> q = DriverQueue.allocate(dma, i, SplitLayout.modern(size), acked, MAX_INDIRECT, () -> {
                    try {
                        Posix.eventfdSignal(kick, one, state);
                    } catch (NativeException e) {
                        System.getLogger(VhostUserFrontend.class.getName()).log(System.Logger.Level.WARNING, e.getMessage());
                    }
                });
                RingAddresses a = q.addresses();
                request(Message.of(VhostUser.SET_VRING_NUM, Message.vringState(i, size)));
                io.jvirtio.core.queue.QueueState start = io.jvirtio.core.queue.QueueState.initial(acked);
                request(Message.of(VhostUser.SET_VRING_BASE, Message.vringState(i,
                        start.nextAvail() | start.nextUsed() << 16))); // split: 0; packed: both wrap counters 1
                ByteBuffer addr = ByteBuffer.allocate(40).order(ByteOrder.LITTLE_ENDIAN).putInt(i).putInt(0)
                        .putLong(userAddress(a.descTable())).putLong(userAddress(a.usedRing()))
                        .putLong(userAddress(a.availRing())).putLong(0);
                request(Message.of(VhostUser.SET_VRING_ADDR, addr.array()));
                request(Message.u64(VhostUser.SET_VRING_CALL, i, callFd));
                request(Message.u64(VhostUser.SET_VRING_KICK, i, kick));
                Consumer<DriverQueue<Object>> cb = spec.callback();
                Thread caller = Thread.ofPlatform().name("vhost-user-call" + i).daemon().start(() -> waitCalls(q, callFd, cb));
                queues.add(new Queue(q, kick, callFd, caller));
            }
            return queues.stream().map(x -> x.ring).toList();
        } catch (IOException | ProtocolException e) {
            deleteQueues();
            throw transport("setting up queues on " + socket, e);
        }
    }

    private static void waitCalls(DriverQueue<Object> q, int callFd, Consumer<DriverQueue<Object>> cb) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(8);
            MemorySegment pollfd = a.allocate(8);
            MemorySegment state = Posix.callState(a);
            while (!Thread.currentThread().isInterrupted()) {
                if (Posix.pollIn(callFd, 200, pollfd, state)) {
                    Posix.read(callFd, buf, state);
                    if (cb != null && q.hasUsed()) {
                        cb.accept(q);
                    }
                }
            }
        } catch (NativeException e) {
            System.getLogger(VhostUserFrontend.class.getName()).log(System.Logger.Level.DEBUG, e.getMessage());
        }
    }

    @Override
    public synchronized void deleteQueues() {
        stopRings();
        for (Queue q : queues) {
            q.caller.interrupt();
            try {
                q.caller.join(2000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            Channel.closeQuietly(q.kickFd);
            Channel.closeQuietly(q.callFd);
            q.ring.release();
        }
        queues.clear();
    }

    @Override
    public GuestAllocator dma() {
        return dma;
    }

    @Override
    public String busInfo() {
        return "vhost-user:" + socket;
    }

    @Override
    public String interruptMode() {
        return "eventfd per queue (vhost-user)";
    }

    /** Stops the rings and closes the connection; guest memory stays the caller's. */
    @Override
    public void close() {
        deleteQueues();
        channel.close();
    }
}
