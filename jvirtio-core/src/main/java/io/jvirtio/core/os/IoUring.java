package io.jvirtio.core.os;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;
import java.nio.file.Files;
import java.nio.file.Path;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

/**
 * One io_uring instance (Linux 5.1+, {@code io_uring_setup(2)}), bound with FFM: the submission and
 * completion rings are mmapped and driven directly, so a batch of requests costs one
 * {@code io_uring_enter} and reaping costs none. Used by one thread at a time (the queue that owns it).
 *
 * <p>Memory ordering is the one liburing documents: the kernel reads SQEs after it sees the new SQ tail,
 * so the tail is stored with release semantics after the entries; the CQ tail is loaded with acquire
 * semantics before the entries behind it are read, and the CQ head is stored with release semantics
 * after they were read, handing the slots back.
 */
public final class IoUring implements AutoCloseable {
    public static final int OP_NOP = 0;
    public static final int OP_READV = 1;
    public static final int OP_WRITEV = 2;
    public static final int OP_FSYNC = 3;
    public static final int OP_POLL_ADD = 6;
    public static final int OP_FALLOCATE = 17;
    public static final int OP_READ = 22;
    public static final int OP_WRITE = 23;
    public static final int FSYNC_DATASYNC = 1;
    /** POLL_ADD's {@code len}: keep posting a completion at each wake-up of the file (5.13+). */
    public static final int POLL_ADD_MULTI = 1;
    public static final int POLLIN = 1;
    /** A completion's flags: more completions will follow for the same request (multishot). */
    public static final int CQE_F_MORE = 1 << 1;

    private static final int SYS_SETUP = 425;
    private static final int SYS_ENTER = 426;
    private static final int SETUP_CQSIZE = 1 << 3;
    private static final int SETUP_SUBMIT_ALL = 1 << 7;
    private static final int SETUP_COOP_TASKRUN = 1 << 8;
    private static final int SETUP_TASKRUN_FLAG = 1 << 9;
    private static final int SETUP_SINGLE_ISSUER = 1 << 12;
    private static final int SETUP_DEFER_TASKRUN = 1 << 13;
    private static final int SQ_TASKRUN = 1 << 1;
    private static final int FEAT_SINGLE_MMAP = 1;
    private static final int ENTER_GETEVENTS = 1;
    private static final long OFF_SQ_RING = 0;
    private static final long OFF_CQ_RING = 0x8000000L;
    private static final long OFF_SQES = 0x10000000L;
    private static final int SQE_SIZE = 64;
    private static final int CQE_SIZE = 16;
    private static final int EBUSY = 16;

