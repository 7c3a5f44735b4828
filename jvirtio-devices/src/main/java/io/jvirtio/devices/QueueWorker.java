package io.jvirtio.devices;

import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.queue.split.DescriptorChain;
import io.jvirtio.core.queue.split.DeviceQueue;
import io.jvirtio.core.queue.split.VirtqueueException;

import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.locks.LockSupport;

/**
 * The thread that serves one device queue: sleeps until notified, then runs the device loop of
 * {@link DeviceQueue} (disable notifications, pop, handle, add used, publish in batches, interrupt if
 * the driver wants it, re-enable and re-check). A ring error breaks only this queue and sets
 * DEVICE_NEEDS_RESET; nothing escapes the thread.
 */
public final class QueueWorker {
    /** Used elements published per batch before checking whether to interrupt. */
    static final int BATCH = 64;

    private final DeviceQueue queue;
    private final Interrupt interrupt;
    private final QueueHandler handler;
    private final DeviceContext.NeedsReset failure;
    private final AtomicBoolean kicked = new AtomicBoolean(true);
    private final Thread thread;
    private volatile boolean running = true;

    public QueueWorker(String name, DeviceQueue queue, Interrupt interrupt, QueueHandler handler,
                       DeviceContext.NeedsReset failure) {
        this.queue = queue;
        this.interrupt = interrupt;
        this.handler = handler;
        this.failure = failure;
        this.thread = Thread.ofPlatform().name(name).daemon().unstarted(this::run);
    }

    public QueueWorker start() {
        thread.start();
        return this;
    }

    /** The driver's notification: wake the worker. Allocation-free, never blocks. */
    public void notifyQueue() {
        if (!kicked.getAndSet(true)) {
            LockSupport.unpark(thread);
        }
    }

    /** Stops the worker and waits until it no longer touches the queue. */
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
                if (!kicked.getAndSet(false)) {
                    LockSupport.park(this);
                    continue;
                }
                do {
                    queue.disableNotifications();
                    int n = 0;
                    while (running && queue.pop(chain)) {
                        int written = handler.handle(chain);
                        queue.addUsed(chain.head(), written);
                        if (++n % BATCH == 0) {
                            flush();
                        }
                    }
                    flush();
                } while (running && queue.enableNotifications());
            }
        } catch (VirtqueueException e) {
            failure.needsReset(e.getMessage());
        } catch (RuntimeException e) {
            failure.needsReset("queue " + queue.index() + " handler failed: " + e);
        }
    }

    private void flush() {
        queue.publishUsed();
        if (queue.needsNotification()) {
            interrupt.raise();
        }
    }
}
