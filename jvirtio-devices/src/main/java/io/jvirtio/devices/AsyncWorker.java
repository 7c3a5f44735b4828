package io.jvirtio.devices;

import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.queue.VirtqueueException;

import java.lang.System.Logger.Level;
import java.lang.System.Logger;

/**
 * Serves a request queue with many requests in flight: each round reaps what finished, pops as many
 * chains as the handler has slots for, starts them as one batch, and publishes the used elements with one
 * index update and at most one interrupt (EVENT_IDX decides). It sleeps in the handler's engine, which
 * wakes it on a completion as well as on a kick; with polling ({@code pollNanos > 0}) it first spins that
 * long on both. Notifications stay off while every slot is busy: the next completion brings it back.
 *
 * <p>Stopping waits for the requests in flight — their buffers are guest memory the device must not touch
 * once stopped — and publishes them, as QEMU drains a virtqueue before GET_VRING_BASE answers.
 */
public final class AsyncWorker extends QueueThread implements AsyncHandler.UsedSink {
    private static final Logger LOG = System.getLogger(AsyncWorker.class.getName());
    /** How long stopping waits for requests in flight before abandoning them (logged). */
    static final long DRAIN_TIMEOUT_NS = 5_000_000_000L;

    private final AsyncHandler handler;
    private final long pollNanos;
    private volatile boolean opened;
    private int staged;

    public AsyncWorker(String name, DeviceQueue queue, Interrupt interrupt, AsyncHandler handler, long pollNanos,
                       DeviceContext.NeedsReset failure) {
        super(name, queue, interrupt, failure);
        this.handler = handler;
        this.pollNanos = pollNanos;
    }

    @Override
    void begin() throws Exception {
        handler.open();
        opened = true;
    }

    @Override
    void serve(DescriptorChain unused) throws VirtqueueException {
        for (;;) {
            int reaped = handler.reap(this);
            queue.disableNotifications();
            int started = 0;
            DescriptorChain c;
            while (running() && (c = handler.nextChain()) != null && queue.pop(c)) {
                int len = handler.start(c);
                if (len >= 0) {
                    used(c, len);
                }
                if (++started % BATCH == 0) {
                    handler.submit();
                }
            }
            handler.submit();
            if (staged > 0) {
                staged = 0;
                flush();
            }
            if (!running()) {
                return;
            }
            if (started == 0 && reaped == 0) {
                // Idle: ask for a kick if a slot is free (and look again for buffers added meanwhile).
                if (handler.nextChain() != null && queue.enableNotifications()) {
                    continue;
                }
                return;
            }
        }
    }

    @Override
    public void used(DescriptorChain chain, int len) {
        queue.addUsed(chain, len);
        if (++staged % BATCH == 0) {
            flush();
        }
    }

    @Override
    long engineKicks() {
        return opened ? handler.kicks() : 0;
    }

    @Override
    int inFlight() {
        return opened ? handler.inFlight() : 0;
    }

    @Override
    boolean pendingWork() {
        return opened && handler.ready();
    }

    @Override
    void await() {
        if (!opened) {
            super.await();
            return;
        }
        if (pollNanos > 0) {
            long until = System.nanoTime() + pollNanos;
            do {
                if (woken() || handler.poll() || !running()) {
                    return;
                }
                Thread.onSpinWait();
            } while (System.nanoTime() < until);
        }
        handler.await();
    }

    @Override
    void signal() {
        super.signal();
        if (opened) {
            handler.wakeup();
        }
    }

    @Override
    void end(boolean broken) {
        if (!opened) {
            return;
        }
        long deadline = System.nanoTime() + DRAIN_TIMEOUT_NS;
        try {
            while (handler.inFlight() > 0 && System.nanoTime() < deadline) {
                if (!handler.ready()) {
                    handler.await();
                }
                handler.reap(broken ? (h, l) -> { } : this);
            }
            if (!broken && staged > 0) {
                flush();
            }
        } catch (RuntimeException e) {
            LOG.log(Level.WARNING, "queue {0}: draining failed: {1}", queue.index(), e.toString());
        }
        if (handler.inFlight() > 0) {
            LOG.log(Level.ERROR, "queue {0}: {1} requests still in flight after {2} s; abandoning them",
                    queue.index(), handler.inFlight(), DRAIN_TIMEOUT_NS / 1_000_000_000L);
        }
        opened = false; // from now on a wake-up (a late kick, stop) only unparks
        handler.close();
    }
}
