package io.jvirtio.vhostuser;

import io.jvirtio.core.device.VirtioDeviceModel;
import io.jvirtio.core.os.NativeException;
import io.jvirtio.core.os.Posix;
import io.jvirtio.core.spec.DeviceStatus;
import io.jvirtio.core.spec.Feature;

import java.io.IOException;
import java.lang.System.Logger.Level;
import java.lang.System.Logger;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * One front-end connection to a {@link VhostUserBackend}: reads each message, has {@link Payloads} decode
 * and check it, and hands it to where it belongs — {@link RingControl} for the rings and the device model,
 * {@link MemoryTable} and {@link InflightBuffer} for shared memory — answering as vhost-user.rst asks. A bad
 * message ends the session with the reason logged (or, where REPLY_ACK was asked for, gets a non-zero ack and
 * changes nothing); ending it stops the device, unmaps guest memory and closes every descriptor it was given.
 */
final class BackendSession implements Runnable {
    private static final Logger LOG = System.getLogger(BackendSession.class.getName());
    static final long PROTOCOL_FEATURES = (1L << VhostUser.PROTOCOL_F_MQ) | (1L << VhostUser.PROTOCOL_F_REPLY_ACK)
            | (1L << VhostUser.PROTOCOL_F_CONFIG) | (1L << VhostUser.PROTOCOL_F_RESET_DEVICE)
            | (1L << VhostUser.PROTOCOL_F_STATUS)
            | (1L << VhostUser.PROTOCOL_F_LOG_SHMFD) | (1L << VhostUser.PROTOCOL_F_BACKEND_REQ);
    /** The vhost-user feature bits (not virtio's) the back-end offers with the device's. */
    static final long VHOST_FEATURES = VhostUser.F_PROTOCOL_FEATURES | VhostUser.F_LOG_ALL;
    /** A handler that wrote its own reply (one carrying a descriptor). */
    private static final byte[] REPLIED = new byte[0];

    private final Channel channel;
    private final VirtioDeviceModel model;
    private final String name;
    private final RingControl rings;
    private long features;
    private long protocolFeatures;
    /** The device status the front-end set (PROTOCOL_F_STATUS), as the back-end accepted it. */
    private int status;
    /** The back-end channel (SET_BACKEND_REQ_FD): where the back-end tells the front-end things. */
    private volatile Channel backendChannel;
    private volatile boolean closing;
    private volatile String endReason = "frontend disconnected";
    final java.util.concurrent.atomic.AtomicLong messages = new java.util.concurrent.atomic.AtomicLong();

    BackendSession(int fd, VirtioDeviceModel model, String name) {
        this(fd, model, name, () -> { });
    }

    /** @param onRingError called whenever the device finds one of the session's rings broken */
    BackendSession(int fd, VirtioDeviceModel model, String name, Runnable onRingError) {
        this.channel = new Channel(fd);
        this.model = model;
        this.name = name;
        this.rings = new RingControl(model, name, onRingError);
        model.config().onChange(this::configChanged);
    }

    /**
     * The device changed its configuration (a disk was resized): CONFIG_CHANGE_MSG on the back-end channel, so
     * the front-end reads it again and raises the guest's configuration interrupt. Without the channel the
     * guest learns it only at its next look.
     */
    private void configChanged() {
        Channel c = backendChannel;
        if (c == null) {
            LOG.log(Level.INFO, "{0}: configuration changed; no back-end channel to say so", name);
            return;
        }
        try {
            synchronized (c) {
                c.write(Message.of(VhostUser.BACKEND_CONFIG_CHANGE_MSG, new byte[0]));
            }
        } catch (IOException e) {
            LOG.log(Level.WARNING, "{0}: cannot send CONFIG_CHANGE_MSG: {1}", name, e.getMessage());
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
        Events.Session event = new Events.Session();
        event.begin();
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
            event.name = name;
            event.endReason = endReason;
            event.messages = messages.get();
            event.commit();
        }
    }

