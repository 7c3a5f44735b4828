package io.jvirtio.vhostuser;

import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.device.VirtioDeviceModel;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.os.NativeException;
import io.jvirtio.core.os.Posix;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.queue.split.DeviceQueue;
import io.jvirtio.core.queue.split.QueueState;
import io.jvirtio.core.queue.split.RingAddresses;
import io.jvirtio.core.queue.split.VirtqueueException;
import io.jvirtio.core.spec.Feature;

import java.io.IOException;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * One frontend connection to a {@link VhostUserBackend}: the back-end side of vhost-user.rst for one
 * device model. Every message is checked (size, index, descriptors) before it changes anything; a bad
 * one ends the session with the reason logged, and ending it stops the device, unmaps guest memory and
 * closes every descriptor it was given.
 */
final class BackendSession implements Runnable {
    private static final Logger LOG = System.getLogger(BackendSession.class.getName());
    static final long PROTOCOL_FEATURES = (1L << VhostUser.PROTOCOL_F_MQ) | (1L << VhostUser.PROTOCOL_F_REPLY_ACK)
            | (1L << VhostUser.PROTOCOL_F_CONFIG) | (1L << VhostUser.PROTOCOL_F_RESET_DEVICE)
            | (1L << VhostUser.PROTOCOL_F_INFLIGHT_SHMFD);
    /** A handler that wrote its own reply (one carrying a descriptor). */
    private static final byte[] REPLIED = new byte[0];
    /** Each queue's in-flight region starts on a 64-byte boundary of the shared buffer. */
    static final long INFLIGHT_ALIGN = 64;

    private final Channel channel;
    private final VirtioDeviceModel model;
    private final String name;
    private final Vring[] rings;
    private long features;
    private long protocolFeatures;
    private GuestMemory memory;
    private long[] regionUser = new long[0];
    private long[] regionGuest = new long[0];
    private long[] regionSize = new long[0];
    private boolean modelActive;
    private KickLoop kicks;
    /** The in-flight buffer (GET/SET_INFLIGHT_FD): shared memory that outlives this process. */
    private Arena inflightArena;
    private MemorySegment inflight;
    private int inflightQueues;
    private int inflightQueueSize;
    private volatile boolean closing;
    private volatile String endReason = "frontend disconnected";
    final java.util.concurrent.atomic.AtomicLong messages = new java.util.concurrent.atomic.AtomicLong();

    BackendSession(int fd, VirtioDeviceModel model, String name) {
        this.channel = new Channel(fd);
        this.model = model;
        this.name = name;
        this.rings = new Vring[model.numQueues()];
        for (int i = 0; i < rings.length; i++) {
            rings[i] = new Vring(i);
        }
    }

    String name() {
        return name;
    }

    String endReason() {
        return endReason;
    }

    @Override
    public void run() {
        try {
            Message m;
            while (!closing && (m = channel.read()) != null) {
                messages.incrementAndGet();
                LOG.log(Level.DEBUG, "{0}: {1}", name, m);
                try {
                    handle(m);
                } catch (ProtocolException e) {
                    if (!ackFailure(m, e)) {
                        throw e;
                    }
                } finally {
                    for (int fd : m.fds()) {
                        Channel.closeQuietly(fd); // handlers mark the descriptors they keep with -1
                    }
                }
            }
        } catch (ProtocolException e) {
            endReason = e.getMessage();
            LOG.log(Level.WARNING, "{0}: closing connection: {1}", name, e.getMessage());
        } catch (IOException | RuntimeException e) {
            endReason = e.toString();
            if (!closing) {
                LOG.log(Level.WARNING, "{0}: connection failed: {1}", name, e);
            }
        } finally {
            end();
        }
    }

    /**
     * A well-framed request the back-end could not carry out, from a front-end that asked for an ack
     * (REPLY_ACK negotiated, need_reply set): it gets a non-zero ack and the session goes on, its state as
     * before the request (vhost-user.rst "REPLY_ACK"). Without an ack to give, the connection ends.
     */
    private boolean ackFailure(Message m, ProtocolException e) throws IOException {
        if (!m.needReply() || (protocolFeatures & (1L << VhostUser.PROTOCOL_F_REPLY_ACK)) == 0
                || VhostUser.hasReply(m.request())) {
            return false;
        }
        LOG.log(Level.WARNING, "{0}: {1} failed, acked as failed: {2}", name, VhostUser.name(m.request()), e.getMessage());
        channel.write(Message.reply(m, u64(1)));
        return true;
    }

