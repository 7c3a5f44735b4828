package io.jvirtio.devices;

import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.queue.split.DescriptorChain;
import io.jvirtio.core.queue.split.DeviceQueue;
import io.jvirtio.core.queue.split.VirtqueueException;

import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.locks.LockSupport;

/**
 * The thread behind a device-to-driver queue (net receive, console receive): data arrives from a
 * backend at its own pace, buffers arrive from the driver at its own pace, and this worker joins them.
 * It wakes on either — a queue notification (new buffers) or {@link #wake()} from the backend (new
 * data) — and sleeps with notifications enabled only while data waits for buffers.
 */
public final class RxWorker {
    /** The data side: what is waiting to be delivered. Called only on the worker thread. */
    public interface Source {
        /** True when there is data to deliver. */
        boolean hasPending();

        /**
         * Writes pending data into {@code chain}'s writable buffers and returns the bytes written.
         * May stage more than one used element through {@code queue} (mergeable receive buffers);
         * returns -1 when it did so itself.
         */
        int fill(DescriptorChain chain, DeviceQueue queue) throws VirtqueueException;
    }

    private final DeviceQueue queue;
    private final Interrupt interrupt;
    private final Source source;
    private final DeviceContext.NeedsReset failure;
    private final AtomicBoolean woken = new AtomicBoolean(true);
    private final Thread thread;
    private volatile boolean running = true;

    public RxWorker(String name, DeviceQueue queue, Interrupt interrupt, Source source,
                    DeviceContext.NeedsReset failure) {
        this.queue = queue;
        this.interrupt = interrupt;
        this.source = source;
        this.failure = failure;
        this.thread = Thread.ofPlatform().name(name).daemon().unstarted(this::run);
    }

    public RxWorker start() {
        thread.start();
        return this;
    }

    /** New buffers or new data: run the loop again. Never blocks. */
    public void wake() {
        if (!woken.getAndSet(true)) {
            LockSupport.unpark(thread);
        }
    }

    public void stop() {
        running = false;
        LockSupport.unpark(thread);
        if (Thread.currentThread() != thread) {
            try {
                thread.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    private void run() {
        DescriptorChain chain = new DescriptorChain();
        try {
            while (running) {
                if (!woken.getAndSet(false)) {
                    LockSupport.park(this);
                    continue;
                }
                while (running && source.hasPending()) {
                    queue.disableNotifications();
                    int n = 0;
                    while (running && source.hasPending() && queue.pop(chain)) {
                        int written = source.fill(chain, queue);
                        if (written >= 0) {
                            queue.addUsed(chain.head(), written);
                        }
                        if (++n % QueueWorker.BATCH == 0) {
                            flush();
                        }
                    }
                    flush();
                    // Data waits but the ring is empty: ask for a kick, and re-check for the race.
                    if (source.hasPending() && !queue.enableNotifications()) {
                        break;
                    }
                }
            }
        } catch (VirtqueueException e) {
            failure.needsReset(e.getMessage());
        } catch (RuntimeException e) {
            failure.needsReset("queue " + queue.index() + " receive failed: " + e);
        }
    }

    private void flush() {
        queue.publishUsed();
        if (queue.needsNotification()) {
            interrupt.raise();
        }
    }
}
