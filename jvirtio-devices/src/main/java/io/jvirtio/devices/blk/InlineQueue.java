package io.jvirtio.devices.blk;

/** Runs each request on the queue's thread as it starts ({@link BlockBackends#inline}). */
final class InlineQueue extends PostingQueue {
    private final SyncBlockBackend store;

    InlineQueue(SyncBlockBackend store, int depth, BlockCompletion completion) {
        super(depth, completion);
        this.store = store;
    }

    @Override
    public void start(BlockRequest request) {
        post(request, BlockBackends.run(store, request));
    }

    @Override
    public void close() {
    }
}
