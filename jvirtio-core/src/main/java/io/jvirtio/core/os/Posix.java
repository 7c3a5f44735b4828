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
    /**
     * What a downcall's {@code invokeExact} threw, for its caller to throw: an unchecked exception as it is — a
     * segment closed or of another thread (IllegalStateException, WrongThreadException) is the caller's to
     * handle, not a broken invariant — an error rethrown; a checked one cannot come from a downcall.
     */
    static RuntimeException rethrow(Throwable t) {
        if (t instanceof RuntimeException r) {
            return r;
        }
        if (t instanceof Error e) {
            throw e;
        }
        throw new AssertionError(t);
    }

    public static final int PROT_READ = 0x1;
    public static final int PROT_WRITE = 0x2;
    public static final int MAP_SHARED = 0x01;
    public static final int MFD_CLOEXEC = 0x1;
    public static final int O_RDWR = 0x2;
    public static final int O_CREAT = 0x40;
    public static final int O_CLOEXEC = 0x80000;

    static final Linker LINKER = Linker.nativeLinker();
    static final SymbolLookup LIBC = LINKER.defaultLookup();
    static final StructLayout CAPTURE = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO =
            CAPTURE.varHandle(MemoryLayout.PathElement.groupElement("errno"));
    static final Linker.Option CCS = Linker.Option.captureCallState("errno");

    private static final MethodHandle MEMFD_CREATE = bind("memfd_create", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
    private static final MethodHandle OPEN = bind("open", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
    private static final MethodHandle FTRUNCATE = bind("ftruncate", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG));
    private static final MethodHandle CLOSE = bind("close", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    private static final MethodHandle MMAP = bind("mmap",
            FunctionDescriptor.of(ADDRESS, ADDRESS, JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_LONG));
    private static final MethodHandle MUNMAP = bind("munmap", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG));
    private static final MethodHandle IOCTL = bind("ioctl", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG, ADDRESS));
    private static final MethodHandle IOCTL_VALUE = bind("ioctl", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG));
    private static final MethodHandle READ = bind("read", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG));
    private static final MethodHandle WRITE = bind("write", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG));
    private static final MethodHandle POLL = bind("poll", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT));
    private static final MethodHandle EVENTFD = bind("eventfd", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));
    private static final MethodHandle EPOLL_CREATE1 = bind("epoll_create1", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    private static final MethodHandle EPOLL_CTL = bind("epoll_ctl", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS));
    private static final MethodHandle EPOLL_WAIT = bind("epoll_wait", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
    private static final MethodHandle FSTAT = bind("fstat", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS));
    private static final MethodHandle FCNTL = LINKER.downcallHandle(LIBC.find("fcntl").orElseThrow(),
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT), Linker.Option.firstVariadicArg(2), CCS);
    private static final MethodHandle STRERROR = LINKER.downcallHandle(
            LIBC.find("strerror").orElseThrow(), FunctionDescriptor.of(ADDRESS, JAVA_INT));

    private Posix() {
    }

    static MethodHandle bind(String name, FunctionDescriptor fd) {
        return LINKER.downcallHandle(LIBC.find(name).orElseThrow(
                () -> new UnsatisfiedLinkError("libc has no " + name)), fd, CCS);
    }

    /** {@code memfd_create(name, MFD_CLOEXEC)}: an anonymous file another process can map through its fd. */
    public static int memfdCreate(String name) throws NativeException {
        return (int) check("memfd_create", name,
                (st, a) -> (int) MEMFD_CREATE.invokeExact(st, a.allocateFrom(name), MFD_CLOEXEC));
    }

    /** {@code open(path, O_RDWR|O_CLOEXEC)} of an existing file or device node. */
    public static int openDevice(String path) throws NativeException {
        return (int) check("open", path,
                (st, a) -> (int) OPEN.invokeExact(st, a.allocateFrom(path), O_RDWR | O_CLOEXEC, 0));
    }

    /** {@code ioctl(fd, request, arg)} with a pointer argument. */
    public static int ioctl(int fd, long request, MemorySegment arg) throws NativeException {
        return (int) check("ioctl", "fd " + fd + ", request 0x" + Long.toHexString(request),
                (st, a) -> (int) IOCTL.invokeExact(st, fd, request, arg));
    }

    /** {@code ioctl(fd, request, value)} with an integer argument (such as TUNSETOFFLOAD's flags). */
    public static int ioctlValue(int fd, long request, long value) throws NativeException {
        return (int) check("ioctl", "fd " + fd + ", request 0x" + Long.toHexString(request),
                (st, a) -> (int) IOCTL_VALUE.invokeExact(st, fd, request, value));
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
            throw Posix.rethrow(t);
        }
    }

    /** {@code write(fd, buf, len)}; returns the byte count. */
    public static long write(int fd, MemorySegment buf, MemorySegment callState) throws NativeException {
        return write(fd, buf, buf.byteSize(), callState);
    }

    /** {@code write(fd, buf, length)}: the first {@code length} bytes of a native {@code buf}, no slice made. */
    public static long write(int fd, MemorySegment buf, long length, MemorySegment callState) throws NativeException {
        if (length < 0 || length > buf.byteSize()) {
            throw new IndexOutOfBoundsException("write of " + length + " bytes from a segment of " + buf.byteSize());
        }
        try {
            long n = (long) WRITE.invokeExact(callState, fd, buf, length);
            if (n < 0) {
                throw fail("write", callState, "fd " + fd);
            }
            return n;
        } catch (NativeException e) {
            throw e;
        } catch (Throwable t) {
            throw Posix.rethrow(t);
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
            throw Posix.rethrow(t);
        }
    }

    /** A buffer for the errno capture of {@link #read}, {@link #write} and {@link #pollIn}, reused by one thread. */
    public static MemorySegment callState(Arena arena) {
        return arena.allocate(CAPTURE);
    }

    static final int EFD_CLOEXEC = 0x80000;

    @FunctionalInterface
    interface Call {
        long invoke(MemorySegment state, Arena arena) throws Throwable;
    }

    /** Runs a call that returns -1 on error; turns that into a NativeException naming {@code name}. */
    static long check(String name, String detail, Call call) throws NativeException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = a.allocate(CAPTURE);
            long rc = call.invoke(st, a);
            if (rc < 0) {
                throw fail(name, st, detail);
            }
            return rc;
        } catch (NativeException e) {
            throw e;
        } catch (Throwable t) {
            throw Posix.rethrow(t);
        }
    }

    /** {@code struct epoll_event} is packed on x86-64: u32 events, u64 data. */
    public static final int EPOLL_EVENT_SIZE = 12;
    public static final int EPOLLIN = 0x1;

    /** {@code epoll_create1(EPOLL_CLOEXEC)}. */
    public static int epollCreate() throws NativeException {
        return (int) check("epoll_create1", "", (st, a) -> (int) EPOLL_CREATE1.invokeExact(st, 0x80000));
    }

    /** Watches {@code fd} for input; events for it report {@code data}. */
    public static void epollAdd(int epfd, int fd, long data) throws NativeException {
        check("epoll_ctl", "add fd " + fd, (st, a) -> {
            MemorySegment ev = a.allocate(EPOLL_EVENT_SIZE, 4);
            ev.set(JAVA_INT, 0, EPOLLIN);
            ev.set(java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED, 4, data);
            return (int) EPOLL_CTL.invokeExact(st, epfd, 1, fd, ev);
        });
    }

    /**
     * Waits up to {@code timeoutMs} (-1: forever) for events; fills {@code events} (room for
     * {@code events.byteSize() / EPOLL_EVENT_SIZE}) and returns how many. EINTR counts as none.
     */
    public static int epollWait(int epfd, MemorySegment events, int timeoutMs, MemorySegment callState)
            throws NativeException {
        try {
            int n = (int) EPOLL_WAIT.invokeExact(callState, epfd, events, (int) (events.byteSize() / EPOLL_EVENT_SIZE),
                    timeoutMs);
            if (n < 0) {
                int errno = errno(callState);
                if (errno == 4) {
                    return 0;
                }
                throw new NativeException("epoll_wait", errno, "epfd " + epfd);
            }
            return n;
        } catch (NativeException e) {
            throw e;
        } catch (Throwable t) {
            throw Posix.rethrow(t);
        }
    }

    /** The data word of event {@code i} returned by {@link #epollWait}. */
    public static long epollData(MemorySegment events, int i) {
        return events.get(java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED, (long) i * EPOLL_EVENT_SIZE + 4);
    }

    /** {@code eventfd(0, EFD_CLOEXEC)}: a counter another process can signal through its descriptor. */
    public static int eventfd() throws NativeException {
        return (int) check("eventfd", "", (st, a) -> (int) EVENTFD.invokeExact(st, 0, EFD_CLOEXEC));
    }

    /** Adds 1 to an eventfd (a kick or a call). */
    public static void eventfdSignal(int fd, MemorySegment eightBytes, MemorySegment callState) throws NativeException {
        eightBytes.set(JAVA_LONG, 0, 1L);
        write(fd, eightBytes, callState);
    }

    /** {@code open(path, O_RDWR|O_CREAT|O_CLOEXEC, 0600)}. */
    public static int openReadWrite(String path) throws NativeException {
        return (int) check("open", path,
                (st, a) -> (int) OPEN.invokeExact(st, a.allocateFrom(path), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    }

    public static void ftruncate(int fd, long size) throws NativeException {
        check("ftruncate", "fd " + fd + ", size " + size, (st, a) -> (int) FTRUNCATE.invokeExact(st, fd, size));
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
            throw Posix.rethrow(t);
        }
        long base = addr.address();
        return addr.reinterpret(size, arena, s -> munmapQuietly(base, size));
    }

    /**
     * Maps a descriptor a peer gave us, like {@link #mmapShared}, but only a regular file (memfd, tmpfs,
     * hugetlbfs, a file) whose size covers {@code [offset, offset+size)}: a page past the end of the file
     * would raise SIGBUS on access, which no check of ours could catch later.
     */
    public static MemorySegment mmapPeerFd(int fd, long offset, long size, Arena arena) throws NativeException {
        FileStatus st = fstat(fd);
        if (!st.regular()) {
            throw new NativeException("mmap", EINVAL, "fd " + fd + " is not a regular file or memfd");
        }
        if (offset < 0 || size <= 0 || offset > st.size() || size > st.size() - offset) {
            throw new NativeException("mmap", EINVAL, String.format("fd %d: offset 0x%x + size 0x%x is beyond its %d bytes",
                    fd, offset, size, st.size()));
        }
        return mmapShared(fd, offset, size, arena);
    }

    private static final int EINVAL = 22;

    private static void munmapQuietly(long base, long size) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = a.allocate(CAPTURE);
            int rc = (int) MUNMAP.invokeExact(st, MemorySegment.ofAddress(base), size);
            if (rc < 0) {
                System.getLogger(Posix.class.getName()).log(System.Logger.Level.WARNING,
                        "munmap({0}, {1}) failed: errno {2}", Long.toHexString(base), size, errno(st));
            }
        } catch (Throwable t) {
            throw Posix.rethrow(t);
        }
    }

    /** struct stat (x86-64 and the generic layout of aarch64 agree on st_size; st_mode differs). */
    private static final long STAT_SIZE = 144;
    private static final long STAT_ST_SIZE = 48;
    private static final long STAT_ST_MODE = "aarch64".equals(System.getProperty("os.arch")) ? 16 : 24;
    private static final int S_IFMT = 0xf000;
    private static final int S_IFREG = 0x8000;

    /** What {@code fstat} says of a descriptor: its size, and whether it is a regular file (memfds are). */
    public record FileStatus(long size, boolean regular) {
    }

    public static FileStatus fstat(int fd) throws NativeException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(STAT_SIZE, 8);
            check("fstat", "fd " + fd, (st, x) -> (int) FSTAT.invokeExact(st, fd, buf));
            return new FileStatus(buf.get(JAVA_LONG, STAT_ST_SIZE),
                    (buf.get(JAVA_INT, STAT_ST_MODE) & S_IFMT) == S_IFREG);
        }
    }

    private static final int F_GETFL = 3;
    private static final int F_SETFL = 4;
    private static final int O_NONBLOCK = 0x800;

    /**
     * Sets O_NONBLOCK on a descriptor somebody else gave us (an eventfd, or whatever a peer passed as one),
     * so that no read or write of ours can ever wait on the peer: a full counter or pipe answers EAGAIN.
     */
    public static void setNonBlocking(int fd) throws NativeException {
        int flags = (int) check("fcntl", "F_GETFL fd " + fd, (st, a) -> (int) FCNTL.invokeExact(st, fd, F_GETFL, 0));
        check("fcntl", "F_SETFL fd " + fd, (st, a) -> (int) FCNTL.invokeExact(st, fd, F_SETFL, flags | O_NONBLOCK));
    }

    /** Closes {@code fd}; callers own each fd and close it exactly once. */
    public static void close(int fd) throws NativeException {
        check("close", "fd " + fd, (st, a) -> (int) CLOSE.invokeExact(st, fd));
    }

    static String strerror(int errno) {
        try {
            MemorySegment s = (MemorySegment) STRERROR.invokeExact(errno);
            return s.reinterpret(256).getString(0);
        } catch (Throwable t) {
            return "errno " + errno;
        }
    }

    static int errno(MemorySegment state) {
        return (int) ERRNO.get(state, 0L);
    }

    static NativeException fail(String call, MemorySegment state, String detail) {
        return new NativeException(call, errno(state), detail);
    }

}
