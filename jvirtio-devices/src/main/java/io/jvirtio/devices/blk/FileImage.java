package io.jvirtio.devices.blk;

import io.jvirtio.core.spec.Blk;
import io.jvirtio.core.os.FileIo;
import io.jvirtio.core.os.NativeException;
import io.jvirtio.core.os.Posix;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;

/**
 * An open disk image — a regular file or a block device — with the descriptors its cache mode needs:
 * with {@link CacheMode#NONE} one opened O_DIRECT and one without, for requests whose buffers or offsets
 * do not meet the direct-I/O alignment (they go through the page cache, the kernel bouncing them, instead
 * of failing with EINVAL). Its blocking calls are the {@code threads} engine and the slow paths of the
 * io_uring one. Thread-safe.
 */
final class FileImage implements SyncBlockBackend {
    /** 64 KiB of zeroes, aligned for O_DIRECT: write-zeroes where the file system cannot fallocate. */
    private static final MemorySegment ZEROES = Arena.global().allocate(64 * 1024, 4096);
    /** Per thread: errno capture and a one-entry iovec, so a call allocates nothing. */
    private record Scratch(MemorySegment state, MemorySegment iovec) {
        static Scratch create() {
            return new Scratch(Posix.callState(Arena.global()), Arena.global().allocate(16, 8));
        }
    }

    private static final ThreadLocal<Scratch> SCRATCH = ThreadLocal.withInitial(Scratch::create);

    final int fd;
    /** Without O_DIRECT: {@link #fd} itself unless the mode is NONE. */
    final int bufferedFd;
    final boolean direct;
    final boolean blockDevice;
    /** Buffer address and length alignment O_DIRECT needs (1 when not direct). */
    final int memAlign;
    /** File offset and length alignment O_DIRECT needs (1 when not direct). */
    final int offsetAlign;
    private volatile long capacity;
    private final boolean readOnly;
    private final CacheMode cache;
    private final String id;
    private final String path;

    private FileImage(String path, int fd, int bufferedFd, FileIo.FileInfo info, boolean readOnly, CacheMode cache) {
        this.path = path;
        this.fd = fd;
        this.bufferedFd = bufferedFd;
        this.direct = cache == CacheMode.NONE;
        this.blockDevice = info.blockDevice();
        // statx without DIOALIGN (older kernels, some file systems): assume the strictest common case.
        this.memAlign = !direct ? 1 : info.dioMemAlign() > 0 ? info.dioMemAlign() : 4096;
        this.offsetAlign = !direct ? 1 : info.dioOffsetAlign() > 0 ? info.dioOffsetAlign() : 4096;
        this.capacity = info.size() & ~(Blk.SECTOR_SIZE - 1L);
        this.readOnly = readOnly;
        this.cache = cache;
        String name = Path.of(path).getFileName().toString();
        this.id = name.length() > Blk.ID_BYTES ? name.substring(0, Blk.ID_BYTES) : name;
    }

    static FileImage open(Path image, boolean readOnly, CacheMode cache) throws IOException {
        String path = image.toString();
        int access = readOnly ? FileIo.O_RDONLY : Posix.O_RDWR;
        int fd = FileIo.open(path, access | (cache == CacheMode.NONE ? FileIo.O_DIRECT : 0));
        int buffered = fd;
        try {
            FileIo.FileInfo info = FileIo.info(fd);
            if (!info.regular() && !info.blockDevice()) {
                throw new IOException(path + " is neither a regular file nor a block device");
            }
            if (cache == CacheMode.NONE) {
                buffered = FileIo.open(path, access);
            }
            return new FileImage(path, fd, buffered, info, readOnly, cache);
        } catch (IOException | RuntimeException e) {
            closeQuietly(fd);
            if (buffered != fd) {
                closeQuietly(buffered);
            }
            throw e;
        }
    }

    /** Whether {@code [offset, +length)} at host {@code address} can go through the O_DIRECT descriptor. */
    boolean alignedForDirect(long address, long offset, long length) {
        return ((address | length) & (memAlign - 1)) == 0 && ((offset | length) & (offsetAlign - 1)) == 0;
    }

    /** The descriptor for all of {@code r}: the direct one when every buffer is aligned for it. */
    int fdFor(BlockRequest r) {
        if (!direct) {
            return fd;
        }
        if ((r.offset() & (offsetAlign - 1)) != 0) {
            return bufferedFd;
        }
        for (int i = 0; i < r.bufferCount(); i++) {
            if (!alignedForDirect(r.bufferAddress(i), 0, r.bufferLength(i))) {
                return bufferedFd;
            }
        }
        return fd;
    }

    CacheMode cache() {
        return cache;
    }

    String path() {
        return path;
    }

    @Override
    public long capacity() {
        return capacity;
    }

    /**
     * Online resize: a regular file is truncated to {@code bytes} (grown sparse, or shrunk — the caller
     * decides whether shrinking is allowed); a block device cannot be resized from here, but its new size
     * (after the volume grew) is taken when {@code bytes} equals it. Returns the new capacity.
     */
    synchronized long resize(long bytes) throws IOException {
        if (bytes <= 0 || bytes % Blk.SECTOR_SIZE != 0) {
            throw new IllegalArgumentException("size " + bytes + " is not a positive multiple of 512");
        }
        if (readOnly) {
            throw new IOException(path + " is read-only");
        }
        if (blockDevice) {
            long now = FileIo.info(fd).size() & ~(Blk.SECTOR_SIZE - 1L);
            if (now != bytes) {
                throw new IOException(path + " is a block device of " + now + " bytes; resize the device itself");
            }
        } else {
            Posix.ftruncate(fd, bytes);
        }
        capacity = bytes;
        return bytes;
    }

