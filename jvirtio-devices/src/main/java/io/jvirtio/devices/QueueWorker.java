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
            handleAvailable(chain);
        } while (running() && queue.enableNotifications());
    }

    @Override
    boolean poll(DescriptorChain chain) throws VirtqueueException {
        queue.disableNotifications();
        return handleAvailable(chain) > 0;
    }

    /** Handles every chain the driver made available, publishing in batches; returns how many. */
    private int handleAvailable(DescriptorChain chain) throws VirtqueueException {
        int n = 0;
        while (running() && queue.pop(chain)) {
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
