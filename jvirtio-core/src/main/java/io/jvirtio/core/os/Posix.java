package io.jvirtio.core.os;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * The few Linux system calls jvirtio needs, bound with the FFM API (no JNI). Every call captures
 * {@code errno} and turns a failure into a {@link NativeException} that names the call.
 */
public final class Posix {
    public static final int PROT_READ = 0x1;
    public static final int PROT_WRITE = 0x2;
    public static final int MAP_SHARED = 0x01;
    public static final int MFD_CLOEXEC = 0x1;
    public static final int O_RDWR = 0x2;
    public static final int O_CREAT = 0x40;
    public static final int O_CLOEXEC = 0x80000;

    private static final Linker LINKER = Linker.nativeLinker();
    private static final SymbolLookup LIBC = LINKER.defaultLookup();
    private static final StructLayout CAPTURE = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO =
            CAPTURE.varHandle(MemoryLayout.PathElement.groupElement("errno"));
    private static final Linker.Option CCS = Linker.Option.captureCallState("errno");

    private static final MethodHandle MEMFD_CREATE = bind("memfd_create", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
    private static final MethodHandle OPEN = bind("open", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
    private static final MethodHandle FTRUNCATE = bind("ftruncate", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG));
    private static final MethodHandle CLOSE = bind("close", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    private static final MethodHandle MMAP = bind("mmap",
            FunctionDescriptor.of(ADDRESS, ADDRESS, JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_LONG));
    private static final MethodHandle MUNMAP = bind("munmap", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG));
    private static final MethodHandle IOCTL = bind("ioctl", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG, ADDRESS));
    private static final MethodHandle READ = bind("read", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG));
    private static final MethodHandle WRITE = bind("write", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG));
    private static final MethodHandle POLL = bind("poll", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT));
    private static final MethodHandle STRERROR = LINKER.downcallHandle(
            LIBC.find("strerror").orElseThrow(), FunctionDescriptor.of(ADDRESS, JAVA_INT));

    private Posix() {
    }

    private static MethodHandle bind(String name, FunctionDescriptor fd) {
        return LINKER.downcallHandle(LIBC.find(name).orElseThrow(
                () -> new UnsatisfiedLinkError("libc has no " + name)), fd, CCS);
    }

    /** {@code memfd_create(name, MFD_CLOEXEC)}: an anonymous file another process can map through its fd. */
    public static int memfdCreate(String name) throws NativeException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = a.allocate(CAPTURE);
            int fd = (int) MEMFD_CREATE.invokeExact(st, a.allocateFrom(name), MFD_CLOEXEC);
            if (fd < 0) {
                throw fail("memfd_create", st, name);
            }
            return fd;
        } catch (NativeException e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
    }

    /** {@code open(path, O_RDWR|O_CLOEXEC)} of an existing file or device node. */
    public static int openDevice(String path) throws NativeException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = a.allocate(CAPTURE);
            int fd = (int) OPEN.invokeExact(st, a.allocateFrom(path), O_RDWR | O_CLOEXEC, 0);
            if (fd < 0) {
                throw fail("open", st, path);
            }
            return fd;
        } catch (NativeException e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
    }

    /** {@code ioctl(fd, request, arg)} with a pointer argument. */
    public static int ioctl(int fd, long request, MemorySegment arg) throws NativeException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = a.allocate(CAPTURE);
            int rc = (int) IOCTL.invokeExact(st, fd, request, arg);
            if (rc < 0) {
                throw fail("ioctl", st, "fd " + fd + ", request 0x" + Long.toHexString(request));
            }
            return rc;
        } catch (NativeException e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
    }

    /** {@code read(fd, buf, len)}; returns the byte count (0 at end of file). */
    public static long read(int fd, MemorySegment buf, MemorySegment callState) throws NativeException {
        try {
            long n = (long) READ.invokeExact(callState, fd, buf, buf.byteSize());
            if (n < 0) {
                throw fail("read", callState, "fd " + fd);
            }
            return n;
        } catch (NativeException e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
    }

    /** {@code write(fd, buf, len)}; returns the byte count. */
    public static long write(int fd, MemorySegment buf, MemorySegment callState) throws NativeException {
        try {
            long n = (long) WRITE.invokeExact(callState, fd, buf, buf.byteSize());
            if (n < 0) {
                throw fail("write", callState, "fd " + fd);
            }
            return n;
        } catch (NativeException e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
    }

    /** Waits up to {@code timeoutMs} for {@code fd} to become readable; true if it is. */
    public static boolean pollIn(int fd, int timeoutMs, MemorySegment pollfd, MemorySegment callState)
            throws NativeException {
        pollfd.set(JAVA_INT, 0, fd);
        pollfd.set(java.lang.foreign.ValueLayout.JAVA_SHORT, 4, (short) 1); // POLLIN
        pollfd.set(java.lang.foreign.ValueLayout.JAVA_SHORT, 6, (short) 0);
        try {
            int rc = (int) POLL.invokeExact(callState, pollfd, 1L, timeoutMs);
            if (rc < 0) {
                int errno = errno(callState);
                if (errno == 4) { // EINTR
                    return false;
                }
                throw new NativeException("poll", errno, "fd " + fd);
            }
            return rc > 0;
        } catch (NativeException e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
    }

    /** A buffer for the errno capture of {@link #read}, {@link #write} and {@link #pollIn}, reused by one thread. */
    public static MemorySegment callState(Arena arena) {
        return arena.allocate(CAPTURE);
    }

    /** {@code open(path, O_RDWR|O_CREAT|O_CLOEXEC, 0600)}. */
    public static int openReadWrite(String path) throws NativeException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = a.allocate(CAPTURE);
            int fd = (int) OPEN.invokeExact(st, a.allocateFrom(path), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
            if (fd < 0) {
                throw fail("open", st, path);
            }
            return fd;
        } catch (NativeException e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
    }

    public static void ftruncate(int fd, long size) throws NativeException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = a.allocate(CAPTURE);
            if ((int) FTRUNCATE.invokeExact(st, fd, size) < 0) {
                throw fail("ftruncate", st, "fd " + fd + ", size " + size);
            }
        } catch (NativeException e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
    }

    /**
     * {@code mmap(NULL, size, PROT_READ|PROT_WRITE, MAP_SHARED, fd, offset)}; the mapping is unmapped when
     * {@code arena} closes, so a mapping can never outlive its owner.
     */
    public static MemorySegment mmapShared(int fd, long offset, long size, Arena arena) throws NativeException {
        MemorySegment addr;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = a.allocate(CAPTURE);
            addr = (MemorySegment) MMAP.invokeExact(st, MemorySegment.NULL, size,
                    PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
            if (addr.address() == -1L) {
                throw fail("mmap", st, "fd " + fd + ", offset " + offset + ", size " + size);
            }
        } catch (NativeException e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
        long base = addr.address();
        return addr.reinterpret(size, arena, s -> munmapQuietly(base, size));
    }

    private static void munmapQuietly(long base, long size) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = a.allocate(CAPTURE);
            int rc = (int) MUNMAP.invokeExact(st, MemorySegment.ofAddress(base), size);
            if (rc < 0) {
                System.getLogger(Posix.class.getName()).log(System.Logger.Level.WARNING,
                        "munmap({0}, {1}) failed: errno {2}", Long.toHexString(base), size, errno(st));
            }
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
    }

    /** Closes {@code fd}; callers own each fd and close it exactly once. */
    public static void close(int fd) throws NativeException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = a.allocate(CAPTURE);
            if ((int) CLOSE.invokeExact(st, fd) < 0) {
                throw fail("close", st, "fd " + fd);
            }
        } catch (NativeException e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
    }

    static String strerror(int errno) {
        try {
            MemorySegment s = (MemorySegment) STRERROR.invokeExact(errno);
            return s.reinterpret(256).getString(0);
        } catch (Throwable t) {
            return "errno " + errno;
        }
    }

    private static int errno(MemorySegment state) {
        return (int) ERRNO.get(state, 0L);
    }

    private static NativeException fail(String call, MemorySegment state, String detail) {
        return new NativeException(call, errno(state), detail);
    }

}
