package io.jvirtio.devices.blk;

/**
 * The base of a {@link BlockQueue} whose requests complete on other threads (a pool, a socket reader, a
 * storage client's callbacks): they {@link #post} results into a {@link CompletionQueue}, and this class
 * gives the queue's thread {@code ready}, {@code reap}, {@code await} and {@code wakeup} over it. An engine
 * implements {@link #start} (and {@link #close}); {@link #submit} does nothing unless it batches.
 */
public abstract class PostingQueue implements BlockQueue {
    private final CompletionQueue done;
    private final BlockCompletion completion;

    /** Call on the queue's thread (the one that reaps): it owns the completion queue. */
    protected PostingQueue(int depth, BlockCompletion completion) {
        this.done = new CompletionQueue(depth);
        this.completion = completion;
    }

    /** Completes {@code request} with {@code result} (0 or a negative errno). Any thread; once per start. */
    protected final void post(BlockRequest request, int result) {
        done.post(request, result);
    }

    @Override
    public void submit() {
    }

    @Override
    public final boolean ready() {
        return done.ready();
    }

    @Override
    public final int reap() {
        return done.reap(completion);
    }

    @Override
    public final void await() {
        done.await();
    }

    @Override
    public final void wakeup() {
        done.wakeup();
    }
}
