package io.jvirtio.devices;

import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.device.VirtioDeviceModel;
import io.jvirtio.core.queue.split.DeviceQueue;

/**
 * What every queue-driven device model shares: at activation one {@link QueueWorker} per enabled queue,
 * notifications routed to it, and all of them stopped at reset. A device supplies its configuration,
 * features and one {@link QueueHandler} per queue.
 */
public abstract class QueueDevice implements VirtioDeviceModel {
    private volatile QueueWorker[] workers = new QueueWorker[0];
    private volatile DeviceContext context;

    /** The handler for queue {@code index}, created at each activation (so it may hold per-queue buffers). */
    protected abstract QueueHandler handler(int index, DeviceContext context);

    @Override
    public final synchronized void activate(DeviceContext ctx) {
        this.context = ctx;
        QueueWorker[] ws = new QueueWorker[numQueues()];
        for (int i = 0; i < ws.length; i++) {
            DeviceQueue q = ctx.queues().get(i);
            if (q != null) {
                ws[i] = new QueueWorker("jvirtio-" + type().name().toLowerCase() + "-q" + i, q, ctx.interrupts().get(i),
                        handler(i, ctx), ctx.failure());
            }
        }
        workers = ws;
        for (QueueWorker w : ws) {
            if (w != null) {
                w.start();
            }
        }
    }

    @Override
    public final void queueNotify(int index) {
        QueueWorker[] ws = workers;
        if (index < ws.length && ws[index] != null) {
            ws[index].wake();
        }
    }

    @Override
    public final synchronized void reset() {
        for (QueueWorker w : workers) {
            if (w != null) {
                w.stop();
            }
        }
        workers = new QueueWorker[0];
        context = null;
        onReset();
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