    /** Ends the session from another thread (server shutdown). */
    void close() {
        closing = true;
        channel.shutdown();
    }

    private synchronized void end() {
        // Whatever a device does wrong while stopping, the session's descriptors and mappings are still freed.
        try {
            stopModel();
        } catch (RuntimeException e) {
            LOG.log(Level.WARNING, "{0}: stopping the device failed: {1}", name, e);
        }
        try {
            model.close();
        } catch (RuntimeException e) {
            LOG.log(Level.WARNING, "{0}: closing the device failed: {1}", name, e);
        }
        for (Vring r : rings) {
            dropFds(r);
        }
        if (memory != null) {
            memory.close();
            memory = null;
        }
        if (inflightArena != null) {
            inflightArena.close();
            inflightArena = null;
        }
        channel.close();
        LOG.log(Level.INFO, "{0}: session ended ({1})", name, endReason);
    }

    private void handle(Message m) throws ProtocolException, IOException {
        byte[] reply = switch (m.request()) {
            case VhostUser.GET_FEATURES -> {
                m.expectSize(0);
                yield u64(model.deviceFeatures() | VhostUser.F_PROTOCOL_FEATURES);
            }
            case VhostUser.SET_FEATURES -> {
                long f = m.u64();
                long offered = model.deviceFeatures() | VhostUser.F_PROTOCOL_FEATURES;
                if ((f & ~offered) != 0) {
                    throw new ProtocolException(String.format("SET_FEATURES 0x%x has bits never offered (0x%x)", f, f & ~offered));
                }
                synchronized (this) {
                    features = f;
                }
                yield null;
            }
            case VhostUser.SET_OWNER -> {
                m.expectSize(0);
                yield null;
            }
            case VhostUser.RESET_OWNER, VhostUser.RESET_DEVICE -> {
                resetDevice();
                yield null;
            }
            case VhostUser.GET_PROTOCOL_FEATURES -> {
                m.expectSize(0);
                yield u64(PROTOCOL_FEATURES);
            }
            case VhostUser.SET_PROTOCOL_FEATURES -> {
                long f = m.u64();
                if ((f & ~PROTOCOL_FEATURES) != 0) {
                    throw new ProtocolException(String.format("SET_PROTOCOL_FEATURES 0x%x has bits never offered", f));
                }
                protocolFeatures = f;
                yield null;
            }
            case VhostUser.GET_QUEUE_NUM -> {
                m.expectSize(0);
                yield u64(rings.length);
            }
            case VhostUser.SET_MEM_TABLE -> {
                setMemTable(m);
                yield null;
            }
            case VhostUser.SET_VRING_NUM -> {
                m.expectSize(8);
                Vring r = ring(m.body().getInt(0));
                int num = m.body().getInt(4);
                if (num <= 0 || num > 32768 || Integer.bitCount(num) != 1) {
                    throw new ProtocolException("SET_VRING_NUM " + num + " for ring " + r.index + " is not a power of two up to 32768");
                }
                synchronized (this) {
                    r.num = num;
                }
                yield null;
            }
            case VhostUser.SET_VRING_ADDR -> {
                m.expectSize(40);
                ByteBuffer b = m.body();
                Vring r = ring(b.getInt(0));
                synchronized (this) {
                    r.descUser = b.getLong(8);
                    r.usedUser = b.getLong(16);
                    r.availUser = b.getLong(24);
                    r.addressed = true;
                }
                yield null;
            }
            case VhostUser.SET_VRING_BASE -> {
                m.expectSize(8);
                Vring r = ring(m.body().getInt(0));
                int base = m.body().getInt(4);
                if ((base & ~0xffff) != 0) {
                    throw new ProtocolException("SET_VRING_BASE " + base + " is not a 16-bit ring index");
                }
                synchronized (this) {
                    r.base = base;
                }
                yield null;
            }
            case VhostUser.GET_VRING_BASE -> {
                m.expectSize(8);
                Vring r = ring(m.body().getInt(0));
                yield Message.vringState(r.index, stopRing(r));
            }
            case VhostUser.SET_VRING_KICK, VhostUser.SET_VRING_CALL, VhostUser.SET_VRING_ERR -> {
                setVringFd(m);
                yield null;
            }
            case VhostUser.SET_VRING_ENABLE -> {
                m.expectSize(8);
                Vring r = ring(m.body().getInt(0));
                int on = m.body().getInt(4);
                if (on != 0 && on != 1) {
                    throw new ProtocolException("SET_VRING_ENABLE " + on + " for ring " + r.index);
                }
                synchronized (this) {
                    r.enabled = on == 1;
                    if (modelActive && r.queue != null) {
                        model.enableQueue(r.index, r.enabled); // a running ring: its device state stays
                    } else {
                        reconfigure();
                    }
                }
                yield null;
            }
            case VhostUser.GET_CONFIG -> getConfig(m);
            case VhostUser.GET_INFLIGHT_FD -> {
                getInflight(m);
                yield REPLIED;
            }
            case VhostUser.SET_INFLIGHT_FD -> {
                setInflight(m);
                yield null;
            }
            case VhostUser.SET_CONFIG -> {
                ByteBuffer b = configHeader(m);
                byte[] data = new byte[b.getInt(4)];
                System.arraycopy(m.payload(), 12, data, 0, data.length);
                model.config().driverWrite(b.getInt(0), data);
                yield null;
            }
            default -> throw new ProtocolException("unsupported request " + VhostUser.name(m.request()));
        };
        if (reply == REPLIED) {
            return;
        }
        if (reply != null) {
            channel.write(Message.reply(m, reply));
        } else if (m.needReply() && (protocolFeatures & (1L << VhostUser.PROTOCOL_F_REPLY_ACK)) != 0) {
            channel.write(Message.reply(m, u64(0)));
        }
    }

