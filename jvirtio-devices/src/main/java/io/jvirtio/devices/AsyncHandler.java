package io.jvirtio.devices;

import io.jvirtio.core.queue.DescriptorChain;

/**
 * Serves a driver-to-device queue whose requests complete later, many at a time ({@link AsyncWorker}):
 * each chain popped is either finished at once or started, and started ones come back through
 * {@link #reap}. Everything but {@link #wakeup()} runs on the queue's thread.
 */
public interface AsyncHandler {
    /** Takes a finished chain back: the device wrote {@code len} bytes into its writable buffers. */
    @FunctionalInterface
    interface UsedSink {
        void used(DescriptorChain chain, int len);
    }

    /** On the queue's thread, before the first chain: open the engine. */
    void open() throws Exception;

    /** The chain object to pop the next request into, or null while every slot is in flight. */
    DescriptorChain nextChain();

    /**
     * Handles the chain just popped into {@link #nextChain()}: returns its used length when it finished at
     * once (an invalid request, GET_ID), or -1 when it started and will come back through {@link #reap}.
     */
    int start(DescriptorChain chain);

    /** Ends a batch of starts. */
    void submit();

    /** True when {@link #reap} has finished chains to hand back. */
    boolean ready();

    /** {@link #ready()} for a busy-polling thread (may cost a system call). */
    default boolean poll() {
        return ready();
    }

    /** Hands every finished chain to {@code sink}; returns how many. */
    int reap(UsedSink sink);

    /** Kicks the engine saw itself (a watched kick eventfd), for statistics. */
    default long kicks() {
        return 0;
    }

    /** Chains started and not yet reaped. */
    int inFlight();

    /** Sleeps until {@link #ready()} or {@link #wakeup()}. */
    void await();

    /** Ends an {@link #await()}; any thread; safe before {@link #open()}. */
    void wakeup();

    /** On the queue's thread, once nothing is in flight (or it gave up waiting): release the engine. */
    void close();
}
