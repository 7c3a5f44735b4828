package io.jvirtio.devices;

import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.queue.VirtqueueException;

import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.locks.LockSupport;

/**
 * The thread that owns one device queue: it sleeps (parked, no polling) until {@link #wake()}, then
 * runs {@link #serve}. A ring error breaks only this queue and becomes DEVICE_NEEDS_RESET; nothing
 * escapes the thread. {@link QueueWorker} serves driver-to-device queues, {@link RxWorker}
 * device-to-driver ones, {@link AsyncWorker} request queues with many requests in flight (it sleeps in its
 * engine rather than parked, to wake on completions too).
 */
public abstract sealed class QueueThread permits QueueWorker, RxWorker, AsyncWorker {
    /** Used elements published per batch before checking whether to interrupt. */
    static final int BATCH = 64;

    final DeviceQueue queue;
    private final Interrupt interrupt;
    private final DeviceContext.NeedsReset failure;
    private final AtomicBoolean woken = new AtomicBoolean(true);
    private final Thread thread;
    private volatile boolean running = true;
    /** An error another thread met serving this queue ({@link RxWorker#tryDeliver}), for this one to report. */
    private volatile VirtqueueException deferred;
    /** Used-buffer notifications sent, and decided against (EVENT_IDX, NO_INTERRUPT): for statistics. */
    private final java.util.concurrent.atomic.AtomicLong interrupts = new java.util.concurrent.atomic.AtomicLong();
    private final java.util.concurrent.atomic.AtomicLong suppressed = new java.util.concurrent.atomic.AtomicLong();
    /** Wake-ups asked of this queue (kicks through the session, new data): for statistics. */
    private final java.util.concurrent.atomic.AtomicLong wakeups = new java.util.concurrent.atomic.AtomicLong();

    QueueThread(String name, DeviceQueue queue, Interrupt interrupt, DeviceContext.NeedsReset failure) {
        this.queue = queue;
        this.interrupt = interrupt;
        this.failure = failure;
        this.thread = Thread.ofPlatform().name(name).daemon().unstarted(this::run);
    }

    /** One round of work after a wake-up; returns when there is nothing more to do for now. */
    abstract void serve(DescriptorChain chain) throws VirtqueueException;

    /** The poller that serves this queue instead of its own thread ({@link #drivenBy}), or null. */
    private Poller poller;

    /**
     * Has {@code p} serve this queue, among others, by polling, instead of a thread of its own; before
     * {@link #start()}. A request queue with requests in flight ({@link AsyncWorker}) polls in its engine instead.
     */
    public final void drivenBy(Poller p) {
        if (this instanceof AsyncWorker) {
            throw new IllegalArgumentException("a request queue polls in its engine (pollNanos), not in a Poller");
        }
        this.poller = p;
    }

    /** Whether a {@link Poller} serves this queue. */
    final boolean polled() {
        return poller != null;
    }

    final Poller poller() {
        return poller;
    }

    /**
     * Poller-thread state: the poller has taken this queue into its rounds and not let it go (only then may the
     * poller write into its ring while serving another, {@link RxWorker#tryDeliver}); and its used elements wait
     * for the publish the poller does after the round of the queue that staged them.
     */
    boolean joined;
    boolean flushPending;

    public final void start() {
        if (poller != null) {
            try {
                poller.add(this);
            } catch (Exception e) {
                failure.needsReset("queue " + queue.index() + " could not start: " + e);
            }
        } else {
            thread.start();
        }
    }

    /** A notification (new buffers) or new data: run {@link #serve} again. Allocation-free, never blocks. */
    public final void wake() {
        Poller p = poller;
        if (p != null && p.isPollerThread()) {
            // the poller comes round to this queue itself: no flag to set, and no locked exchange, which would
            // wait for the stores before it (frames just written into guest memory) to leave the CPU
            return;
        }
        wakeups.lazySet(wakeups.get() + 1); // a statistic: a lost count under a race is harmless
        if (!woken.getAndSet(true)) {
            signal();
        }
    }

    /** Ends {@link #await()}; any thread, never blocks. */
    void signal() {
        Poller p = poller;
        if (p != null) {
            p.wake();
        } else {
            LockSupport.unpark(thread);
        }
    }

    /** Sleeps until {@link #signal()} (or spuriously). */
    void await() {
        LockSupport.park(this);
    }

