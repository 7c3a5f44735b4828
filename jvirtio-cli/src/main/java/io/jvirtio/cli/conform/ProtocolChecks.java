package io.jvirtio.cli.conform;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.os.Posix;
import io.jvirtio.core.os.UnixSockets;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.vhostuser.Message;
import io.jvirtio.vhostuser.VhostUser;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import java.util.Set;

/** The rules of QEMU's vhost-user document that every back-end keeps, whatever device it serves. */
final class ProtocolChecks {
    private ProtocolChecks() {
    }

    static List<Check> all() {
        return List.of(
                new Check("vu-features", "GET_FEATURES offers VERSION_1 and VHOST_USER_F_PROTOCOL_FEATURES", Set.of(), false,
                        ProtocolChecks::features),
                new Check("vu-reply-ack", "with REPLY_ACK, a request that asks for one gets a zero ack", Set.of(), false,
                        ProtocolChecks::replyAck),
                new Check("vu-reply-ack-failure", "with REPLY_ACK, a request that fails gets a non-zero ack", Set.of(), false,
                        ProtocolChecks::replyAckFailure),
                new Check("vu-queue-num", "with MQ, GET_QUEUE_NUM answers at least 1", Set.of(), false,
                        ProtocolChecks::queueNum),
                new Check("vu-config", "with CONFIG, GET_CONFIG answers the size asked for", Set.of(), false,
                        ProtocolChecks::config),
                new Check("vu-config-range", "GET_CONFIG out of range answers a zero-length payload", Set.of(), false,
                        ProtocolChecks::configRange),
                new Check("vu-malformed-size", "a header claiming a huge payload ends the connection", Set.of(), true,
                        ProtocolChecks::hugePayload),
                new Check("vu-unknown-request", "an unknown request is refused (closed, or a non-zero ack)", Set.of(), true,
                        ProtocolChecks::unknownRequest),
                new Check("vu-mem-table-unmappable", "a memory region whose descriptor cannot be mapped is refused", Set.of(),
                        true, ProtocolChecks::unmappableRegion),
                new Check("vu-mem-table-beyond-fd", "a memory region beyond the end of its file is refused", Set.of(), true,
                        ProtocolChecks::regionBeyondFile));
    }

    private static Result features(Target t, String id) {
        if (!Feature.VERSION_1.isSet(t.features())) {
            return Result.fail(id, String.format("features 0x%x lack VIRTIO_F_VERSION_1", t.features()));
        }
        if ((t.features() & VhostUser.F_PROTOCOL_FEATURES) == 0) {
            return Result.fail(id, "VHOST_USER_F_PROTOCOL_FEATURES not offered: no protocol feature can be negotiated");
        }
        return Result.pass(id, String.format("features 0x%x, protocol features 0x%x", t.features(), t.protocolFeatures()));
    }

    /**
     * A session with protocol features negotiated: what the back-end offers, but the split ring — the format
     * the grader's own rings use, and the one in which a queue size must be a power of two.
     */
    static Session negotiated(Target t) throws Exception {
        Session s = Session.open(t.socket());
        s.sendU64(VhostUser.SET_FEATURES, t.features() & ~Feature.RING_PACKED.mask());
        s.sendU64(VhostUser.SET_PROTOCOL_FEATURES, t.protocolFeatures());
        return s;
    }

    private static Result replyAck(Target t, String id) throws Exception {
        if (!t.hasProtocol(VhostUser.PROTOCOL_F_REPLY_ACK)) {
            return Result.skip(id, "REPLY_ACK not offered");
        }
        try (Session s = negotiated(t)) {
            s.ask(VhostUser.SET_OWNER, new byte[0]);
            Message m = s.reply(VhostUser.SET_OWNER);
            if (m == null || m.size() != 8) {
                return Result.fail(id, "SET_OWNER with need_reply: " + (m == null ? "connection closed" : m));
            }
            return m.body().getLong(0) == 0 ? Result.pass(id, "SET_OWNER acked 0")
                    : Result.fail(id, "SET_OWNER acked " + m.body().getLong(0));
        }
    }

    private static Result replyAckFailure(Target t, String id) throws Exception {
        if (!t.hasProtocol(VhostUser.PROTOCOL_F_REPLY_ACK)) {
            return Result.skip(id, "REPLY_ACK not offered");
        }
        try (Session s = negotiated(t)) {
            s.ask(VhostUser.SET_VRING_NUM, Message.vringState(0, 100));
            Message m = s.reply(VhostUser.SET_VRING_NUM);
            if (m == null) {
                return Result.fail(id, "SET_VRING_NUM 100 (no power of two): connection closed instead of a non-zero ack");
            }
            long ack = m.size() == 8 ? m.body().getLong(0) : -1;
            return ack != 0 ? Result.pass(id, "SET_VRING_NUM 100 acked " + ack)
                    : Result.fail(id, "SET_VRING_NUM 100 (no power of two) acked 0: accepted");
        }
    }

