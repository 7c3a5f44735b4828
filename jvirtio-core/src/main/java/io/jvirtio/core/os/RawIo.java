package io.jvirtio.core.os;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

/**
 * System calls for loops that make one per frame (a TAP device's reader and writer), bound without capturing
 * errno. FFM's capture slices the capture segment on every call ({@code SharedUtils.checkCaptureSegment}), an
 * allocation the JIT removes only where it inlines the whole call — on a hot loop it sometimes does not. The
 * callers learn what went wrong without errno: a read that fails is followed by a {@link #poll}, whose
 * {@code revents} tell an empty queue (nothing) from a broken descriptor (POLLERR, POLLHUP, POLLNVAL).
 */
public final class RawIo {
    public static final short POLLIN = 0x1;
    public static final short POLLERR = 0x8;
    public static final short POLLHUP = 0x10;
    public static final short POLLNVAL = 0x20;

    private static final Linker LINKER = Linker.nativeLinker();
    private static final SymbolLookup LIBC = LINKER.defaultLookup();
    private static final FunctionDescriptor IOV = FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_INT);
    private static final MethodHandle READV = bind("readv", IOV);
    private static final MethodHandle WRITEV = bind("writev", IOV);
    private static final MethodHandle READ = bind("read",
            FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG));
    private static final MethodHandle POLL = bind("poll",
            FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT));

    private RawIo() {
    }

    private static MethodHandle bind(String name, FunctionDescriptor fd) {
        return LINKER.downcallHandle(LIBC.find(name).orElseThrow(() -> new UnsatisfiedLinkError("libc has no " + name)),
                fd);
    }

    /** {@code readv(fd, iov, count)}: the bytes read, or -1. */
    public static long readv(int fd, MemorySegment iov, int count) {
        try {
            return (long) READV.invokeExact(fd, iov, count);
        } catch (Throwable t) {
            throw Posix.rethrow(t);
        }
    }

    /** {@code writev(fd, iov, count)}: the bytes written, or -1. */
    public static long writev(int fd, MemorySegment iov, int count) {
        try {
            return (long) WRITEV.invokeExact(fd, iov, count);
        } catch (Throwable t) {
            throw Posix.rethrow(t);
        }
    }

    /** {@code read(fd, buf, size)}: the bytes read, or -1. */
    public static long read(int fd, MemorySegment buf) {
        try {
            return (long) READ.invokeExact(fd, buf, buf.byteSize());
        } catch (Throwable t) {
            throw Posix.rethrow(t);
        }
    }

    /**
     * Waits up to {@code timeoutMs} for {@code fd} to become readable, with {@code pollfd} (8 bytes of the caller's):
     * its {@code revents} — 0 when the time ran out — or -1 when poll itself failed (a signal: call again).
     */
    public static int poll(int fd, int timeoutMs, MemorySegment pollfd) {
        pollfd.set(JAVA_INT, 0, fd);
        pollfd.set(JAVA_SHORT, 4, POLLIN);
        pollfd.set(JAVA_SHORT, 6, (short) 0);
        try {
            int rc = (int) POLL.invokeExact(pollfd, 1L, timeoutMs);
            return rc < 0 ? -1 : rc == 0 ? 0 : Short.toUnsignedInt(pollfd.get(JAVA_SHORT, 6));
        } catch (Throwable t) {
            throw Posix.rethrow(t);
        }
    }
}