    private static final MethodHandle SYSCALL = Linker.nativeLinker().downcallHandle(
            Posix.LIBC.find("syscall").orElseThrow(),
            FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG),
            Linker.Option.firstVariadicArg(1), Posix.CCS);
    private static final VarHandle INT = JAVA_INT.varHandle();

    /** What a completion handler is told: the request's user data, its result (bytes, or -errno), CQE flags. */
    @FunctionalInterface
    public interface Completion {
        void complete(long userData, int result, int flags);
    }

    private final Arena arena = Arena.ofShared();
    private final int fd;
    private final MemorySegment sq;
    private final MemorySegment cq;
    private final MemorySegment sqes;
    private final MemorySegment callState = arena.allocate(Posix.CAPTURE);
    private final long sqHeadOff;
    private final long sqTailOff;
    private final long sqFlagsOff;
    private final int sqMask;
    private final int sqEntries;
    private final long cqHeadOff;
    private final long cqTailOff;
    private final long cqesOff;
    private final int cqMask;
    private int sqTail;
    /** Entries prepared but not yet handed to the kernel by {@link #submit}. */
    private int unsubmitted;
    private int cqHead;

    private IoUring(int fd, MemorySegment params) throws NativeException {
        this.fd = fd;
        this.sqEntries = params.get(JAVA_INT, 0);
        int cqEntries = params.get(JAVA_INT, 4);
        int features = params.get(JAVA_INT, 20);
        long sqArray = Integer.toUnsignedLong(params.get(JAVA_INT, 64));
        this.sqHeadOff = params.get(JAVA_INT, 40);
        this.sqTailOff = params.get(JAVA_INT, 44);
        this.sqFlagsOff = params.get(JAVA_INT, 56);
        long sqMaskOff = params.get(JAVA_INT, 48);
        this.cqHeadOff = params.get(JAVA_INT, 80);
        this.cqTailOff = params.get(JAVA_INT, 84);
        long cqMaskOff = params.get(JAVA_INT, 88);
        this.cqesOff = params.get(JAVA_INT, 100);
        long sqSize = sqArray + 4L * sqEntries;
        long cqSize = cqesOff + (long) CQE_SIZE * cqEntries;
        if ((features & FEAT_SINGLE_MMAP) != 0) {
            this.sq = Posix.mmapShared(fd, OFF_SQ_RING, Math.max(sqSize, cqSize), arena);
            this.cq = sq;
        } else {
            this.sq = Posix.mmapShared(fd, OFF_SQ_RING, sqSize, arena);
            this.cq = Posix.mmapShared(fd, OFF_CQ_RING, cqSize, arena);
        }
        this.sqes = Posix.mmapShared(fd, OFF_SQES, (long) SQE_SIZE * sqEntries, arena);
        this.sqMask = sq.get(JAVA_INT, sqMaskOff);
        this.cqMask = cq.get(JAVA_INT, cqMaskOff);
        // The SQ array maps ring slots to SQE indices; identity, set once, so no per-request store.
        for (int i = 0; i < sqEntries; i++) {
            sq.set(JAVA_INT, sqArray + 4L * i, i);
        }
        this.sqTail = (int) INT.getAcquire(sq, sqTailOff);
        this.cqHead = (int) INT.getAcquire(cq, cqHeadOff);
    }

    /**
     * A ring with room for {@code entries} submissions (rounded up to a power of two by the kernel) and
     * {@code cqEntries} completions — at least as many as may be in flight, so none ever overflows.
     */
    public static IoUring create(int entries, int cqEntries) throws NativeException {
        NativeException last = null;
        // COOP_TASKRUN (5.19) saves an inter-processor interrupt per completion: completions are posted when the
        // thread next enters the kernel, and TASKRUN_FLAG tells a polling thread when to (see ready());
        // older kernels refuse them.
        for (int flags : new int[] {
                SETUP_CQSIZE | SETUP_SUBMIT_ALL | SETUP_SINGLE_ISSUER | SETUP_DEFER_TASKRUN | SETUP_TASKRUN_FLAG,
                SETUP_CQSIZE | SETUP_SUBMIT_ALL | SETUP_COOP_TASKRUN | SETUP_TASKRUN_FLAG,
                SETUP_CQSIZE}) {
            Arena a = Arena.ofConfined();
            try (a) {
                MemorySegment params = a.allocate(120, 8);
                params.set(JAVA_INT, 4, cqEntries);
                params.set(JAVA_INT, 8, flags);
                int ringFd = (int) Posix.check("io_uring_setup", "entries " + entries,
                        (st, x) -> (long) SYSCALL.invokeExact(st, (long) SYS_SETUP, (long) entries, params.address(),
                                0L, 0L, 0L, 0L));
                try {
                    return new IoUring(ringFd, params);
                } catch (NativeException | RuntimeException e) {
                    closeQuietly(ringFd);
                    throw e;
                }
            } catch (NativeException e) {
                last = e;
                if (e.errno() != FileIo.EINVAL) {
                    break;
                }
            }
        }
        throw last;
    }

    /**
     * Null when io_uring can be used here, else why not: disabled by {@code kernel.io_uring_disabled}, refused
     * by a seccomp profile (ENOSYS, EPERM) or missing from the kernel.
     */
    public static String unavailableReason() {
        try {
            Path p = Path.of("/proc/sys/kernel/io_uring_disabled");
            if (Files.exists(p) && !Files.readString(p).trim().equals("0")) {
                return "kernel.io_uring_disabled is " + Files.readString(p).trim();
            }
        } catch (java.io.IOException | SecurityException e) {
            // unreadable: try the call itself
        }
        try (IoUring r = create(2, 4)) {
            return null;
        } catch (NativeException e) {
            return e.getMessage();
        } catch (RuntimeException | LinkageError e) {
            return e.toString();
        }
    }

    /** Free submission slots. */
    public int sqSpace() {
        int head = (int) INT.getAcquire(sq, sqHeadOff);
        return sqEntries - (sqTail - head);
    }

    /**
     * Prepares one request. Returns false when the submission ring is full (call {@link #submit} and try
     * again). Nothing reaches the kernel before {@link #submit}.
     */
    public boolean prepare(int opcode, int targetFd, long address, int length, long offset, int opFlags, long userData) {
        if (sqSpace() == 0) {
            return false;
        }
        long e = (long) (sqTail & sqMask) * SQE_SIZE;
        sqes.set(JAVA_BYTE, e, (byte) opcode);
        sqes.set(JAVA_BYTE, e + 1, (byte) 0);          // flags
        sqes.set(JAVA_SHORT, e + 2, (short) 0);        // ioprio
        sqes.set(JAVA_INT, e + 4, targetFd);
        sqes.set(JAVA_LONG, e + 8, offset);
        sqes.set(JAVA_LONG, e + 16, address);
        sqes.set(JAVA_INT, e + 24, length);
        sqes.set(JAVA_INT, e + 28, opFlags);           // rw_flags, fsync_flags
        sqes.set(JAVA_LONG, e + 32, userData);
        sqes.set(JAVA_LONG, e + 40, 0L);               // buf_index, personality, file_index
        sqes.set(JAVA_LONG, e + 48, 0L);               // addr3
        sqes.set(JAVA_LONG, e + 56, 0L);
        sqTail++;
        unsubmitted++;
        return true;
    }

    /** Requests prepared since the last {@link #submit}. */
    public int unsubmitted() {
        return unsubmitted;
    }

    /**
     * Hands every prepared request to the kernel with one {@code io_uring_enter}; with {@code wait}, also
     * blocks until at least one completion is ready (a signal ends the wait early). Returns false when
     * the kernel was busy (EBUSY/EAGAIN: reap and call again).
     */
    public boolean submit(boolean wait) throws NativeException {
        INT.setRelease(sq, sqTailOff, sqTail);
        int toSubmit = unsubmitted;
        if (toSubmit == 0 && !wait) {
            return true;
        }
        try {
            long rc = (long) SYSCALL.invokeExact(callState, (long) SYS_ENTER, (long) fd, (long) toSubmit,
                    wait ? 1L : 0L, wait ? (long) ENTER_GETEVENTS : 0L, 0L, 0L);
            if (rc < 0) {
                int errno = Posix.errno(callState);
                if (errno == FileIo.EINTR) {
                    return true;
                }
                if (errno == FileIo.EAGAIN || errno == EBUSY) {
                    return false;
                }
                throw new NativeException("io_uring_enter", errno, "ring fd " + fd);
            }
            unsubmitted -= (int) Math.min(rc, toSubmit);
            return true;
        } catch (NativeException e) {
            throw e;
        } catch (Throwable t) {
            throw Posix.rethrow(t);
        }
    }

    /**
     * True when completions are waiting to be reaped. Completions the kernel holds as task work (COOP_TASKRUN)
     * are posted first, with a non-blocking {@code io_uring_enter}, only when the kernel flags some: a thread
     * spinning on this sees completions as they happen, and one that is not pays no system call.
     */
    public boolean ready() throws NativeException {
        if ((int) INT.getAcquire(cq, cqTailOff) != cqHead) {
            return true;
        }
        if (((int) INT.getAcquire(sq, sqFlagsOff) & SQ_TASKRUN) != 0) {
            getEvents();
            return (int) INT.getAcquire(cq, cqTailOff) != cqHead;
        }
        return false;
    }

    /**
     * For a thread that busy-polls: posts every completion the kernel holds (a deferred-task-work ring posts
     * them only inside {@code io_uring_enter}, and does not flag them), then says whether any are ready.
     */
    public boolean poll() throws NativeException {
        if ((int) INT.getAcquire(cq, cqTailOff) != cqHead) {
            return true;
        }
        getEvents();
        return (int) INT.getAcquire(cq, cqTailOff) != cqHead;
    }

    /** {@code io_uring_enter(0, 0, GETEVENTS)}: runs pending task work, posting its completions; never waits. */
    private void getEvents() throws NativeException {
        try {
            long rc = (long) SYSCALL.invokeExact(callState, (long) SYS_ENTER, (long) fd, 0L, 0L, (long) ENTER_GETEVENTS,
                    0L, 0L);
            if (rc < 0 && Posix.errno(callState) != FileIo.EINTR) {
                throw new NativeException("io_uring_enter", Posix.errno(callState), "ring fd " + fd);
            }
        } catch (NativeException e) {
            throw e;
        } catch (Throwable t) {
            throw Posix.rethrow(t);
        }
    }

    /** Delivers every ready completion to {@code handler}, then hands their slots back; returns how many. */
    public int reap(Completion handler) {
        int tail = (int) INT.getAcquire(cq, cqTailOff);
        int n = 0;
        while (cqHead != tail) {
            long e = cqesOff + (long) (cqHead & cqMask) * CQE_SIZE;
            long userData = cq.get(JAVA_LONG, e);
            int res = cq.get(JAVA_INT, e + 8);
            int flags = cq.get(JAVA_INT, e + 12);
            cqHead++;
            n++;
            // Free the slot before the handler runs: it may prepare (and so consume) more at once.
            INT.setRelease(cq, cqHeadOff, cqHead);
            handler.complete(userData, res, flags);
        }
        return n;
    }

    private static void closeQuietly(int fd) {
        try {
            Posix.close(fd);
        } catch (NativeException e) {
            System.getLogger(IoUring.class.getName()).log(System.Logger.Level.DEBUG, e.getMessage());
        }
    }

    @Override
    public void close() {
        arena.close();
        closeQuietly(fd);
    }
}
