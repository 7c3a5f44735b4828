package io.jvirtio.devices.blk;

import java.util.concurrent.ArrayBlockingQueue;

/**
 * A queue whose requests run on its own small pool of threads ({@link BlockBackends#pooled}; the
 * {@code threads} engine of {@link FileBackend}): the queue's thread hands each request over and goes on;
 * the pool posts completions back. The hand-over queue is bounded by the depth and preallocated, so no
 * request allocates.
 */
final class PooledQueue extends PostingQueue {
    private static final BlockRequest STOP = new BlockRequest(-1);

    private final SyncBlockBackend store;
    private final ArrayBlockingQueue<BlockRequest> work;
    private final Thread[] pool;

    PooledQueue(SyncBlockBackend store, int queueIndex, int depth, int threads, BlockCompletion completion) {
        super(depth, completion);
        this.store = store;
        this.work = new ArrayBlockingQueue<>(depth + threads);
        this.pool = new Thread[threads];
        for (int i = 0; i < threads; i++) {
            pool[i] = Thread.ofPlatform().name("jvirtio-blk-q" + queueIndex + "-io" + i).daemon().start(this::serve);
        }
    }

    private void serve() {
        try {
            for (BlockRequest r = work.take(); r != STOP; r = work.take()) {
                post(r, BlockBackends.run(store, r));
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    @Override
    public void start(BlockRequest request) {
        if (!work.offer(request)) {
            throw new IllegalStateException("more requests in flight than the queue's depth: " + request);
        }
    }

    @Override
    public void close() {
        for (int i = 0; i < pool.length; i++) {
            work.offer(STOP);
        }
        for (Thread t : pool) {
            try {
                t.join(10_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }
}
