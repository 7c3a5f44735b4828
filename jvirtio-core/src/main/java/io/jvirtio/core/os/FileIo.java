package io.jvirtio.core.os;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * File and block-device I/O for disk images, bound with FFM: open with the flags a cache mode needs
 * (O_DIRECT), what {@code statx} says about size and direct-I/O alignment, positional I/O straight
 * between guest memory and the file, {@code fdatasync} and {@code fallocate}. The positional calls are the
 * data path: they return a negative errno instead of throwing, so an I/O error costs no exception.
 */
public final class FileIo {
    public static final int O_RDONLY = 0;
    /** O_DIRECT differs by architecture: 040000 on x86-64, 0200000 on arm64. */
    public static final int O_DIRECT = "aarch64".equals(System.getProperty("os.arch")) ? 0x10000 : 0x4000;

    /** fallocate modes (linux/falloc.h). */
    public static final int FALLOC_FL_KEEP_SIZE = 0x01;
    public static final int FALLOC_FL_PUNCH_HOLE = 0x02;
    public static final int FALLOC_FL_ZERO_RANGE = 0x10;
    /** pwritev2 flag: this write is durable (as if followed by fdatasync) when it completes. */
    public static final int RWF_DSYNC = 0x2;

    public static final int EINTR = 4;
    public static final int EIO = 5;
    public static final int EAGAIN = 11;
    public static final int EINVAL = 22;
    public static final int ENOSPC = 28;
    public static final int EOPNOTSUPP = 95;

