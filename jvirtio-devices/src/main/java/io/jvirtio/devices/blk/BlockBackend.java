package io.jvirtio.devices.blk;

import java.io.IOException;
import java.lang.foreign.MemorySegment;

/**
 * Where a block device's bytes live. Offsets and lengths are in bytes and always inside
 * {@link #capacity()} (the device checks before calling). Implementations may be called from several
 * queue threads at once.
 */
public interface BlockBackend extends AutoCloseable {
    /** Size in bytes, a multiple of 512. */
    long capacity();

    boolean readOnly();

    /** Up to 20 bytes of serial for GET_ID. */
    String id();

    void read(long offset, MemorySegment dst) throws IOException;

    void write(long offset, MemorySegment src) throws IOException;

    /** Makes every completed write durable (FLUSH). */
    void flush() throws IOException;

    /** The range reads back as zeroes afterwards. */
    void writeZeroes(long offset, long length) throws IOException;

    /** The range's contents are no longer needed (they may read back as anything). */
    default void discard(long offset, long length) throws IOException {
    }

    @Override
    default void close() throws IOException {
    }
}
