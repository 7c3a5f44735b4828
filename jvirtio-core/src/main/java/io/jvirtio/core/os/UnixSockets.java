package io.jvirtio.core.os;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * Unix stream sockets over FFM, the way vhost-user and NBD use them: listen, accept and connect by path,
 * and messages that carry descriptors (SCM_RIGHTS) — the memory regions and eventfds vhost-user passes.
 * Errors are {@link NativeException}s naming the call and its argument.
 */
public final class UnixSockets {
    private static final MethodHandle SOCKET = Posix.bind("socket", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT));
    private static final MethodHandle BIND = Posix.bind("bind", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT));
    private static final MethodHandle LISTEN = Posix.bind("listen", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));
    private static final MethodHandle ACCEPT4 = Posix.bind("accept4", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, ADDRESS, JAVA_INT));
    private static final MethodHandle CONNECT = Posix.bind("connect", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT));
    private static final MethodHandle SENDMSG = Posix.bind("sendmsg", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_INT));
    private static final MethodHandle RECVMSG = Posix.bind("recvmsg", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_INT));
    private static final MethodHandle SHUTDOWN = Posix.bind("shutdown", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));

    static final int AF_UNIX = 1;
    static final int SOCK_STREAM = 1;
    static final int SOCK_CLOEXEC = 0x80000;
    static final int SOL_SOCKET = 1;
    static final int SCM_RIGHTS = 1;
    static final int MSG_NOSIGNAL = 0x4000;
    static final int MSG_CTRUNC = 0x8;
    static final int MSG_CMSG_CLOEXEC = 0x40000000;
    /** The most descriptors one message carries (vhost-user sends at most 8 with SET_MEM_TABLE). */
    public static final int MAX_FDS = 16;

    private UnixSockets() {
    }

    private static MemorySegment sockaddrUn(Arena a, String path) {
        byte[] p = path.getBytes(java.nio.charset.StandardCharsets.UTF_8);
        if (p.length >= 108) {
            throw new IllegalArgumentException("socket path longer than 107 bytes: " + path);
        }
        MemorySegment addr = a.allocate(110);
        addr.set(java.lang.foreign.ValueLayout.JAVA_SHORT, 0, (short) AF_UNIX);
        MemorySegment.copy(p, 0, addr, java.lang.foreign.ValueLayout.JAVA_BYTE, 2, p.length);
        return addr;
    }

    /** A listening Unix stream socket bound to {@code path} (which must not exist). */
    public static int listen(String path, int backlog) throws NativeException {
        int fd = (int) Posix.check("socket", "AF_UNIX", (st, a) -> (int) SOCKET.invokeExact(st, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        try {
            Posix.check("bind", path, (st, a) -> (int) BIND.invokeExact(st, fd, sockaddrUn(a, path), 110));
            Posix.check("listen", path, (st, a) -> (int) LISTEN.invokeExact(st, fd, backlog));
            return fd;
        } catch (NativeException e) {
            Posix.close(fd);
            throw e;
        }
    }

    /** Accepts one connection (blocking). */
    public static int accept(int listenFd) throws NativeException {
        return (int) Posix.check("accept4", "fd " + listenFd,
                (st, a) -> (int) ACCEPT4.invokeExact(st, listenFd, MemorySegment.NULL, MemorySegment.NULL, SOCK_CLOEXEC));
    }

    /** A Unix stream socket connected to {@code path}. */
    public static int connect(String path) throws NativeException {
        int fd = (int) Posix.check("socket", "AF_UNIX", (st, a) -> (int) SOCKET.invokeExact(st, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        try {
            Posix.check("connect", path, (st, a) -> (int) CONNECT.invokeExact(st, fd, sockaddrUn(a, path), 110));
            return fd;
        } catch (NativeException e) {
            Posix.close(fd);
            throw e;
        }
    }

    /** {@code shutdown(fd, SHUT_RDWR)}: wakes a thread blocked reading the socket. */
    public static void shutdown(int fd) {
        try {
            Posix.check("shutdown", "fd " + fd, (st, a) -> (int) SHUTDOWN.invokeExact(st, fd, 2));
        } catch (NativeException e) {
            // already closed by the peer: nothing to wake
        }
    }

    /**
     * Sends all of {@code data} with {@code fds} attached as SCM_RIGHTS to the first byte (the way
     * vhost-user passes memory and eventfds).
     */
    public static void sendWithFds(int fd, byte[] data, int[] fds) throws NativeException {
        if (fds.length > MAX_FDS) {
            throw new IllegalArgumentException(fds.length + " descriptors in one message");
        }
        Posix.check("sendmsg", "fd " + fd, (st, a) -> {
            MemorySegment buf = a.allocate(Math.max(1, data.length));
            MemorySegment.copy(data, 0, buf, java.lang.foreign.ValueLayout.JAVA_BYTE, 0, data.length);
            long sent = 0;
            boolean first = true;
            while (sent < data.length) {
                MemorySegment iov = a.allocate(16, 8);
                iov.set(java.lang.foreign.ValueLayout.ADDRESS, 0, buf.asSlice(sent));
                iov.set(JAVA_LONG, 8, data.length - sent);
                MemorySegment msg = a.allocate(56, 8);
                msg.set(java.lang.foreign.ValueLayout.ADDRESS, 16, iov);
                msg.set(JAVA_LONG, 24, 1);
                if (first && fds.length > 0) {
                    long space = 16 + ((4L * fds.length + 7) & ~7L);
                    MemorySegment cmsg = a.allocate(space, 8);
                    cmsg.set(JAVA_LONG, 0, 16 + 4L * fds.length);
                    cmsg.set(JAVA_INT, 8, SOL_SOCKET);
                    cmsg.set(JAVA_INT, 12, SCM_RIGHTS);
                    for (int i = 0; i < fds.length; i++) {
                        cmsg.set(JAVA_INT, 16 + 4L * i, fds[i]);
                    }
                    msg.set(java.lang.foreign.ValueLayout.ADDRESS, 32, cmsg);
                    msg.set(JAVA_LONG, 40, space);
                }
                long n = (long) SENDMSG.invokeExact(st, fd, msg, MSG_NOSIGNAL);
                if (n < 0 && Posix.errno(st) == FileIo.EINTR) {
                    continue; // nothing of this part went (a socket with SO_SNDTIMEO is not restarted)
                }
                if (n < 0) {
                    return n;
                }
                sent += n;
                first = false;
            }
            return sent;
        });
    }

    /**
     * Receives up to {@code dst.length} bytes (at least one unless the peer closed) and any descriptors
     * that came with them, which are added to {@code fdsOut}. Returns the byte count, 0 at end of stream.
     *
     * @throws NativeException also when descriptors were cut off (MSG_CTRUNC); those that arrived are closed
     */
    public static int recvWithFds(int fd, byte[] dst, int offset, int length, java.util.List<Integer> fdsOut)
            throws NativeException {
        return (int) Posix.check("recvmsg", "fd " + fd, (st, a) -> {
            MemorySegment buf = a.allocate(Math.max(1, length));
            MemorySegment iov = a.allocate(16, 8);
            iov.set(java.lang.foreign.ValueLayout.ADDRESS, 0, buf);
            iov.set(JAVA_LONG, 8, length);
            long space = 16 + 4L * MAX_FDS;
            MemorySegment cmsg = a.allocate(space, 8);
            MemorySegment msg = a.allocate(56, 8);
            msg.set(java.lang.foreign.ValueLayout.ADDRESS, 16, iov);
            msg.set(JAVA_LONG, 24, 1);
            msg.set(java.lang.foreign.ValueLayout.ADDRESS, 32, cmsg);
            msg.set(JAVA_LONG, 40, space);
            long n;
            do {
                // a signal before any byte came: again (with SO_RCVTIMEO set the kernel does not restart it)
                n = (long) RECVMSG.invokeExact(st, fd, msg, MSG_CMSG_CLOEXEC);
            } while (n < 0 && Posix.errno(st) == FileIo.EINTR);
            if (n < 0) {
                return n;
            }
            long controlLen = msg.get(JAVA_LONG, 40);
            java.util.List<Integer> got = new java.util.ArrayList<>();
            long at = 0;
            while (controlLen - at >= 16) {
                long len = cmsg.get(JAVA_LONG, at);
                if (len < 16 || at + len > controlLen) {
                    break;
                }
                if (cmsg.get(JAVA_INT, at + 8) == SOL_SOCKET && cmsg.get(JAVA_INT, at + 12) == SCM_RIGHTS) {
                    for (long i = 16; i + 4 <= len; i += 4) {
                        got.add(cmsg.get(JAVA_INT, at + i));
                    }
                }
                at += (len + 7) & ~7L;
            }
            if ((msg.get(JAVA_INT, 48) & MSG_CTRUNC) != 0) {
                for (int f : got) {
                    Posix.close(f);
                }
                throw new NativeException("recvmsg", 105, "descriptors truncated (more than " + MAX_FDS + ")");
            }
            fdsOut.addAll(got);
            MemorySegment.copy(buf, java.lang.foreign.ValueLayout.JAVA_BYTE, 0, dst, offset, (int) n);
            return n;
        });
    }
}