    /**
     * A well-framed request the back-end could not carry out, from a front-end that asked for an ack
     * (REPLY_ACK negotiated, need_reply set): it gets a non-zero ack and the session goes on, its state as
     * before the request (vhost-user.rst "REPLY_ACK"). Without an ack to give, the connection ends.
     */
    private boolean ackFailure(Message m, ProtocolException e) throws IOException {
        if (!m.needReply() || !negotiated(VhostUser.PROTOCOL_F_REPLY_ACK) || VhostUser.hasReply(m.request())) {
            return false;
        }
        LOG.log(Level.WARNING, "{0}: {1} failed, acked as failed: {2}", name, VhostUser.name(m.request()), e.getMessage());
        channel.write(Message.reply(m, u64(1)));
        return true;
    }

    private boolean negotiated(int protocolFeature) {
        return (protocolFeatures & (1L << protocolFeature)) != 0;
    }

    /** Ends the session from another thread (server shutdown). */
    void close() {
        closing = true;
        channel.shutdown();
    }

    private synchronized void end() {
        model.config().onChange(() -> { });
        Channel c = backendChannel;
        backendChannel = null;
        if (c != null) {
            c.close();
        }
        rings.close(); // whatever the device does wrong while stopping, descriptors and mappings are freed
        channel.close();
        LOG.log(Level.INFO, "{0}: session ended ({1})", name, endReason);
    }

