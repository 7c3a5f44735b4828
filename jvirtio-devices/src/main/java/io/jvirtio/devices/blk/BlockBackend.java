package io.jvirtio.devices.blk;

import java.io.IOException;

/**
 * Where a block device's bytes live, as an asynchronous engine: each virtqueue opens its own
 * {@link BlockQueue}, starts requests on it in batches and gets their completions back in batches, so a
 * queue keeps many requests in flight on one thread. io_uring files ({@link FileBackend}), a thread pool
 * ({@link BlockBackends#pooled}), memory and null disks all implement it; a synchronous implementation
 * ({@link SyncBlockBackend}) runs through {@link BlockBackends#pooled} or, when it never blocks,
 * {@link BlockBackends#inline}.
 *
 * <p>Offsets and lengths the device passes are always inside {@link #capacity()} and multiples of 512 — the
 * device checks every request before it reaches the backend.
 */
public interface BlockBackend extends AutoCloseable {
    /** Size in bytes, a multiple of 512. */
    long capacity();

    boolean readOnly();

    /** Up to 20 bytes of serial for GET_ID. */
    String id();

    /**
     * Opens the request path of virtqueue {@code queueIndex}, which keeps at most {@code depth} requests
     * in flight (their tags are below {@code depth}) and takes completions through {@code completion}.
     * Called on the virtqueue's thread, which then owns the queue.
     */
    BlockQueue open(int queueIndex, int depth, BlockCompletion completion) throws IOException;

    /**
     * Whether writes are cached (QEMU's writeback and none modes) rather than stable at completion; the
     * device's write cache starts in this state (VIRTIO_BLK_F_CONFIG_WCE's {@code writeback}).
     */
    default boolean writeCache() {
        return true;
    }

    /**
     * Changes the capacity to {@code bytes} (a positive multiple of 512) and returns it; later requests are
     * checked against it. Back-ends that cannot resize throw {@link UnsupportedOperationException}.
     */
    default long resize(long bytes) throws IOException {
        throw new UnsupportedOperationException(getClass().getSimpleName() + " cannot be resized");
    }

    /** Whether its queues can wait on a kick eventfd themselves ({@link BlockQueue#watch}). */
    default boolean watchesFds() {
        return false;
    }

    /** What the back-end is, for the start-up line: engine, cache mode, alignment. */
    default String describe() {
        return getClass().getSimpleName();
    }

    @Override
    default void close() throws IOException {
    }
}
