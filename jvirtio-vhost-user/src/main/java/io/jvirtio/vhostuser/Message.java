package io.jvirtio.vhostuser;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * One vhost-user message: header fields, payload (little-endian, the host's order on x86 and what the
 * protocol uses), and the descriptors that came with it. The receiver owns {@link #fds()} and closes
 * every one it does not keep.
 */
public record Message(int request, int flags, byte[] payload, int[] fds) {

    public int size() {
        return payload.length;
    }

    public boolean needReply() {
        return (flags & VhostUser.FLAG_NEED_REPLY) != 0;
    }

    public ByteBuffer body() {
        return ByteBuffer.wrap(payload).order(ByteOrder.LITTLE_ENDIAN);
    }

    /** The u64 payload of many requests. */
    public long u64() throws ProtocolException {
        expectSize(8);
        return body().getLong(0);
    }

    public void expectSize(int n) throws ProtocolException {
        if (payload.length != n) {
            throw new ProtocolException(VhostUser.name(request) + " carries " + payload.length + " bytes, expected " + n);
        }
    }

    public void expectFds(int n) throws ProtocolException {
        if (fds.length != n) {
            throw new ProtocolException(VhostUser.name(request) + " came with " + fds.length + " descriptors, expected " + n);
        }
    }

    public static Message of(int request, byte[] payload, int... fds) {
        return new Message(request, VhostUser.VERSION, payload, fds);
    }

    public static Message u64(int request, long value, int... fds) {
        return of(request, ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(value).array(), fds);
    }

    public static Message reply(Message to, byte[] payload, int... fds) {
        return new Message(to.request(), VhostUser.VERSION | VhostUser.FLAG_REPLY, payload, fds);
    }

    /** The two-u32 vring state (index, num). */
    public static byte[] vringState(int index, int num) {
        return ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putInt(index).putInt(num).array();
    }

    @Override
    public String toString() {
        return VhostUser.name(request) + "[" + payload.length + " bytes, " + fds.length + " fds]";
    }
}