    private synchronized void handle(Message m) throws ProtocolException, IOException {
        byte[] reply = switch (m.request()) {
            case VhostUser.GET_FEATURES -> {
                m.expectSize(0);
                yield u64(model.deviceFeatures() | VHOST_FEATURES);
            }
            case VhostUser.SET_FEATURES -> {
                setFeatures(m.u64());
                yield null;
            }
            case VhostUser.SET_OWNER -> {
                m.expectSize(0);
                yield null;
            }
            case VhostUser.RESET_OWNER, VhostUser.RESET_DEVICE -> {
                // The acknowledged features stand until the next SET_FEATURES: they decide, among other things,
                // whether rings start enabled (F_PROTOCOL_FEATURES), which a reset must not silently change.
                rings.reset(true);
                status = 0;
                yield null;
            }
            case VhostUser.GET_PROTOCOL_FEATURES -> {
                m.expectSize(0);
                yield u64(protocolFeaturesOffered());
            }
            case VhostUser.SET_PROTOCOL_FEATURES -> {
                long f = m.u64();
                if ((f & ~protocolFeaturesOffered()) != 0) {
                    throw new ProtocolException(String.format("SET_PROTOCOL_FEATURES 0x%x has bits never offered", f));
                }
                protocolFeatures = f;
                yield null;
            }
            case VhostUser.GET_QUEUE_NUM -> {
                m.expectSize(0);
                yield u64(rings.count());
            }
            case VhostUser.SET_MEM_TABLE -> {
                rings.setMemory(MemoryTable.map(m)); // the mappings stay valid without the descriptors
                yield null;
            }
            case VhostUser.SET_VRING_NUM -> {
                Payloads.VringState s = Payloads.VringState.decode(m);
                Vring r = rings.ring(s.index());
                // a split ring's size is a power of two, a packed ring's any size (VIRTIO 1.2 §2.7, §2.8)
                if (s.value() <= 0 || s.value() > 32768 || (Integer.bitCount(s.value()) != 1 && !rings.packed())) {
                    throw new ProtocolException("SET_VRING_NUM " + s.value() + " for ring " + r.index
                            + (rings.packed() ? " is not in 1..32768" : " is not a power of two up to 32768"));
                }
                rings.setNum(r, s.value());
                yield null;
            }
            case VhostUser.SET_VRING_ADDR -> {
                Payloads.VringAddr a = Payloads.VringAddr.decode(m);
                rings.setAddr(rings.ring(a.index()), a);
                yield null;
            }
            case VhostUser.SET_LOG_BASE -> {
                requireProtocolFeature(m, VhostUser.PROTOCOL_F_LOG_SHMFD);
                setLogBase(m);
                yield u64(0); // LOG_SHMFD: the log is mapped
            }
            case VhostUser.SET_LOG_FD -> {
                m.expectSize(0);
                yield null; // the log-full eventfd of kernel vhost: a shared-memory log never fills
            }
            case VhostUser.SET_VRING_BASE -> {
                Payloads.VringState s = Payloads.VringState.decode(m);
                Vring r = rings.ring(s.index());
                if ((s.value() & ~0xffff) != 0 && !rings.packed()) {
                    throw new ProtocolException("SET_VRING_BASE " + s.value() + " is not a 16-bit ring index");
                }
                rings.setBase(r, s.value());
                yield null;
            }
            case VhostUser.GET_VRING_BASE -> {
                Vring r = rings.ring(Payloads.VringState.decode(m).index());
                yield Message.vringState(r.index, rings.stopRing(r));
            }
            case VhostUser.SET_VRING_KICK, VhostUser.SET_VRING_CALL, VhostUser.SET_VRING_ERR -> {
                setVringFd(m);
                yield null;
            }
            case VhostUser.SET_VRING_ENABLE -> {
                Payloads.VringState s = Payloads.VringState.decode(m);
                Vring r = rings.ring(s.index());
                if (s.value() != 0 && s.value() != 1) {
                    throw new ProtocolException("SET_VRING_ENABLE " + s.value() + " for ring " + r.index);
                }
                rings.enable(r, s.value() == 1);
                yield null;
            }
            case VhostUser.GET_CONFIG -> getConfig(m);
            case VhostUser.SET_CONFIG -> {
                requireProtocolFeature(m, VhostUser.PROTOCOL_F_CONFIG);
                Payloads.ConfigRegion c = Payloads.ConfigRegion.decode(m, model.config().size());
                model.config().driverWrite(c.offset(), c.data());
                yield null;
            }
            case VhostUser.GET_INFLIGHT_FD -> {
                // vhost-user.rst: sent only "when VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD protocol feature has been
                // successfully negotiated" (and SET_INFLIGHT_FD likewise)
                requireProtocolFeature(m, VhostUser.PROTOCOL_F_INFLIGHT_SHMFD);
                getInflight(m);
                yield REPLIED;
            }
            case VhostUser.SET_INFLIGHT_FD -> {
                requireProtocolFeature(m, VhostUser.PROTOCOL_F_INFLIGHT_SHMFD);
                setInflight(m);
                yield null;
            }
            case VhostUser.SET_BACKEND_REQ_FD -> {
                requireProtocolFeature(m, VhostUser.PROTOCOL_F_BACKEND_REQ);
                m.expectSize(0);
                m.expectFds(1);
                Channel old = backendChannel;
                backendChannel = new Channel(m.fds()[0]);
                m.fds()[0] = -1; // kept
                if (old != null) {
                    old.close();
                }
                yield null;
            }
            case VhostUser.SEND_RARP -> {
                requireProtocolFeature(m, VhostUser.PROTOCOL_F_RARP);
                byte[] mac = java.util.Arrays.copyOf(m.payload(), 6);
                m.u64();
                model.announce(mac);
                yield null;
            }
            case VhostUser.SET_STATUS -> {
                requireProtocolFeature(m, VhostUser.PROTOCOL_F_STATUS);
                setStatus(m.u64());
                yield null;
            }
            case VhostUser.GET_STATUS -> {
                requireProtocolFeature(m, VhostUser.PROTOCOL_F_STATUS);
                m.expectSize(0);
                yield u64(status);
            }
            default -> throw new ProtocolException("unsupported request " + VhostUser.name(m.request()));
        };
        if (reply == REPLIED) {
            return;
        }
        if (reply != null) {
            channel.write(Message.reply(m, reply));
        } else if (m.needReply() && negotiated(VhostUser.PROTOCOL_F_REPLY_ACK)) {
            channel.write(Message.reply(m, u64(0)));
        }
    }