    @Override
    public boolean readOnly() {
        return readOnly;
    }

    @Override
    public String id() {
        return id;
    }

    @Override
    public boolean writeCache() {
        return cache != CacheMode.WRITETHROUGH;
    }

    @Override
    public void read(long offset, MemorySegment dst) throws IOException {
        readFrom(offset, dst, 0);
    }

    /** Reads {@code dst} from {@code offset}, its first {@code done} bytes already read. Past the end: zeroes. */
    void readFrom(long offset, MemorySegment dst, long done) throws IOException {
        MemorySegment st = SCRATCH.get().state();
        int use = alignedForDirect(dst.address(), offset, dst.byteSize()) ? fd : bufferedFd;
        while (done < dst.byteSize()) {
            MemorySegment rest = dst.asSlice(done);
            long n = FileIo.pread(done == 0 ? use : bufferedFd, rest, offset + done, st);
            if (n < 0) {
                throw FileIo.error("pread", n, path + " at " + (offset + done));
            }
            if (n == 0) {
                // A file shorter than the disk (truncated under us): past its end reads as a hole.
                rest.fill((byte) 0);
                return;
            }
            done += n;
        }
    }

    @Override
    public void write(long offset, MemorySegment src) throws IOException {
        write(offset, src, false);
    }

    @Override
    public void write(long offset, MemorySegment src, boolean durable) throws IOException {
        writeFrom(offset, src, 0, durable);
    }

    /** Writes {@code src} at {@code offset}, its first {@code done} bytes already written. */
    void writeFrom(long offset, MemorySegment src, long done, boolean durable) throws IOException {
        Scratch scratch = SCRATCH.get();
        MemorySegment st = scratch.state();
        MemorySegment iov = scratch.iovec();
        int use = alignedForDirect(src.address(), offset, src.byteSize()) ? fd : bufferedFd;
        while (done < src.byteSize()) {
            long n = FileIo.pwrite(done == 0 ? use : bufferedFd, src.asSlice(done), offset + done, durable, st, iov);
            if (n < 0) {
                throw FileIo.error("pwrite", n, path + " at " + (offset + done));
            }
            if (n == 0) {
                throw FileIo.error("pwrite", -FileIo.ENOSPC, path + " wrote nothing at " + (offset + done));
            }
            done += n;
        }
    }

    @Override
    public void flush() throws IOException {
        int rc = FileIo.fdatasync(fd, SCRATCH.get().state());
        if (rc < 0) {
            throw FileIo.error("fdatasync", rc, path);
        }
    }

    /** The fallocate mode of a write-zeroes: punch a hole when it may deallocate, else zero the range. */
    static int zeroMode(boolean unmap) {
        return FileIo.FALLOC_FL_KEEP_SIZE | (unmap ? FileIo.FALLOC_FL_PUNCH_HOLE : FileIo.FALLOC_FL_ZERO_RANGE);
    }

    @Override
    public void writeZeroes(long offset, long length, boolean unmap) throws IOException {
        int rc = FileIo.fallocate(fd, zeroMode(unmap), offset, length, SCRATCH.get().state());
        if (rc == -FileIo.EOPNOTSUPP || rc == -FileIo.EINVAL) {
            writeZeroesByWriting(offset, length);
        } else if (rc < 0) {
            throw FileIo.error("fallocate", rc, path + " zeroing " + length + " bytes at " + offset);
        }
    }

    /** Write-zeroes for file systems that cannot fallocate: plain writes of zeroes. */
    void writeZeroesByWriting(long offset, long length) throws IOException {
        for (long done = 0; done < length; ) {
            long n = Math.min(ZEROES.byteSize(), length - done);
            writeFrom(offset + done, ZEROES.asSlice(0, n), 0, false);
            done += n;
        }
    }

    @Override
    public void discard(long offset, long length) throws IOException {
        int rc = FileIo.fallocate(fd, FileIo.FALLOC_FL_KEEP_SIZE | FileIo.FALLOC_FL_PUNCH_HOLE, offset, length,
                SCRATCH.get().state());
        // Discard is a hint (§5.2.6: the contents become unspecified); where the file system cannot punch, keep them.
        if (rc < 0 && rc != -FileIo.EOPNOTSUPP) {
            throw FileIo.error("fallocate", rc, path + " discarding " + length + " bytes at " + offset);
        }
    }

    @Override
    public void close() {
        closeQuietly(fd);
        if (bufferedFd != fd) {
            closeQuietly(bufferedFd);
        }
    }

    private static void closeQuietly(int fd) {
        try {
            Posix.close(fd);
        } catch (NativeException e) {
            System.getLogger(FileImage.class.getName()).log(System.Logger.Level.DEBUG, e.getMessage());
        }
    }

    String describe() {
        return (blockDevice ? "block device " : "file ") + path + ", cache " + cache.label()
                + (direct ? " (O_DIRECT, buffer alignment " + memAlign + ", offset alignment " + offsetAlign + ")" : "");
    }
}
