package io.jvirtio.devices.blk;

import io.jvirtio.core.os.FileIo;
import io.jvirtio.core.os.NativeException;

import java.io.IOException;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;

/** Runs a {@link SyncBlockBackend} as a {@link BlockBackend}: inline, or on a bounded pool per queue. */
public final class BlockBackends {
    private static final Logger LOG = System.getLogger(BlockBackends.class.getName());

    private BlockBackends() {
    }

    /**
     * Runs each request on the queue's own thread when it is started: for stores that never block (memory,
     * null). A store that blocks would stall its queue at depth 1 — use {@link #pooled} for those.
     */
    public static BlockBackend inline(SyncBlockBackend store) {
        return new Adapter(store, 0);
    }

    /**
     * Runs requests on {@code threads} threads per queue, so each queue keeps up to that many in flight;
     * completions come back to the queue's thread in batches.
     */
    public static BlockBackend pooled(SyncBlockBackend store, int threads) {
        if (threads < 1 || threads > 1024) {
            throw new IllegalArgumentException("threads " + threads + " not in 1..1024");
        }
        return new Adapter(store, threads);
    }

    private record Adapter(SyncBlockBackend store, int threads) implements BlockBackend {
        @Override
        public long capacity() {
            return store.capacity();
        }

        @Override
        public boolean readOnly() {
            return store.readOnly();
        }

        @Override
        public String id() {
            return store.id();
        }

        @Override
        public boolean writeCache() {
            return store.writeCache();
        }

        @Override
        public BlockQueue open(int queueIndex, int depth, BlockCompletion completion) {
            return threads == 0 ? new InlineQueue(store, depth, completion)
                    : new PooledQueue(store, queueIndex, depth, threads, completion);
        }

        @Override
        public String describe() {
            return store.getClass().getSimpleName() + (threads == 0 ? " (inline)" : " (" + threads + " threads per queue)");
        }

        @Override
        public void close() throws IOException {
            store.close();
        }
    }

    /** Runs {@code r} with blocking calls; returns {@link BlockCompletion#OK} or a negative errno. */
    static int run(SyncBlockBackend store, BlockRequest r) {
        try {
            switch (r.op()) {
                case READ -> {
                    long at = r.offset();
                    for (int i = 0; i < r.bufferCount(); i++) {
                        store.read(at, r.buffer(i));
                        at += r.bufferLength(i);
                    }
                }
                case WRITE -> {
                    long at = r.offset();
                    for (int i = 0; i < r.bufferCount(); i++) {
                        store.write(at, r.buffer(i), false);
                        at += r.bufferLength(i);
                    }
                    if (r.durable()) {
                        store.flush();
                    }
                }
                case FLUSH -> store.flush();
                case DISCARD -> store.discard(r.offset(), r.length());
                case WRITE_ZEROES -> {
                    store.writeZeroes(r.offset(), r.length(), r.unmap());
                    if (r.durable()) {
                        store.flush();
                    }
                }
            }
            return BlockCompletion.OK;
        } catch (UnsupportedOperationException e) {
            return -FileIo.EOPNOTSUPP;
        } catch (NativeException e) {
            LOG.log(Level.WARNING, "{0} failed: {1}", r, e.getMessage());
            return -e.errno();
        } catch (IOException | RuntimeException e) {
            LOG.log(Level.WARNING, "{0} failed: {1}", r, e.toString());
            return -FileIo.EIO;
        }
    }
}
