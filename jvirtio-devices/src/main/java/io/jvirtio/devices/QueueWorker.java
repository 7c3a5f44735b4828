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
    /** Chains a {@link QueueHandler.Touching} handler gets touched together. */
    static final int GROUP = 16;

    private final QueueHandler handler;
    private final QueueHandler.Touching touching;
    /** The group popped ahead for a touching handler (null for others). */
    private final DescriptorChain[] group;
    /** What the touches read: a field, so the loads are kept. */
    private long touched;

    public QueueWorker(String name, DeviceQueue queue, Interrupt interrupt, QueueHandler handler,
                       DeviceContext.NeedsReset failure) {
        super(name, queue, interrupt, failure);
        this.handler = handler;
        this.touching = handler instanceof QueueHandler.Touching t ? t : null;
        this.group = touching != null ? new DescriptorChain[GROUP] : null;
        if (group != null) {
            for (int i = 0; i < GROUP; i++) {
                group[i] = new DescriptorChain();
            }
        }
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
        if (touching != null) {
            return handleGroups(max);
        }
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

    /**
     * {@link #handleAvailable} a group at a time: up to {@link #GROUP} chains popped, all touched, then each
     * handled in order. A ring that breaks while a group is popped still has the chains before the break handled
     * and used, as one at a time would.
     */
    private int handleGroups(int max) throws VirtqueueException {
        int n = 0;
        int sinceFlush = 0;
        while (n < max && running()) {
            int k = 0;
            VirtqueueException broken = null;
            try {
                while (k < GROUP && n + k < max && queue.pop(group[k])) {
                    k++;
                }
            } catch (VirtqueueException e) {
                broken = e;
            }
            long t = 0;
            for (int i = 0; i < k; i++) {
                t += touching.touch(group[i]);
            }
            touched = t;
            for (int i = 0; i < k; i++) {
                queue.addUsed(group[i], touching.handle(group[i]));
            }
            touching.groupHandled(); // staged used, not yet published: their buffers are still the device's
            n += k;
            sinceFlush += k;
            if (broken != null) {
                flush();
                throw broken;
            }
            if (k < GROUP || n >= max) {
                break;
            }
            if (sinceFlush >= BATCH) {
                flush();
                sinceFlush = 0;
            }
        }
        if (sinceFlush > 0) {
            flush();
        }
        return n;
    }
}