    /** Work that arrived without a {@link #wake()} (completions). */
    boolean pendingWork() {
        return false;
    }

    /** On the thread, before serving: acquire what the thread owns. */
    void begin() throws Exception {
    }

    /** On the thread, after serving (stopped, or the queue broke): release it. */
    void end(boolean broken) {
    }

    /**
     * Stops the thread and waits until it no longer touches the queue. The wait is bounded: a device thread
     * never blocks on anything a peer controls (its eventfds are non-blocking), so one that does not stop
     * within {@link #STOP_TIMEOUT_MS} is a bug, reported rather than allowed to hang its caller.
     */
    public final void stop() {
        running = false;
        if (poller != null) {
            poller.remove(this);
            return;
        }
        signal();
        if (Thread.currentThread() != thread) {
            try {
                thread.join(STOP_TIMEOUT_MS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            if (thread.isAlive()) {
                System.getLogger(QueueThread.class.getName()).log(System.Logger.Level.ERROR,
                        "{0} did not stop within {1} ms; abandoning it", thread.getName(), STOP_TIMEOUT_MS);
            }
        }
    }

    static final long STOP_TIMEOUT_MS = 10_000;

    final boolean woken() {
        return woken.get();
    }

    final void clearWoken() {
        woken.set(false);
    }

    /**
     * One round for a {@link Poller}: what is there now, with the driver's notifications off; true if it did
     * anything. Never sleeps.
     */
    boolean poll(DescriptorChain chain) throws VirtqueueException {
        throw new UnsupportedOperationException(getClass().getSimpleName() + " is not polled");
    }

    /**
     * Before its {@link Poller} sleeps: asks the driver for the notifications that must wake it; true when
     * there is work already (the poller then does not sleep).
     */
    boolean arm() throws VirtqueueException {
        return queue.enableNotifications();
    }

    /** An error another thread handed over ({@link #failLater}), thrown on the serving thread. */
    final void throwDeferred() throws VirtqueueException {
        VirtqueueException d = deferred;
        if (d != null) {
            throw d;
        }
    }

    /** The queue broke on its poller: NEEDS_RESET, as on its own thread. */
    final void failed(String reason) {
        failure.needsReset(reason);
    }

    final boolean running() {
        return running;
    }

    /** Hands this thread an error met serving its queue on another thread: it reports it and stops. */
    final void failLater(VirtqueueException e) {
        deferred = e;
        wake();
    }

    /** Whether the queue failed on another thread ({@link #failLater}). */
    final boolean failed() {
        return deferred != null;
    }

    /** Publishes staged used elements and interrupts if the driver asked for it. */
    final void flush() {
        queue.publishUsed();
        if (queue.needsNotification()) {
            interrupt.raise();
            interrupts.lazySet(interrupts.get() + 1); // only this thread writes it
        } else {
            suppressed.lazySet(suppressed.get() + 1);
        }
    }

    /**
     * What this queue did so far, for statistics: kicks (notifications from the driver, whether they came
     * through {@link #wake()} or to the engine directly), interrupts sent and decided against, requests in flight.
     */
    public record Stats(int index, long kicks, long interrupts, long suppressed, int inFlight) {
    }

    public final Stats stats() {
        return new Stats(queue.index(), wakeups.get() + engineKicks(), interrupts.get(), suppressed.get(), inFlight());
    }

    /** Kicks the queue's engine saw without a {@link #wake()}. */
    long engineKicks() {
        return 0;
    }

    /** Requests taken and not yet answered. */
    int inFlight() {
        return 0;
    }

    private void run() {
        DescriptorChain chain = new DescriptorChain();
        boolean broken = true;
        try {
            begin();
            while (running) {
                VirtqueueException d = deferred;
                if (d != null) {
                    throw d;
                }
                if (!woken.getAndSet(false) && !pendingWork()) {
                    await();
                    continue;
                }
                serve(chain);
            }
            broken = false;
        } catch (VirtqueueException e) {
            failure.needsReset(e.getMessage());
        } catch (Throwable e) {
            // Anything else — a bug, a memory fault turned InternalError, an exhausted heap — still stops
            // only this queue, and loudly: NEEDS_RESET, never a silently dead queue.
            failure.needsReset("queue " + queue.index() + " failed: " + e);
        } finally {
            end(broken);
        }
    }
}