    private static final MethodHandle OPEN = Posix.bind("open", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
    private static final MethodHandle PREAD = Posix.bind("pread64",
            FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG, JAVA_LONG));
    private static final MethodHandle PWRITEV2 = Posix.bind("pwritev2",
            FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_INT, JAVA_LONG, JAVA_INT));
    private static final MethodHandle PWRITE = Posix.bind("pwrite64",
            FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG, JAVA_LONG));
    private static final MethodHandle FDATASYNC = Posix.bind("fdatasync", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    private static final MethodHandle FALLOCATE = Posix.bind("fallocate64",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG));
    private static final MethodHandle STATX = Posix.bind("statx",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT, ADDRESS));
    private static final MethodHandle IOCTL = Posix.bind("ioctl", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG, ADDRESS));

    private FileIo() {
    }

    /** {@code open(path, flags | O_CLOEXEC)} of an existing file or block device. */
    public static int open(String path, int flags) throws NativeException {
        return (int) Posix.check("open", path,
                (st, a) -> (int) OPEN.invokeExact(st, a.allocateFrom(path), flags | Posix.O_CLOEXEC, 0));
    }

    /**
     * What an image's descriptor is: a regular file or a block device, its size, and the alignment O_DIRECT
     * needs of buffer addresses and of file offsets and lengths (0 when the file system does not say).
     */
    public record FileInfo(boolean regular, boolean blockDevice, long size, int dioMemAlign, int dioOffsetAlign) {
    }

    private static final int AT_EMPTY_PATH = 0x1000;
    private static final int STATX_TYPE = 0x1;
    private static final int STATX_SIZE = 0x200;
    private static final int STATX_DIOALIGN = 0x2000;
    private static final long BLKGETSIZE64 = 0x80081272L;
    private static final int S_IFMT = 0xf000;
    private static final int S_IFREG = 0x8000;
    private static final int S_IFBLK = 0x6000;

    /** {@code statx(fd, "", AT_EMPTY_PATH, ...)}; a block device's size comes from BLKGETSIZE64. */
    public static FileInfo info(int fd) throws NativeException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(256, 8);
            Posix.check("statx", "fd " + fd, (st, x) -> (int) STATX.invokeExact(st, fd, x.allocateFrom(""),
                    AT_EMPTY_PATH, STATX_TYPE | STATX_SIZE | STATX_DIOALIGN, buf));
            int mask = buf.get(JAVA_INT, 0);
            int mode = Short.toUnsignedInt(buf.get(java.lang.foreign.ValueLayout.JAVA_SHORT, 28)) & S_IFMT;
            long size = buf.get(JAVA_LONG, 40);
            boolean dio = (mask & STATX_DIOALIGN) != 0;
            int memAlign = dio ? buf.get(JAVA_INT, 152) : 0;
            int offAlign = dio ? buf.get(JAVA_INT, 156) : 0;
            if (mode == S_IFBLK) {
                MemorySegment out = a.allocate(JAVA_LONG);
                Posix.check("ioctl", "BLKGETSIZE64 fd " + fd, (st, x) -> (int) IOCTL.invokeExact(st, fd, BLKGETSIZE64, out));
                size = out.get(JAVA_LONG, 0);
            }
            return new FileInfo(mode == S_IFREG, mode == S_IFBLK, size, memAlign, offAlign);
        }
    }

    /**
     * {@code pread(fd, buf, buf.byteSize(), offset)}, retried on EINTR: the bytes read (fewer at the end of
     * the file, 0 past it) or a negative errno.
     */
    public static long pread(int fd, MemorySegment buf, long offset, MemorySegment callState) {
        try {
            long n;
            do {
                n = (long) PREAD.invokeExact(callState, fd, buf, buf.byteSize(), offset);
            } while (n < 0 && Posix.errno(callState) == EINTR);
            return n < 0 ? -Posix.errno(callState) : n;
        } catch (Throwable t) {
            throw Posix.rethrow(t);
        }
    }

    /**
     * {@code pwrite} of {@code buf} at {@code offset}, retried on EINTR; with {@code dsync} through
     * {@code pwritev2(RWF_DSYNC)}, so the bytes are stable when it returns. The bytes written or a
     * negative errno.
     */
    public static long pwrite(int fd, MemorySegment buf, long offset, boolean dsync, MemorySegment callState,
                              MemorySegment iovec) {
        try {
            long n;
            do {
                if (dsync) {
                    iovec.set(JAVA_LONG, 0, buf.address());
                    iovec.set(JAVA_LONG, 8, buf.byteSize());
                    n = (long) PWRITEV2.invokeExact(callState, fd, iovec, 1, offset, RWF_DSYNC);
                } else {
                    n = (long) PWRITE.invokeExact(callState, fd, buf, buf.byteSize(), offset);
                }
            } while (n < 0 && Posix.errno(callState) == EINTR);
            return n < 0 ? -Posix.errno(callState) : n;
        } catch (Throwable t) {
            throw Posix.rethrow(t);
        }
    }

    /** {@code fdatasync(fd)}: 0 or a negative errno. */
    public static int fdatasync(int fd, MemorySegment callState) {
        try {
            int rc;
            do {
                rc = (int) FDATASYNC.invokeExact(callState, fd);
            } while (rc < 0 && Posix.errno(callState) == EINTR);
            return rc < 0 ? -Posix.errno(callState) : 0;
        } catch (Throwable t) {
            throw Posix.rethrow(t);
        }
    }

    /** {@code fallocate(fd, mode, offset, length)}: 0 or a negative errno. */
    public static int fallocate(int fd, int mode, long offset, long length, MemorySegment callState) {
        try {
            int rc;
            do {
                rc = (int) FALLOCATE.invokeExact(callState, fd, mode, offset, length);
            } while (rc < 0 && Posix.errno(callState) == EINTR);
            return rc < 0 ? -Posix.errno(callState) : 0;
        } catch (Throwable t) {
            throw Posix.rethrow(t);
        }
    }

    /** The exception for a failed data-path call that returned {@code -errno}. */
    public static NativeException error(String call, long negativeErrno, String detail) {
        return new NativeException(call, (int) -negativeErrno, detail);
    }

    /** A message for a negative errno a data-path call returned. */
    public static String describe(long negativeErrno) {
        int e = (int) -negativeErrno;
        return "errno " + e + " (" + Posix.strerror(e) + ")";
    }
}