    /**
     * What GET_PROTOCOL_FEATURES offers: RARP only for a device with a network to announce to, INFLIGHT_SHMFD only
     * for one that resumes from the log ({@link VirtioDeviceModel#resubmitsInflight()}).
     */
    private long protocolFeaturesOffered() {
        return PROTOCOL_FEATURES
                | (model.type() == io.jvirtio.core.spec.DeviceType.NET ? 1L << VhostUser.PROTOCOL_F_RARP : 0)
                | (model.resubmitsInflight() ? 1L << VhostUser.PROTOCOL_F_INFLIGHT_SHMFD : 0);
    }

    private void requireProtocolFeature(Message m, int feature) throws ProtocolException {
        if (!negotiated(feature)) {
            throw new ProtocolException(VhostUser.name(m.request()) + " without its protocol feature (bit " + feature + ")");
        }
    }

    /**
     * SET_FEATURES: only bits that were offered. Without PROTOCOL_F_STATUS this is the only point where the
     * device can see the features (FEATURES_OK), so a combination it cannot operate fails the request.
     */
    private void setFeatures(long f) throws ProtocolException {
        long offered = model.deviceFeatures() | VHOST_FEATURES;
        if ((f & ~offered) != 0) {
            throw new ProtocolException(String.format("SET_FEATURES 0x%x has bits never offered (0x%x)", f, f & ~offered));
        }
        long virtio = f & ~VHOST_FEATURES;
        if (!negotiated(VhostUser.PROTOCOL_F_STATUS) && !model.acceptFeatures(virtio)) {
            throw new ProtocolException(String.format("SET_FEATURES 0x%x: the device cannot operate with these", f));
        }
        if (f != features) {
            // what the front-end chose: which ring format, IN_ORDER, offloads — what an operator asks first
            LOG.log(Level.INFO, "{0}: features {1}", name, Feature.describe(model.type(), virtio));
        }
        features = f;
        rings.setFeatures(virtio);
        rings.setLogging((f & VhostUser.F_LOG_ALL) != 0);
    }

    /** SET_LOG_BASE: the dirty-page bitmap QEMU reads during migration, mapped from its descriptor. */
    private void setLogBase(Message m) throws ProtocolException {
        Payloads.LogBase l = Payloads.LogBase.decode(m);
        java.lang.foreign.Arena arena = java.lang.foreign.Arena.ofShared();
        try {
            rings.setLog(new io.jvirtio.core.memory.DirtyLog(Posix.mmapPeerFd(m.fds()[0], l.offset(), l.size(), arena)),
                    arena);
        } catch (NativeException e) {
            arena.close();
            throw new ProtocolException("SET_LOG_BASE: cannot map the log: " + e.getMessage(), e);
        }
    }

    /**
     * SET_STATUS (PROTOCOL_F_STATUS): the virtio device status of the front-end's driver. FEATURES_OK is where
     * the device accepts or refuses the features (refused: the bit stays clear, which GET_STATUS shows, §3.1.1);
     * 0 resets the device — its state, not the rings' positions, which QEMU reads (GET_VRING_BASE) afterwards.
     */
    private void setStatus(long s) throws ProtocolException {
        if ((s & ~0xffL) != 0) {
            throw new ProtocolException(String.format("SET_STATUS 0x%x is not a device status byte", s));
        }
        int next = (int) s;
        if (next == 0) {
            rings.reset(false);
            status = 0;
            return;
        }
        if ((next & DeviceStatus.FEATURES_OK) != 0 && (status & DeviceStatus.FEATURES_OK) == 0
                && !model.acceptFeatures(features & ~VHOST_FEATURES)) {
            LOG.log(Level.WARNING, "{0}: FEATURES_OK refused for features 0x{1}", name, Long.toHexString(features));
            next &= ~DeviceStatus.FEATURES_OK;
        }
        status = next;
    }

    private static byte[] u64(long v) {
        return ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(v).array();
    }

