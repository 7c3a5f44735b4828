package io.jvirtio.devices;

import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.VirtqueueException;

import java.util.Arrays;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

/**
 * One thread serving many queues by busy-polling their rings — the model of DPDK's lcores and SPDK's reactors,
 * for users who dedicate a core: while there is work the driver is asked for no notifications and the thread
 * never sleeps, so a frame costs neither a kick (an eventfd write by the driver) nor a wake-up (a futex and a
 * context switch here), and the queues of several NICs share one thread instead of taking turns on a CPU.
 * After {@code pollNanos} without work it asks every queue for notifications again and sleeps until one comes
 * ({@link QueueThread#wake()}).
 *
 * <p>Each queue is served by this thread alone, one at a time, as its own thread would serve it: a queue that
 * stops ({@link QueueThread#stop()}) is let go between two rounds, after which the poller no longer touches it.
 */
public final class Poller implements AutoCloseable {
    private final long pollNanos;
    /** The queues served, replaced whole when one joins or leaves: a round reads it once, allocating nothing. */
    private volatile QueueThread[] queues = new QueueThread[0];
    private final Thread thread;
    private volatile boolean sleeping;
    private volatile boolean open = true;
    /** Work of other kinds done in every round (a traffic source), replaced whole like {@link #queues}. */
    private volatile Producer[] producers = new Producer[0];
    /** Queues the poller wrote into while serving another ({@link #defer}), to publish after that one's round. */
    private QueueThread[] deferred = new QueueThread[8];
    private int deferredCount;
    /** Rounds finished: {@link #removeProducer} waits for the next, when the poller is out of what it dropped. */
    private final AtomicLong rounds = new AtomicLong();

    /** Work the poller does in each round besides its queues; on the poller's thread only. */
    @FunctionalInterface
    public interface Producer {
        /** One round: true if it did anything (the poller then does not go to sleep). Never blocks. */
        boolean produce();

        /**
         * The poller is about to sleep: have it woken ({@link Poller#wake()}) when there is work again, or say
         * there is some already (true: it does not sleep). By default nothing wakes it for this producer's sake.
         */
        default boolean arm() {
            return false;
        }
    }

    /** A poller thread named {@code name} that spins {@code pollNanos} without work before sleeping. */
    public Poller(String name, long pollNanos) {
        if (pollNanos <= 0) {
            throw new IllegalArgumentException("poll time " + pollNanos + " ns must be positive");
        }
        this.pollNanos = pollNanos;
        this.thread = Thread.ofPlatform().name(name).daemon().start(this::run);
    }

    public long pollNanos() {
        return pollNanos;
    }

    /** Queues being served now. */
    public int queueCount() {
        return queues.length;
    }

    void add(QueueThread q) throws Exception {
        q.begin(); // on the starting thread: nothing serves the queue yet
        synchronized (this) {
            QueueThread[] qs = Arrays.copyOf(queues, queues.length + 1);
            qs[qs.length - 1] = q;
            queues = qs;
        }
        wake();
    }

    /** Runs {@code p} in every round from now on, until {@link #removeProducer}. */
    public synchronized void addProducer(Producer p) {
        Producer[] ps = Arrays.copyOf(producers, producers.length + 1);
        ps[ps.length - 1] = p;
        producers = ps;
        wake();
    }

    /**
     * Stops running {@code p}: when this returns, the poller is not inside it and will not be again (it waits for
     * the round under way to end), so what {@code p} reads from — a descriptor, memory — can be closed.
     */
    public void removeProducer(Producer p) {
        synchronized (this) {
            producers = Arrays.stream(producers).filter(x -> x != p).toArray(Producer[]::new);
        }
        if (isPollerThread()) {
            return;
        }
        long round = rounds.get();
        long deadline = System.nanoTime() + QueueThread.STOP_TIMEOUT_MS * 1_000_000L;
        while (rounds.get() == round && thread.isAlive() && System.nanoTime() < deadline) {
            wake(); // a sleeping poller ends no round
            LockSupport.parkNanos(10_000);
        }
        if (rounds.get() == round && thread.isAlive()) {
            System.getLogger(Poller.class.getName()).log(System.Logger.Level.ERROR,
                    "{0} did not end its round within {1} ms", thread.getName(), QueueThread.STOP_TIMEOUT_MS);
        }
    }

    /** Whether the calling thread is this poller's: the one that serves its queues. */
    boolean isPollerThread() {
        return Thread.currentThread() == thread;
    }

