package io.jvirtio.devices;

import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.queue.VirtqueueException;

/**
 * Serves a driver-to-device queue (requests, transmit, control) with the device loop of
 * {@link DeviceQueue}: disable notifications, pop, handle, add used, publish in batches, interrupt if
 * the driver wants it, re-enable and re-check for buffers added in the race window.
 */
public final class QueueWorker extends QueueThread {
    private final QueueHandler handler;

    public QueueWorker(String name, DeviceQueue queue, Interrupt interrupt, QueueHandler handler,
                       DeviceContext.NeedsReset failure) {
        super(name, queue, interrupt, failure);
        this.handler = handler;
    }

    @Override
    void serve(DescriptorChain chain) throws VirtqueueException {
        do {
            queue.disableNotifications();
            handleAvailable(chain, Integer.MAX_VALUE);
        } while (running() && queue.enableNotifications());
    }

    @Override
    boolean poll(DescriptorChain chain) throws VirtqueueException {
        queue.disableNotifications();
        // a round takes one batch: the poller's other rings (and what this one's frames were written into,
        // published after the round) wait no longer than that
        return handleAvailable(chain, BATCH) > 0;
    }

    /** Handles up to {@code max} chains the driver made available, publishing in batches; returns how many. */
    private int handleAvailable(DescriptorChain chain, int max) throws VirtqueueException {
        int n = 0;
        while (n < max && running() && queue.pop(chain)) {
            queue.addUsed(chain, handler.handle(chain));
            if (++n % BATCH == 0) {
                flush();
            }
        }
        if (n % BATCH != 0) {
            flush();
        }
        return n;
    }
}
