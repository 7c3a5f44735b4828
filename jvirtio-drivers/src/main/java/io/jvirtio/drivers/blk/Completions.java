package io.jvirtio.drivers.blk;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;

/**
 * Where a driver completes the futures it handed out. Used buffers are reaped on the interrupt thread — one
 * thread for every device of a machine, like a CPU taking interrupts — which must not run user code: a slow
 * continuation there would hold up every other device. So a future nobody has attached a continuation to is
 * completed right there (that only releases a thread blocked in {@code get()} or {@code join()}), and one
 * with continuations is completed on this device's own completion thread (a virtual thread, in completion
 * order), where they run. A continuation attached while the request completes may still run on the
 * completing thread (CompletableFuture runs late-attached ones where they are attached).
 *
 * <p>{@link #inline} turns the hand-off off: continuations then run on the interrupt thread, saving a thread
 * wake-up per batch of completions — for a caller whose continuations are short and never block (a load
 * generator that only records a latency and resubmits).
 */
final class Completions implements AutoCloseable {
    private final ExecutorService thread;
    private volatile boolean inline;

    Completions(String device) {
        this.thread = Executors.newSingleThreadExecutor(Thread.ofVirtual().name("jvirtio-completions-" + device).factory());
    }

    /** Continuations on the completing (interrupt) thread from now on, or on the completion thread again. */
    void inline(boolean on) {
        inline = on;
    }

    <T> void complete(CompletableFuture<T> f, T value) {
        if (inline || f.getNumberOfDependents() == 0 || !handOff(() -> f.complete(value))) {
            f.complete(value);
        }
    }

    void fail(CompletableFuture<?> f, Throwable cause) {
        if (inline || f.getNumberOfDependents() == 0 || !handOff(() -> f.completeExceptionally(cause))) {
            f.completeExceptionally(cause);
        }
    }

    private boolean handOff(Runnable completion) {
        try {
            thread.execute(completion);
            return true;
        } catch (RejectedExecutionException e) {
            return false; // the device is gone: complete where we are
        }
    }

    /** Lets the completions handed off run, then ends the thread. */
    @Override
    public void close() {
        thread.shutdown();
    }
}