    private Vring ring(int index) throws ProtocolException {
        if (index < 0 || index >= rings.length) {
            throw new ProtocolException("ring index " + index + " (the device has " + rings.length + ")");
        }
        return rings[index];
    }

    private static byte[] u64(long v) {
        return ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(v).array();
    }

    /** struct VhostUserConfig: u32 offset, u32 size, u32 flags, u8 payload[size]. */
    private ByteBuffer configHeader(Message m) throws ProtocolException {
        if (m.size() < 12) {
            throw new ProtocolException(VhostUser.name(m.request()) + " shorter than its header");
        }
        ByteBuffer b = m.body();
        int offset = b.getInt(0);
        int size = b.getInt(4);
        if (size < 0 || size > VhostUser.MAX_CONFIG || m.size() != 12 + size || offset < 0
                || offset + size > Math.max(model.config().size(), VhostUser.MAX_CONFIG)) {
            throw new ProtocolException(VhostUser.name(m.request()) + " offset " + offset + " size " + size
                    + " in a message of " + m.size() + " bytes");
        }
        return b;
    }

    /**
     * GET_CONFIG: the configuration bytes asked for; a request out of range gets a zero-length payload, the
     * protocol's way to say it failed (vhost-user.rst GET_CONFIG), and the session goes on.
     */
    private byte[] getConfig(Message m) throws ProtocolException {
        ByteBuffer b;
        try {
            b = configHeader(m);
        } catch (ProtocolException e) {
            LOG.log(Level.WARNING, "{0}: GET_CONFIG refused: {1}", name, e.getMessage());
            return new byte[0];
        }
        int offset = b.getInt(0);
        int size = b.getInt(4);
        byte[] out = m.payload().clone();
        model.config().read(offset, out, 12, size);
        return out;
    }

    private static long inflightQueueBytes(int queueSize) {
        return (io.jvirtio.core.queue.split.InflightRegion.bytes(queueSize) + INFLIGHT_ALIGN - 1) & -INFLIGHT_ALIGN;
    }

    /** struct VhostUserInflight: u64 mmap_size, u64 mmap_offset, u16 num_queues, u16 queue_size (+ padding). */
    private int[] inflightRequest(Message m) throws ProtocolException {
        if (m.size() != 20 && m.size() != 24) {
            throw new ProtocolException(VhostUser.name(m.request()) + " carries " + m.size() + " bytes, expected 24");
        }
        ByteBuffer b = m.body();
        int queues = Short.toUnsignedInt(b.getShort(16));
        int queueSize = Short.toUnsignedInt(b.getShort(18));
        if (queues < 1 || queues > rings.length || queueSize < 1 || queueSize > 32768 || Integer.bitCount(queueSize) != 1) {
            throw new ProtocolException(VhostUser.name(m.request()) + " for " + queues + " queues of " + queueSize);
        }
        return new int[] {queues, queueSize};
    }

