package io.jvirtio.core.os;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.net.Inet6Address;
import java.net.InetAddress;
import java.nio.ByteOrder;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * Stream sockets for network block protocols (NBD), bound with FFM: TCP connect, send and receive
 * timeouts, and the data path — {@code writev} from guest memory and {@code read} into it, no copy —
 * returning a negative errno rather than throwing.
 */
public final class SocketIo {
    private static final int AF_INET = 2;
    private static final int AF_INET6 = 10;
    private static final int SOCK_STREAM = 1;
    private static final int SOCK_CLOEXEC = 0x80000;
    private static final int SOL_SOCKET = 1;
    private static final int SO_RCVTIMEO = 20;
    private static final int SO_SNDTIMEO = 21;
    private static final int IPPROTO_TCP = 6;
    private static final int TCP_NODELAY = 1;

    private static final MethodHandle SOCKET = Posix.bind("socket", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT));
    private static final MethodHandle CONNECT = Posix.bind("connect", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT));
    private static final MethodHandle SETSOCKOPT = Posix.bind("setsockopt",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT));
    private static final MethodHandle WRITEV = Posix.bind("writev", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_INT));
    private static final MethodHandle READ = Posix.bind("read", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG));
    private static final MethodHandle POLL = Posix.bind("poll", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT));
    private static final short POLLIN = 1;
    private static final short POLLHUP_ERR = 0x10 | 0x8;

    private SocketIo() {
    }

    /** A TCP connection to {@code address:port}, with TCP_NODELAY (requests are small and latency counts). */
    public static int tcpConnect(InetAddress address, int port) throws NativeException {
        boolean v6 = address instanceof Inet6Address;
        int fd = (int) Posix.check("socket", v6 ? "AF_INET6" : "AF_INET",
                (st, a) -> (int) SOCKET.invokeExact(st, v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        try {
            Posix.check("connect", address.getHostAddress() + ":" + port, (st, a) -> {
                MemorySegment sa = a.allocate(28, 4);
                sa.set(ValueLayout.JAVA_SHORT, 0, (short) (v6 ? AF_INET6 : AF_INET));
                sa.set(ValueLayout.JAVA_SHORT.withOrder(ByteOrder.BIG_ENDIAN), 2, (short) port);
                byte[] ip = address.getAddress();
                MemorySegment.copy(ip, 0, sa, ValueLayout.JAVA_BYTE, v6 ? 8 : 4, ip.length);
                if (v6) {
                    sa.set(JAVA_INT, 24, ((Inet6Address) address).getScopeId());
                }
                return (int) CONNECT.invokeExact(st, fd, sa, v6 ? 28 : 16);
            });
            setInt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
            return fd;
        } catch (NativeException e) {
            Posix.close(fd);
            throw e;
        }
    }


    private static void setInt(int fd, int level, int option, int value) throws NativeException {
        Posix.check("setsockopt", "fd " + fd + ", option " + option, (st, a) ->
                (int) SETSOCKOPT.invokeExact(st, fd, level, option, a.allocateFrom(JAVA_INT, value), 4));
    }

    /**
     * Bounds every send and receive on {@code fd} to {@code millis}: a peer that stops reading or answering
     * makes the call fail with EAGAIN instead of blocking the caller for ever (0: no bound).
     */
    public static void setTimeouts(int fd, long sendMillis, long receiveMillis) throws NativeException {
        for (int[] opt : new int[][] {{SO_SNDTIMEO, (int) sendMillis}, {SO_RCVTIMEO, (int) receiveMillis}}) {
            long ms = opt[1];
            Posix.check("setsockopt", "fd " + fd + " timeout", (st, a) -> {
                MemorySegment tv = a.allocate(16, 8);
                tv.set(JAVA_LONG, 0, ms / 1000);
                tv.set(JAVA_LONG, 8, (ms % 1000) * 1000);
                return (int) SETSOCKOPT.invokeExact(st, fd, SOL_SOCKET, opt[0], tv, 16);
            });
        }
    }

    /**
     * Waits until {@code a} or {@code b} can be read (or has hung up) — a socket and the eventfd that ends the
     * wait. Returns bit 0 for {@code a}, bit 1 for {@code b}; 0 on EINTR. {@code pollfds}: 16 bytes.
     */
    public static int pollEither(int a, int b, MemorySegment pollfds, MemorySegment callState) throws NativeException {
        pollfds.set(JAVA_INT, 0, a);
        pollfds.set(ValueLayout.JAVA_SHORT, 4, POLLIN);
        pollfds.set(ValueLayout.JAVA_SHORT, 6, (short) 0);
        pollfds.set(JAVA_INT, 8, b);
        pollfds.set(ValueLayout.JAVA_SHORT, 12, POLLIN);
        pollfds.set(ValueLayout.JAVA_SHORT, 14, (short) 0);
        try {
            int rc = (int) POLL.invokeExact(callState, pollfds, 2L, -1);
            if (rc < 0) {
                if (Posix.errno(callState) == FileIo.EINTR) {
                    return 0;
                }
                throw new NativeException("poll", Posix.errno(callState), "fds " + a + ", " + b);
            }
            int r = 0;
            if ((pollfds.get(ValueLayout.JAVA_SHORT, 6) & (POLLIN | POLLHUP_ERR)) != 0) {
                r |= 1;
            }
            if ((pollfds.get(ValueLayout.JAVA_SHORT, 14) & (POLLIN | POLLHUP_ERR)) != 0) {
                r |= 2;
            }
            return r;
        } catch (NativeException e) {
            throw e;
        } catch (Throwable t) {
            throw Posix.rethrow(t);
        }
    }

    /** {@code writev(fd, iov, count)}, retried on EINTR: the bytes written or a negative errno. */
    public static long writev(int fd, MemorySegment iov, int count, MemorySegment callState) {
        try {
            long n;
            do {
                n = (long) WRITEV.invokeExact(callState, fd, iov, count);
            } while (n < 0 && Posix.errno(callState) == FileIo.EINTR);
            return n < 0 ? -Posix.errno(callState) : n;
        } catch (Throwable t) {
            throw Posix.rethrow(t);
        }
    }

    /** {@code read(fd, buf, size)}, retried on EINTR: the bytes read (0 at end of stream) or a negative errno. */
    public static long read(int fd, MemorySegment buf, MemorySegment callState) {
        try {
            long n;
            do {
                n = (long) READ.invokeExact(callState, fd, buf, buf.byteSize());
            } while (n < 0 && Posix.errno(callState) == FileIo.EINTR);
            return n < 0 ? -Posix.errno(callState) : n;
        } catch (Throwable t) {
            throw Posix.rethrow(t);
        }
    }

}
