package io.jvirtio.cli.conform;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.os.NativeException;
import io.jvirtio.vhostuser.Channel;
import io.jvirtio.vhostuser.Message;
import io.jvirtio.vhostuser.ProtocolException;
import io.jvirtio.vhostuser.VhostUser;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;

/**
 * One raw front-end connection for a check: whole messages, every wait bounded, so that a back-end that
 * hangs or dies shows up as a failed check, never as a grader that hangs.
 */
final class Session implements AutoCloseable {
    static final int REPLY_TIMEOUT_MS = 5000;

    final Channel channel;

    private Session(Channel channel) {
        this.channel = channel;
    }

    static Session open(Path socket) throws NativeException {
        return new Session(Channel.connect(socket));
    }

    void send(int request, byte[] payload, int... fds) throws NativeException {
        channel.write(Message.of(request, payload, fds));
    }

    void sendU64(int request, long value, int... fds) throws NativeException {
        channel.write(Message.u64(request, value, fds));
    }

    /** Sends with need_reply set. */
    void ask(int request, byte[] payload, int... fds) throws NativeException {
        channel.write(new Message(request, VhostUser.VERSION | VhostUser.FLAG_NEED_REPLY, payload, fds));
    }

    /**
     * The next message within the timeout; null if the back-end closed the connection.
     *
     * @throws IOException naming the request when nothing came in time
     */
    Message reply(int request) throws IOException {
        if (!channel.await(REPLY_TIMEOUT_MS)) {
            throw new IOException("no reply to " + VhostUser.name(request) + " within " + REPLY_TIMEOUT_MS + " ms");
        }
        try {
            return channel.read();
        } catch (NativeException e) {
            if (e.errno() == 104) { // ECONNRESET: closed with our data unread
                return null;
            }
            throw e;
        } catch (ProtocolException e) {
            throw new IOException("malformed reply to " + VhostUser.name(request) + ": " + e.getMessage(), e);
        }
    }

    long getU64(int request) throws IOException {
        send(request, new byte[0]);
        Message m = reply(request);
        if (m == null) {
            throw new IOException("connection closed instead of answering " + VhostUser.name(request));
        }
        if (m.request() != request || m.size() != 8) {
            throw new IOException(VhostUser.name(request) + " answered with " + m);
        }
        return m.body().getLong(0);
    }

    /** True when the back-end closed the connection (within the timeout). */
    boolean closedByPeer() throws IOException {
        if (!channel.await(REPLY_TIMEOUT_MS)) {
            return false;
        }
        try {
            return channel.read() == null;
        } catch (NativeException e) {
            return e.errno() == 104;
        } catch (ProtocolException e) {
            return false;
        }
    }

    /** A one-region memory table covering all of {@code mem}; returns the front-end address of guest 0. */
    long memTable(GuestMemory mem) throws NativeException {
        var r = mem.region(0);
        long user = r.segment().address();
        send(VhostUser.SET_MEM_TABLE, ByteBuffer.allocate(40).order(ByteOrder.LITTLE_ENDIAN).putInt(1).putInt(0)
                .putLong(r.guestAddress()).putLong(r.size()).putLong(user).putLong(0).array(), r.fd());
        return user - r.guestAddress();
    }

    @Override
    public void close() {
        channel.close();
    }
}