    /** GET_INFLIGHT_FD: a fresh shared buffer for the front-end to keep and hand back after a restart. */
    private void getInflight(Message m) throws ProtocolException, IOException {
        int[] q = inflightRequest(m);
        long size = inflightQueueBytes(q[1]) * q[0];
        int fd = Posix.memfdCreate("jvirtio-inflight");
        try {
            Posix.ftruncate(fd, size);
            mapInflight(fd, 0, size, q[0], q[1]);
            for (int i = 0; i < q[0]; i++) {
                io.jvirtio.core.queue.split.InflightRegion.format(inflight.asSlice(inflightQueueBytes(q[1]) * i), q[1]);
            }
            ByteBuffer r = ByteBuffer.allocate(m.size()).order(ByteOrder.LITTLE_ENDIAN);
            r.putLong(size).putLong(0).putShort((short) q[0]).putShort((short) q[1]);
            channel.write(Message.reply(m, r.array(), fd));
        } finally {
            Channel.closeQuietly(fd);
        }
    }

    /** SET_INFLIGHT_FD: the buffer of a previous back-end (or of GET_INFLIGHT_FD); rings resume from it. */
    private void setInflight(Message m) throws ProtocolException {
        int[] q = inflightRequest(m);
        m.expectFds(1);
        ByteBuffer b = m.body();
        long size = b.getLong(0);
        long offset = b.getLong(8);
        if (size < inflightQueueBytes(q[1]) * q[0] || offset < 0 || (offset & 4095) != 0) {
            throw new ProtocolException("SET_INFLIGHT_FD: " + size + " bytes at " + offset + " for " + q[0]
                    + " queues of " + q[1]);
        }
        try {
            synchronized (this) {
                mapInflight(m.fds()[0], offset, size, q[0], q[1]);
            }
        } catch (NativeException e) {
            throw new ProtocolException("SET_INFLIGHT_FD: cannot map: " + e.getMessage(), e);
        }
    }

    private void mapInflight(int fd, long offset, long size, int queues, int queueSize) throws NativeException {
        Arena arena = Arena.ofShared();
        MemorySegment seg;
        try {
            seg = Posix.mmapPeerFd(fd, offset, size, arena);
        } catch (NativeException e) {
            arena.close();
            throw e;
        }
        boolean wasActive = modelActive;
        stopModel();
        if (inflightArena != null) {
            inflightArena.close();
        }
        inflightArena = arena;
        inflight = seg;
        inflightQueues = queues;
        inflightQueueSize = queueSize;
        if (wasActive) {
            reconfigure();
        }
    }

    /** struct VhostUserMemory: u32 nregions, u32 padding, regions of (guest, size, user, mmap_offset). */
    private void setMemTable(Message m) throws ProtocolException {
        if (m.size() < 8) {
            throw new ProtocolException("SET_MEM_TABLE shorter than its header");
        }
        ByteBuffer b = m.body();
        int n = b.getInt(0);
        if (n < 1 || n > VhostUser.MAX_REGIONS || m.size() != 8 + 32 * n) {
            throw new ProtocolException("SET_MEM_TABLE with " + n + " regions in " + m.size() + " bytes");
        }
        m.expectFds(n);
        long[] guest = new long[n];
        long[] size = new long[n];
        long[] user = new long[n];
        // All or nothing: the builder unmaps every region mapped so far when any region is refused.
        try (GuestMemory.Builder builder = GuestMemory.builder()) {
            for (int i = 0; i < n; i++) {
                int at = 8 + 32 * i;
                guest[i] = b.getLong(at);
                size[i] = b.getLong(at + 8);
                user[i] = b.getLong(at + 16);
                long offset = b.getLong(at + 24);
                if (size[i] <= 0 || offset < 0 || (offset & 4095) != 0 || user[i] + size[i] - 1 < user[i]
                        || guest[i] + size[i] - 1 < guest[i]) {
                    throw new ProtocolException(String.format("region %d: guest 0x%x size 0x%x user 0x%x offset 0x%x", i,
                            guest[i], size[i], user[i], offset));
                }
                for (int j = 0; j < i; j++) {
                    if (Long.compareUnsigned(user[i], user[j] + size[j]) < 0
                            && Long.compareUnsigned(user[j], user[i] + size[i]) < 0) {
                        throw new ProtocolException("regions " + j + " and " + i + " overlap in the frontend's address space");
                    }
                }
                builder.mapFd(guest[i], size[i], m.fds()[i], offset);
            }
            GuestMemory mem = builder.build();
            synchronized (this) {
                boolean wasActive = modelActive;
                stopModel();
                if (memory != null) {
                    memory.close();
                }
                memory = mem;
                regionGuest = guest;
                regionSize = size;
                regionUser = user;
                if (wasActive) {
                    reconfigure();
                }
            }
        } catch (NativeException e) {
            throw new ProtocolException("SET_MEM_TABLE: cannot map region: " + e.getMessage(), e);
        } catch (IllegalArgumentException e) {
            throw new ProtocolException("SET_MEM_TABLE: " + e.getMessage(), e);
        }
        // the mappings stay valid without the descriptors; the finally in run() closes them
    }