    /**
     * GET_CONFIG: the configuration bytes asked for; a request out of range gets a zero-length payload, the
     * protocol's way to say it failed (vhost-user.rst GET_CONFIG), and the session goes on.
     */
    private byte[] getConfig(Message m) {
        Payloads.ConfigRegion c;
        try {
            requireProtocolFeature(m, VhostUser.PROTOCOL_F_CONFIG);
            c = Payloads.ConfigRegion.decode(m, model.config().size());
        } catch (ProtocolException e) {
            LOG.log(Level.WARNING, "{0}: GET_CONFIG refused: {1}", name, e.getMessage());
            return new byte[0];
        }
        byte[] out = m.payload().clone();
        model.config().read(c.offset(), out, 12, c.size());
        return out;
    }

    /** GET_INFLIGHT_FD: a fresh shared buffer for the front-end to keep and hand back after a restart. */
    private void getInflight(Message m) throws ProtocolException, IOException {
        Payloads.Inflight q = Payloads.Inflight.decode(m, rings.count());
        // sized for the ring format negotiated so far (QEMU sets the features first); all zero: fresh
        long size = InflightBuffer.bytes(features, q.queues(), q.queueSize());
        int fd = Posix.memfdCreate("jvirtio-inflight");
        try {
            Posix.ftruncate(fd, size);
            rings.setInflight(InflightBuffer.map(fd, 0, size, q.queues(), q.queueSize(), features));
            ByteBuffer r = ByteBuffer.allocate(m.size()).order(ByteOrder.LITTLE_ENDIAN);
            r.putLong(size).putLong(0).putShort((short) q.queues()).putShort((short) q.queueSize());
            channel.write(Message.reply(m, r.array(), fd));
        } finally {
            Channel.closeQuietly(fd);
        }
    }

    /** SET_INFLIGHT_FD: the buffer of a previous back-end (or of GET_INFLIGHT_FD); rings resume from it. */
    private void setInflight(Message m) throws ProtocolException {
        Payloads.Inflight q = Payloads.Inflight.decode(m, rings.count());
        m.expectFds(1);
        if (q.mmapSize() < InflightBuffer.bytes(features, q.queues(), q.queueSize()) || q.mmapOffset() < 0
                || (q.mmapOffset() & 4095) != 0) {
            throw new ProtocolException("SET_INFLIGHT_FD: " + q.mmapSize() + " bytes at " + q.mmapOffset() + " for "
                    + q.queues() + " queues of " + q.queueSize());
        }
        try {
            rings.setInflight(InflightBuffer.map(m.fds()[0], q.mmapOffset(), q.mmapSize(), q.queues(), q.queueSize(),
                    features));
        } catch (NativeException e) {
            throw new ProtocolException("SET_INFLIGHT_FD: cannot map: " + e.getMessage(), e);
        }
    }

    private void setVringFd(Message m) throws ProtocolException {
        Payloads.VringFd v = Payloads.VringFd.decode(m);
        Vring r = rings.ring(v.index());
        int fd = v.nofd() ? -1 : m.fds()[0];
        if (!v.nofd()) {
            // Whatever the front-end passed (an eventfd, or a full pipe), no read or write of ours may wait on it.
            try {
                Posix.setNonBlocking(fd);
            } catch (NativeException e) {
                throw new ProtocolException(VhostUser.name(m.request()) + ": unusable descriptor: " + e.getMessage(), e);
            }
            m.fds()[0] = -1; // kept: not closed when the message is done
        }
        switch (m.request()) {
            case VhostUser.SET_VRING_KICK -> rings.setKick(r, fd, v.nofd(), (features & VhostUser.F_PROTOCOL_FEATURES) == 0);
            case VhostUser.SET_VRING_CALL -> r.replaceCall(fd);
            default -> r.replaceErr(fd);
        }
    }

    long featuresAcked() {
        return features & ~VHOST_FEATURES;
    }

    boolean hasFeature(Feature f) {
        return f.isSet(features);
    }
}
