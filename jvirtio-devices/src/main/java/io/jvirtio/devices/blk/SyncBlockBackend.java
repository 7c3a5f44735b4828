package io.jvirtio.devices.blk;

import java.io.IOException;
import java.lang.foreign.MemorySegment;

/**
 * A block store with blocking calls, the simplest thing to write: {@link BlockBackends#pooled} runs it on
 * a bounded pool of threads per queue (so a queue still has many requests in flight), and
 * {@link BlockBackends#inline} on the queue's own thread (for stores that never block, like memory).
 * Methods may be called from several threads at once. Offsets and lengths are inside {@link #capacity()}
 * and multiples of 512; an exception fails the request with VIRTIO_BLK_S_IOERR.
 */
public interface SyncBlockBackend extends AutoCloseable {
    /** Size in bytes, a multiple of 512. */
    long capacity();

    boolean readOnly();

    /** Up to 20 bytes of serial for GET_ID. */
    String id();

    /** Fills all of {@code dst} from {@code offset}. */
    void read(long offset, MemorySegment dst) throws IOException;

    /** Stores all of {@code src} at {@code offset}. */
    void write(long offset, MemorySegment src) throws IOException;

    /**
     * Stores {@code src} and, with {@code durable}, makes it stable before returning (writethrough). The
     * default writes then {@link #flush()}es; a store with a cheaper way (O_DSYNC, FUA) overrides it.
     */
    default void write(long offset, MemorySegment src, boolean durable) throws IOException {
        write(offset, src);
        if (durable) {
            flush();
        }
    }

    /** Makes every completed write durable (FLUSH). */
    void flush() throws IOException;

    /** The range reads back as zeroes afterwards; {@code unmap}: it may also be deallocated. */
    void writeZeroes(long offset, long length, boolean unmap) throws IOException;

    /** The range's contents are no longer needed (they may read back as anything). */
    default void discard(long offset, long length) throws IOException {
    }

    /** Whether writes are cached until a flush (see {@link BlockBackend#writeCache()}). */
    default boolean writeCache() {
        return true;
    }

    @Override
    default void close() throws IOException {
    }
}
