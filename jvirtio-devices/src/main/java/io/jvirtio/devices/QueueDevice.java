package io.jvirtio.devices;

import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.device.VirtioDeviceModel;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.queue.QueueState;
import io.jvirtio.core.spec.Feature;

/**
 * What every device model shares: one {@link QueueThread} per running queue, started at activation or
 * by a ring-level {@link #startQueue}, stopped by {@link #stopQueue} (the device's own state — filters,
 * pending input — stays) or by {@link #reset} (which also drops that state). Notifications are routed to
 * the queue's thread. A device supplies its configuration, features and the thread of each queue.
 */
public abstract class QueueDevice implements VirtioDeviceModel {
    /**
     * The ring features every device here implements: VERSION_1, indirect descriptors, EVENT_IDX and both ring
     * formats (the driver picks the packed one by accepting VIRTIO_F_RING_PACKED).
     */
    public static final long RING_FEATURES = Feature.maskOf(Feature.VERSION_1, Feature.INDIRECT_DESC,
            Feature.EVENT_IDX, Feature.RING_PACKED);

    /**
     * VIRTIO_F_IN_ORDER, for the devices whose every queue uses buffers in the order it took them (net,
     * console, entropy) — not blk, whose requests complete in the order the disk finishes them.
     */
    public static final long IN_ORDER = Feature.IN_ORDER.mask();

    private volatile QueueThread[] threads = new QueueThread[0];
    /** Queues the vhost-user front-end disabled (copy-on-write; read on the data path). */
    private volatile boolean[] disabled = new boolean[0];
    private volatile DeviceContext context;
    /** Kick eventfds the queues wait on themselves (vhost-user), -1 where none; copy-on-write. */
    private volatile int[] kickFds = new int[0];

    /**
     * The thread that serves queue {@code index} from now on, or null when the device does not use that
     * queue under the negotiated features. Called under the device's lock at each start.
     */
    protected abstract QueueThread worker(int index, DeviceQueue queue, Interrupt interrupt, DeviceContext context);

    /** A {@link QueueWorker} running {@code handler}: the thread of a driver-to-device queue. */
    protected final QueueWorker requestWorker(int index, DeviceQueue queue, Interrupt interrupt, QueueHandler handler,
                                              DeviceContext context) {
        return new QueueWorker(threadName(index), queue, interrupt, handler, context.failure());
    }

    /** A {@link RxWorker} filling queue {@code index} from {@code source}: the thread of a device-to-driver queue. */
    protected final RxWorker receiveWorker(int index, DeviceQueue queue, Interrupt interrupt, RxWorker.Source source,
                                           DeviceContext context) {
        return new RxWorker(threadName(index), queue, interrupt, source, context.failure());
    }

    private String threadName(int index) {
        return "jvirtio-" + type().name().toLowerCase() + "-q" + index;
    }

    /** DRIVER_OK, before any queue starts: device-specific state that depends on the features. */
    protected void onActivate(DeviceContext context) {
    }

    @Override
    public final synchronized void activate(DeviceContext ctx) {
        stopAll();
        context = ctx;
        threads = new QueueThread[numQueues()];
        onActivate(ctx);
        for (int i = 0; i < numQueues(); i++) {
            DeviceQueue q = ctx.queues().get(i);
            if (q != null) {
                startQueue(i, q, ctx.interrupts().get(i));
            }
        }
    }

    @Override
    public final synchronized void startQueue(int index, DeviceQueue queue, Interrupt interrupt) {
        DeviceContext ctx = context;
        if (ctx == null) {
            throw new IllegalStateException("queue " + index + " started before the device was activated");
        }
        stopQueue(index);
        QueueThread t = worker(index, queue, interrupt, ctx);
        if (t != null) {
            QueueThread[] ts = threads.clone();
            ts[index] = t;
            threads = ts;
            t.start();
        }
    }

    @Override
    public final synchronized QueueState stopQueue(int index) {
        QueueThread[] ts = threads;
        if (index < 0 || index >= ts.length || ts[index] == null) {
            return null;
        }
        QueueThread t = ts[index];
        t.stop();
        ts = ts.clone();
        ts[index] = null;
        threads = ts;
        return t.queue.state();
    }

    @Override
    public final void queueNotify(int index) {
        wake(index);
    }

    /** Runs queue {@code index}'s thread again (new buffers, or new data for it). Never blocks. */
    protected final void wake(int index) {
        QueueThread[] ts = threads;
        if (index >= 0 && index < ts.length) {
            QueueThread t = ts[index];
            if (t != null) {
                t.wake();
            }
        }
    }

    @Override
    public final synchronized void enableQueue(int index, boolean enabled) {
        boolean[] d = java.util.Arrays.copyOf(disabled, Math.max(disabled.length, index + 1));
        d[index] = !enabled;
        disabled = d;
        wake(index); // a receive queue may have data to deliver now
    }

    /** False while the front-end has queue {@code index} disabled (see {@link #enableQueue}). */
    protected final boolean queueEnabled(int index) {
        boolean[] d = disabled;
        return index >= d.length || !d[index];
    }

    @Override
    public final synchronized boolean watchKicks(int index, int kickFd) {
        if (index < 0 || index >= numQueues()) {
            return false;
        }
        boolean take = kickFd >= 0 && canWatchKicks(index);
        int[] k = java.util.Arrays.copyOf(kickFds, Math.max(kickFds.length, numQueues()));
        if (kickFds.length < k.length) {
            java.util.Arrays.fill(k, kickFds.length, k.length, -1);
        }
        k[index] = take ? kickFd : -1;
        kickFds = k;
        return take;
    }

    /** Whether queue {@code index}'s thread can wait on a kick eventfd itself (see {@link #watchKicks}). */
    protected boolean canWatchKicks(int index) {
        return false;
    }

    /** The kick eventfd queue {@code index} should wait on itself, or -1. */
    protected final int kickFd(int index) {
        int[] k = kickFds;
        return index < k.length ? k[index] : -1;
    }

    /** The statistics of each running queue. */
    public final java.util.List<QueueThread.Stats> queueStats() {
        java.util.List<QueueThread.Stats> out = new java.util.ArrayList<>();
        for (QueueThread t : threads) {
            if (t != null) {
                out.add(t.stats());
            }
        }
        return out;
    }

    /** True while queue {@code index} has a thread. */
    protected final boolean serving(int index) {
        QueueThread[] ts = threads;
        return index >= 0 && index < ts.length && ts[index] != null;
    }

    @Override
    public final synchronized void reset() {
        stopAll();
        context = null;
        onReset();
    }

    private void stopAll() {
        for (QueueThread t : threads) {
            if (t != null) {
                t.stop();
            }
        }
        threads = new QueueThread[0];
    }

    /** The negotiated features while active, else 0. */
    protected final long features() {
        DeviceContext c = context;
        return c == null ? 0 : c.features();
    }

    /** Device-specific state to drop at reset. */
    protected void onReset() {
    }
}