    private void setVringFd(Message m) throws ProtocolException {
        long v = m.u64();
        Vring r = ring((int) (v & VhostUser.VRING_IDX_MASK));
        if ((v & ~(VhostUser.VRING_IDX_MASK | VhostUser.VRING_NOFD)) != 0) {
            throw new ProtocolException(String.format("%s payload 0x%x has unknown bits", VhostUser.name(m.request()), v));
        }
        boolean nofd = (v & VhostUser.VRING_NOFD) != 0;
        m.expectFds(nofd ? 0 : 1);
        int fd = nofd ? -1 : m.fds()[0];
        if (!nofd) {
            // Whatever the front-end passed (an eventfd, or a full pipe), no read or write of ours may wait on it.
            try {
                Posix.setNonBlocking(fd);
            } catch (NativeException e) {
                throw new ProtocolException(VhostUser.name(m.request()) + ": unusable descriptor: " + e.getMessage(), e);
            }
        }
        if (!nofd) {
            m.fds()[0] = -1; // kept: not closed when the message is done
        }
        synchronized (this) {
            switch (m.request()) {
                case VhostUser.SET_VRING_KICK -> {
                    boolean wasActive = modelActive;
                    stopModel();
                    Channel.closeQuietly(r.kickFd);
                    r.kickFd = fd;
                    r.kickPolling = nofd;
                    r.started = true;
                    // without PROTOCOL_FEATURES a ring is enabled as soon as it starts
                    if ((features & VhostUser.F_PROTOCOL_FEATURES) == 0) {
                        r.enabled = true;
                    }
                    if (wasActive || r.ready()) {
                        reconfigure();
                    }
                }
                case VhostUser.SET_VRING_CALL -> {
                    // QEMU replaces the call fd of a running ring (e.g. when it switches to irqfd): the
                    // worker's next interrupt must go to the new one, never to a closed (reusable) number.
                    synchronized (r) {
                        Channel.closeQuietly(r.callFd);
                        r.callFd = fd;
                    }
                }
                default -> {
                    Channel.closeQuietly(r.errFd);
                    r.errFd = fd;
                }
            }
        }
    }

    /** Stops one ring (GET_VRING_BASE) and returns where the device got to in it. */
    private synchronized int stopRing(Vring r) {
        boolean wasActive = modelActive;
        stopModel();
        r.started = false;
        Channel.closeQuietly(r.kickFd);
        r.kickFd = -1;
        if (wasActive) {
            reconfigure();
        }
        return r.base;
    }

    private synchronized void resetDevice() {
        stopModel();
        for (Vring r : rings) {
            dropFds(r);
            r.num = 0;
            r.addressed = false;
            r.base = 0;
            r.enabled = false;
            r.started = false;
        }
        // The acknowledged features stand until the next SET_FEATURES: they decide, among other things,
        // whether rings start enabled (F_PROTOCOL_FEATURES), which a reset must not silently change.
    }

    private void dropFds(Vring r) {
        Channel.closeQuietly(r.kickFd);
        Channel.closeQuietly(r.errFd);
        r.kickFd = -1;
        r.errFd = -1;
        synchronized (r) {
            Channel.closeQuietly(r.callFd);
            r.callFd = -1;
        }
    }

    /** Stops the device model and its kick threads, remembering each ring's position in {@code base}. */
    private void stopModel() {
        if (!modelActive) {
            return;
        }
        modelActive = false;
        if (kicks != null) {
            kicks.stop();
            kicks = null;
        }
        model.reset();
        for (Vring r : rings) {
            if (r.queue != null) {
                r.base = r.queue.state().nextAvail();
                r.queue = null;
            }
        }
    }

