package io.jvirtio.devices;

import io.jvirtio.core.queue.DescriptorChain;

/** Serves one descriptor chain of one queue; owned by that queue's worker thread. */
@FunctionalInterface
public interface QueueHandler {
    /** Processes {@code chain} and returns the number of bytes written into its writable buffers. */
    int handle(DescriptorChain chain);

    /**
     * A handler whose work starts with a read of each chain's buffer that misses the cache — a frame the driver
     * has just written on another CPU. Its worker pops a group of chains and {@link #touch}es them all before
     * handling the first, so their misses overlap, as DPDK's prefetch of the next buffers does, instead of
     * waiting for one after the other.
     */
    interface Touching extends QueueHandler {
        /**
         * Loads the bytes of {@code chain}'s buffers the handler reads first; returns a value made from them (the
         * worker keeps it, so the loads are not optimized away).
         */
        long touch(DescriptorChain chain);

        /**
         * After the group's chains were handled, before any of them is published used: a handler that kept their
         * buffers to hand on together (a burst of frames) does so now — they are the device's until published.
         */
        default void groupHandled() {
        }
    }
}
