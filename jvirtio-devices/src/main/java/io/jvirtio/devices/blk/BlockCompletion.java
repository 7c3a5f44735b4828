package io.jvirtio.devices.blk;

/**
 * Where a {@link BlockQueue} reports finished requests. Called on the queue's own thread, from
 * {@link BlockQueue#reap()}, never from an engine's threads.
 */
@FunctionalInterface
public interface BlockCompletion {
    /** Success. */
    int OK = 0;

    /**
     * {@code request} is done: {@code result} is {@link #OK} or a negative errno ({@code -EIO}, {@code -ENOSPC};
     * {@code -EOPNOTSUPP} when the operation is not supported). A failed read may have filled part of the
     * buffers; the device hides them from the driver.
     */
    void complete(BlockRequest request, int result);
}