    /** Starts the device model over every ready ring (or leaves it stopped when none is). */
    private void reconfigure() {
        stopModel();
        if (memory == null) {
            return;
        }
        List<DeviceQueue> queues = new ArrayList<>();
        List<Interrupt> irqs = new ArrayList<>();
        boolean any = false;
        long virtioFeatures = features & ~VhostUser.F_PROTOCOL_FEATURES;
        for (Vring r : rings) {
            DeviceQueue q = null;
            if (r.ready()) {
                try {
                    // used_idx is the ring's own; resume both indices from the base (§ "ring states")
                    int used = usedIndex(r);
                    q = DeviceQueue.create(memory, r.index, r.num, new RingAddresses(translate(r.descUser, 16L * r.num),
                            translate(r.availUser, 6 + 2L * r.num), translate(r.usedUser, 6 + 8L * r.num)),
                            virtioFeatures, new QueueState(r.base, used));
                    if (inflight != null && r.index < inflightQueues && r.num == inflightQueueSize) {
                        q.trackInflight(io.jvirtio.core.queue.split.InflightRegion.attach(
                                inflight.asSlice(inflightQueueBytes(inflightQueueSize) * r.index), r.num));
                    }
                    any = true;
                } catch (VirtqueueException | ProtocolException | IllegalArgumentException e) {
                    failure("ring " + r.index + ": " + e.getMessage());
                    q = null;
                }
            }
            r.queue = q;
            queues.add(q);
            irqs.add(caller(r));
        }
        if (!any) {
            return;
        }
        int[] fds = new int[rings.length];
        for (Vring r : rings) {
            model.enableQueue(r.index, r.enabled);
            boolean eventfd = r.queue != null && !r.kickPolling && r.kickFd >= 0;
            // A device that waits on the kick eventfd itself saves a thread hand-off per kick.
            boolean taken = model.watchKicks(r.index, eventfd ? r.kickFd : -1);
            fds[r.index] = r.queue == null || taken ? -2 : r.kickPolling ? -1 : r.kickFd;
        }
        model.activate(new DeviceContext(memory, virtioFeatures, queues, irqs, this::failure));
        modelActive = true;
        if (java.util.Arrays.stream(fds).allMatch(fd -> fd == -2)) {
            return; // the device waits on every kick itself
        }
        try {
            kicks = new KickLoop(name + "-kicks", fds, model::queueNotify);
        } catch (NativeException e) {
            failure("cannot wait for kicks: " + e.getMessage());
        }
    }

    private int usedIndex(Vring r) throws ProtocolException {
        try {
            return Short.toUnsignedInt(memory.readU16(translate(r.usedUser, 4) + 2));
        } catch (io.jvirtio.core.memory.GuestMemoryException e) {
            throw new ProtocolException("ring " + r.index + " used ring outside memory");
        }
    }

    /** A frontend virtual address to a guest-physical one, through the memory table. */
    private long translate(long user, long length) throws ProtocolException {
        for (int i = 0; i < regionUser.length; i++) {
            long off = user - regionUser[i];
            if (Long.compareUnsigned(user, regionUser[i]) >= 0 && Long.compareUnsigned(off, regionSize[i]) < 0
                    && Long.compareUnsigned(length, regionSize[i] - off) <= 0) {
                return regionGuest[i] + off;
            }
        }
        throw new ProtocolException(String.format("address 0x%x (+%d) is in no memory region", user, length));
    }

    /**
     * The interrupt of ring {@code r}: a write to its current call eventfd (none in polling mode). The fd
     * is read under the ring's lock at each interrupt, since the front-end may replace it at any time.
     */
    private Interrupt caller(Vring r) {
        Arena arena = Arena.ofAuto();
        MemorySegment one = arena.allocate(8);
        MemorySegment state = Posix.callState(arena);
        return () -> {
            synchronized (r) {
                if (r.callFd < 0) {
                    return;
                }
                try {
                    Posix.eventfdSignal(r.callFd, one, state);
                } catch (NativeException e) {
                    LOG.log(Level.DEBUG, "{0}: call ring {1}: {2}", name, r.index, e.getMessage());
                }
            }
        };
    }

    /** The device model found the driver's ring unusable: log it and tell the frontend (SET_VRING_ERR fds). */
    private void failure(String reason) {
        LOG.log(Level.WARNING, "{0}: device needs reset: {1}", name, reason);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment one = a.allocate(8);
            MemorySegment state = Posix.callState(a);
            for (Vring r : rings) {
                if (r.errFd >= 0) {
                    try {
                        Posix.eventfdSignal(r.errFd, one, state);
                    } catch (NativeException e) {
                        LOG.log(Level.DEBUG, e.getMessage());
                    }
                }
            }
        }
    }

    long featuresAcked() {
        return features & ~VhostUser.F_PROTOCOL_FEATURES;
    }

    boolean hasFeature(Feature f) {
        return f.isSet(features);
    }
}
