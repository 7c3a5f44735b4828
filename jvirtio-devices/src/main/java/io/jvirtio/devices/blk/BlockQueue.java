package io.jvirtio.devices.blk;

/**
 * The request path of one virtqueue into a {@link BlockBackend}: many requests in flight, started in
 * batches and completed in batches. One thread uses a queue — the virtqueue's — so an engine needs no lock
 * between its queues; only {@link #wakeup()} is called from other threads.
 *
 * <p>The device's loop: {@link #start} each request popped from the ring, {@link #submit()} once per batch,
 * then {@link #await()} until {@link #ready()}, and {@link #reap()} to have the completions delivered.
 */
public interface BlockQueue extends AutoCloseable {
    /**
     * Takes {@code request} (at most {@code depth} from {@link BlockBackend#open} are in flight at once). The
     * engine may start it now or at {@link #submit()}, and completes it once, later, through {@link #reap()}.
     * Must not block on I/O.
     */
    void start(BlockRequest request);

    /** Ends a batch: everything started is on its way (one system call for io_uring). Never blocks on I/O. */
    void submit();

    /** True when {@link #reap()} has completions to deliver. */
    boolean ready();

    /**
     * {@link #ready()} for a thread that busy-polls: may do a cheap system call to collect completions the
     * engine holds back until asked (io_uring's deferred task work).
     */
    default boolean poll() {
        return ready();
    }

    /** Delivers the finished requests to the queue's {@link BlockCompletion}, on this thread; returns how many. */
    int reap();

    /** Blocks until {@link #ready()} or {@link #wakeup()}; a wakeup that came first makes it return at once. */
    void await();

    /**
     * Also ends {@link #await()} (and makes {@link #ready()} true) each time eventfd {@code fd} is signalled —
     * a vhost-user kick, waited on by the queue's own thread. Only where {@link BlockBackend#watchesFds()}.
     */
    default void watch(int fd) {
        throw new UnsupportedOperationException("this queue cannot wait on descriptors");
    }

    /** Kicks seen on the descriptor given to {@link #watch}, for statistics. */
    default long kicks() {
        return 0;
    }

    /** Ends an {@link #await()}: new requests for the queue's thread. Any thread; never blocks. */
    void wakeup();

    /**
     * Releases the queue. The device calls it only once nothing is in flight (it waits for every started
     * request to complete first), on the queue's thread.
     */
    @Override
    void close();
}