    /**
     * {@code q}'s used elements, staged by the poller while serving another queue, are published (and the
     * driver notified) once that queue's round ends: one update for the whole batch. Poller thread only.
     */
    void defer(QueueThread q) {
        if (q.flushPending) {
            return;
        }
        q.flushPending = true;
        if (deferredCount == deferred.length) {
            deferred = Arrays.copyOf(deferred, deferredCount * 2); // grows to the number of queues, once
        }
        deferred[deferredCount++] = q;
    }

    private void flushDeferred() {
        for (int i = 0; i < deferredCount; i++) {
            QueueThread q = deferred[i];
            deferred[i] = null;
            q.flushPending = false;
            if (!q.failed()) {
                q.flush();
            }
        }
        deferredCount = 0;
    }

    private boolean serves(QueueThread q) {
        for (QueueThread x : queues) {
            if (x == q) {
                return true;
            }
        }
        return false;
    }

    private synchronized void drop(QueueThread q) {
        queues = Arrays.stream(queues).filter(x -> x != q).toArray(QueueThread[]::new);
    }

    /** Waits until the poller let {@code q} go: it is inside none of its methods and will not be again. */
    void remove(QueueThread q) {
        wake();
        if (Thread.currentThread() == thread) {
            release(q, false);
            return;
        }
        long deadline = System.nanoTime() + QueueThread.STOP_TIMEOUT_MS * 1_000_000L;
        while (serves(q) && System.nanoTime() < deadline && thread.isAlive()) {
            Thread.onSpinWait();
            wake();
        }
        if (serves(q)) {
            System.getLogger(Poller.class.getName()).log(System.Logger.Level.ERROR,
                    "{0} did not let its queue go within {1} ms", thread.getName(), QueueThread.STOP_TIMEOUT_MS);
        }
    }

    /** A queue or a producer has work (a kick, data for it): ends the poller's sleep, if it sleeps. Never blocks. */
    public void wake() {
        if (sleeping) {
            LockSupport.unpark(thread);
        }
    }

    /**
     * Ends {@code q} on this thread, then lets it go: whoever waits in {@link #remove} returns after its end.
     * What was written into its ring is published first, so a stopped ring's used index covers every buffer taken.
     */
    private void release(QueueThread q, boolean broken) {
        flushDeferred();
        if (serves(q)) {
            q.joined = false;
            q.end(broken);
            drop(q);
        }
    }

    private void run() {
        DescriptorChain chain = new DescriptorChain();
        long idleSince = System.nanoTime();
        while (open) {
            boolean work = false;
            for (QueueThread q : queues) {
                if (!q.running()) {
                    release(q, false);
                    continue;
                }
                work |= pollOne(q, chain);
                flushDeferred(); // what serving q wrote into other rings: one publish per ring for the round
            }
            for (Producer p : producers) {
                work |= p.produce();
                flushDeferred();
            }
            rounds.lazySet(rounds.get() + 1); // only this thread writes it; no fence in the round
            if (work) {
                idleSince = System.nanoTime();
            } else if (System.nanoTime() - idleSince >= pollNanos) {
                sleep();
                idleSince = System.nanoTime();
            } else {
                Thread.onSpinWait();
            }
        }
        for (QueueThread q : queues) {
            release(q, false);
        }
    }

    /** One round of {@code q}: true if it did anything. A broken ring stops that queue alone (NEEDS_RESET). */
    private boolean pollOne(QueueThread q, DescriptorChain chain) {
        try {
            q.throwDeferred();
            q.clearWoken();
            q.joined = true; // from now until release, the poller may write into its ring from others' rounds
            return q.poll(chain);
        } catch (VirtqueueException e) {
            q.failed(e.getMessage());
        } catch (Throwable e) {
            q.failed("queue " + q.queue.index() + " failed: " + e);
        }
        release(q, true);
        return false;
    }

    /**
     * No work for {@code pollNanos}: every queue asks its driver for notifications, every producer arms its own
     * wake-up; sleeps unless one of them already has work or was woken meanwhile (set {@code sleeping} first, look
     * after: a waker that comes later sees it and unparks).
     */
    private void sleep() {
        sleeping = true;
        try {
            boolean pending = false;
            for (QueueThread q : queues) {
                try {
                    pending |= !q.running() || q.arm() || q.woken();
                } catch (VirtqueueException e) {
                    pending = true; // the next round reports it
                }
            }
            for (Producer p : producers) {
                pending |= p.arm();
            }
            if (!pending && open) {
                LockSupport.park(this);
            }
        } finally {
            sleeping = false;
        }
    }

    /** Stops the thread once every queue has left (a device reset or close stops its queues first). */
    @Override
    public void close() {
        open = false;
        LockSupport.unpark(thread);
        try {
            thread.join(QueueThread.STOP_TIMEOUT_MS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
