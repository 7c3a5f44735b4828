package io.jvirtio.devices.blk;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * A raw image — a regular file or a block device — served with asynchronous I/O straight between guest
 * memory and the disk: io_uring where the kernel allows it, else a pool of threads per queue
 * ({@link AioEngine}); with the page cache or without it ({@link CacheMode}, QEMU's {@code cache=}).
 * DISCARD punches holes, WRITE_ZEROES zeroes ranges with {@code fallocate} (block devices too), falling
 * back to writing zeroes where the file system refuses. The capacity is the size rounded down to 512.
 */
public final class FileBackend implements BlockBackend {
    /** Threads per queue of the {@code threads} engine, unless told otherwise. */
    public static final int DEFAULT_THREADS = 16;

    private final FileImage image;
    private final AioEngine engine;
    private final int threads;
    private final int sqEntries;

    /** An image opened with {@code cache=writeback} on the best engine here. */
    public FileBackend(Path image, boolean readOnly) throws IOException {
        this(image, readOnly, CacheMode.WRITEBACK, AioEngine.AUTO);
    }

    public FileBackend(Path image, boolean readOnly, CacheMode cache, AioEngine engine) throws IOException {
        this(image, readOnly, cache, engine, DEFAULT_THREADS, 0);
    }

    /**
     * @param threads   threads per queue for the {@code threads} engine
     * @param sqEntries io_uring submission entries per queue, 0 for the queue's depth (tests use fewer to
     *                  exercise a full submission ring)
     */
    public FileBackend(Path image, boolean readOnly, CacheMode cache, AioEngine engine, int threads, int sqEntries)
            throws IOException {
        if (threads < 1 || threads > 1024) {
            throw new IllegalArgumentException("threads " + threads + " not in 1..1024");
        }
        this.image = FileImage.open(image, readOnly, cache);
        this.engine = engine.resolve();
        this.threads = threads;
        this.sqEntries = sqEntries;
    }

    /** Creates (or truncates to) an image of {@code bytes} bytes, sparse, and opens it writeback. */
    public static FileBackend create(Path image, long bytes) throws IOException {
        try (FileChannel c = FileChannel.open(image, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.READ)) {
            c.truncate(bytes);
            if (c.size() < bytes) {
                c.write(ByteBuffer.allocate(1), bytes - 1);
            }
        }
        return new FileBackend(image, false);
    }

    public AioEngine engine() {
        return engine;
    }

    public CacheMode cache() {
        return image.cache();
    }

    @Override
    public long capacity() {
        return image.capacity();
    }

    @Override
    public boolean readOnly() {
        return image.readOnly();
    }

    @Override
    public String id() {
        return image.id();
    }

    @Override
    public boolean writeCache() {
        return image.writeCache();
    }

    @Override
    public boolean watchesFds() {
        return engine == AioEngine.IO_URING;
    }

    @Override
    public BlockQueue open(int queueIndex, int depth, BlockCompletion completion) throws IOException {
        return switch (engine) {
            case IO_URING -> new IoUringQueue(image, depth, sqEntries > 0 ? sqEntries : depth + 1, completion);
            case THREADS, AUTO -> new PooledQueue(image, queueIndex, depth, threads, completion);
        };
    }

    @Override
    public long resize(long bytes) throws IOException {
        return image.resize(bytes);
    }

    /** fdatasync: every completed write is on stable storage when this returns (used at shutdown). */
    public void flush() throws IOException {
        image.flush();
    }

    @Override
    public String describe() {
        return image.describe() + ", aio " + engine.label() + (engine == AioEngine.THREADS ? " (" + threads + " per queue)" : "");
    }

    @Override
    public void close() {
        image.close();
    }
}
