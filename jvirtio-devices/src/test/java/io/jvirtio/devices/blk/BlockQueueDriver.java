package io.jvirtio.devices.blk;

import java.util.Arrays;

/**
 * Drives one {@link BlockQueue} from the test thread the way a device's queue thread does: start a batch,
 * submit, sleep in the engine until completions are ready, reap. Records each tag's result.
 */
final class BlockQueueDriver implements BlockCompletion, AutoCloseable {
    final BlockQueue queue;
    final int[] results;
    final int[] completions;
    private int outstanding;

    BlockQueueDriver(BlockBackend backend, int depth) throws Exception {
        this.results = new int[depth];
        this.completions = new int[depth];
        this.queue = backend.open(0, depth, this);
    }

    @Override
    public void complete(BlockRequest request, int result) {
        results[request.tag()] = result;
        completions[request.tag()]++;
        outstanding--;
    }

    void start(BlockRequest r) {
        results[r.tag()] = Integer.MIN_VALUE;
        outstanding++;
        queue.start(r);
    }

    /** Submits what was started and waits for all of it; every request completes exactly once. */
    void finish() {
        queue.submit();
        while (outstanding > 0) {
            if (!queue.ready()) {
                queue.await();
            }
            queue.reap();
        }
    }

    /** Runs one request to completion and returns its result. */
    int run(BlockRequest r) {
        start(r);
        finish();
        return results[r.tag()];
    }

    void resetCounts() {
        Arrays.fill(completions, 0);
    }

    @Override
    public void close() {
        queue.close();
    }
}
