package io.jvirtio.machine;

import io.jvirtio.core.device.ConfigSpace;
import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.device.VirtioDeviceModel;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.queue.QueueState;
import io.jvirtio.core.spec.DeviceType;

/**
 * A real device model that offers fewer features than it would ({@code hidden} bits are never offered);
 * tests override a method to watch what the transport calls.
 */
class MaskedModel implements VirtioDeviceModel {
    final VirtioDeviceModel inner;
    final long hidden;

    MaskedModel(VirtioDeviceModel inner, long hidden) {
        this.inner = inner;
        this.hidden = hidden;
    }

    public DeviceType type() { return inner.type(); }
    public long deviceFeatures() { return inner.deviceFeatures() & ~hidden; }
    public int numQueues() { return inner.numQueues(); }
    public int maxQueueSize(int index) { return inner.maxQueueSize(index); }
    public ConfigSpace config() { return inner.config(); }
    public boolean acceptFeatures(long f) { return inner.acceptFeatures(f); }
    public void activate(DeviceContext c) { inner.activate(c); }
    public void startQueue(int i, DeviceQueue q, Interrupt irq) { inner.startQueue(i, q, irq); }
    public QueueState stopQueue(int i) { return inner.stopQueue(i); }
    public void queueNotify(int i) { inner.queueNotify(i); }
    public void reset() { inner.reset(); }
}