    private static Result queueNum(Target t, String id) throws Exception {
        if (!t.hasProtocol(VhostUser.PROTOCOL_F_MQ)) {
            return Result.skip(id, "MQ not offered");
        }
        try (Session s = negotiated(t)) {
            long n = s.getU64(VhostUser.GET_QUEUE_NUM);
            return n >= 1 && n <= 0x8000 ? Result.pass(id, n + " queues") : Result.fail(id, "GET_QUEUE_NUM " + n);
        }
    }

    private static byte[] configRequest(int offset, int size) {
        return ByteBuffer.allocate(12 + size).order(ByteOrder.LITTLE_ENDIAN).putInt(offset).putInt(size).putInt(0).array();
    }

    private static Result config(Target t, String id) throws Exception {
        if (!t.hasProtocol(VhostUser.PROTOCOL_F_CONFIG)) {
            return Result.skip(id, "CONFIG not offered");
        }
        try (Session s = negotiated(t)) {
            s.send(VhostUser.GET_CONFIG, configRequest(0, 4));
            Message m = s.reply(VhostUser.GET_CONFIG);
            if (m == null || m.size() != 16) {
                return Result.fail(id, "GET_CONFIG of 4 bytes: " + (m == null ? "connection closed" : m.size() + " bytes"));
            }
            return Result.pass(id, "4 bytes at offset 0");
        }
    }

    private static Result configRange(Target t, String id) throws Exception {
        if (!t.hasProtocol(VhostUser.PROTOCOL_F_CONFIG)) {
            return Result.skip(id, "CONFIG not offered");
        }
        try (Session s = negotiated(t)) {
            s.send(VhostUser.GET_CONFIG, configRequest(0x1000, 8));
            Message m = s.reply(VhostUser.GET_CONFIG);
            if (m == null) {
                return Result.fail(id, "GET_CONFIG at 0x1000: connection closed instead of a zero-length reply");
            }
            return m.size() == 0 ? Result.pass(id, "zero-length reply")
                    : Result.fail(id, "GET_CONFIG at offset 0x1000 answered " + m.size() + " bytes as if it were valid");
        }
    }

    private static Result hugePayload(Target t, String id) throws Exception {
        try (Session s = Session.open(t.socket())) {
            byte[] header = ByteBuffer.allocate(12).order(ByteOrder.LITTLE_ENDIAN).putInt(VhostUser.GET_FEATURES)
                    .putInt(VhostUser.VERSION).putInt(0x7fff_ffff).array();
            UnixSockets.sendWithFds(socketFd(s), header, new int[0]);
            return s.closedByPeer() ? Result.pass(id, "closed")
                    : Result.fail(id, "still waiting for a 2 GiB payload after " + Session.REPLY_TIMEOUT_MS + " ms");
        }
    }

    private static int socketFd(Session s) {
        return s.channel.rawFd();
    }

    private static Result unknownRequest(Target t, String id) throws Exception {
        try (Session s = negotiated(t)) {
            s.ask(999, new byte[0]);
            Message m = s.reply(999);
            if (m == null) {
                return Result.pass(id, "connection closed");
            }
            long ack = m.size() == 8 ? m.body().getLong(0) : -1;
            return ack != 0 ? Result.pass(id, "acked " + ack) : Result.fail(id, "request 999 acked 0");
        }
    }

    /** SET_MEM_TABLE of one region with {@code fd}; PASS if the back-end refuses it. */
    private static Result refusedRegion(Target t, String id, int fd, long size, long offset, String what) throws Exception {
        try (Session s = negotiated(t)) {
            byte[] table = ByteBuffer.allocate(40).order(ByteOrder.LITTLE_ENDIAN).putInt(1).putInt(0)
                    .putLong(0).putLong(size).putLong(0x7f00_0000_0000L).putLong(offset).array();
            if (t.hasProtocol(VhostUser.PROTOCOL_F_REPLY_ACK)) {
                s.ask(VhostUser.SET_MEM_TABLE, table, fd);
                Message m = s.reply(VhostUser.SET_MEM_TABLE);
                if (m == null) {
                    return Result.pass(id, what + ": connection closed");
                }
                long ack = m.size() == 8 ? m.body().getLong(0) : -1;
                return ack != 0 ? Result.pass(id, what + ": acked " + ack) : Result.fail(id, what + ": accepted (ack 0)");
            }
            s.send(VhostUser.SET_MEM_TABLE, table, fd);
            return s.closedByPeer() ? Result.pass(id, what + ": connection closed")
                    : Result.fail(id, what + ": accepted (connection still open)");
        }
    }

    private static Result unmappableRegion(Target t, String id) throws Exception {
        int fd = Posix.eventfd();
        try {
            return refusedRegion(t, id, fd, 1 << 20, 0, "an eventfd as guest memory");
        } finally {
            Posix.close(fd);
        }
    }

    private static Result regionBeyondFile(Target t, String id) throws Exception {
        try (GuestMemory mem = GuestMemory.memfd(0, 1 << 20)) {
            return refusedRegion(t, id, mem.region(0).fd(), 1 << 20, 1 << 20,
                    "1 MiB at offset 1 MiB of a 1 MiB memfd (access would fault)");
        }
    }

    /** For checks that need the device type in their title. */
    static String name(DeviceType t) {
        return t.name().toLowerCase();
    }
}
