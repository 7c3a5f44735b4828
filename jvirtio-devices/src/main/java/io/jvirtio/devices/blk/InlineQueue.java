package io.jvirtio.devices.blk;

/** Runs each request on the queue's thread as it starts ({@link BlockBackends#inline}). */
final class InlineQueue implements BlockQueue {
    private final SyncBlockBackend store;
    private final CompletionQueue done;
    private final BlockCompletion completion;

    InlineQueue(SyncBlockBackend store, int depth, BlockCompletion completion) {
        this.store = store;
        this.done = new CompletionQueue(depth);
        this.completion = completion;
    }

    @Override
    public void start(BlockRequest request) {
        done.post(request, BlockBackends.run(store, request));
    }

    @Override
    public void submit() {
    }

    @Override
    public boolean ready() {
        return done.ready();
    }

    @Override
    public int reap() {
        return done.reap(completion);
    }

    @Override
    public void await() {
        done.await();
    }

    @Override
    public void wakeup() {
        done.wakeup();
    }

    @Override
    public void close() {
    }
}
