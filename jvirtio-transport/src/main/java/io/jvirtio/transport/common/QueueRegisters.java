package io.jvirtio.transport.common;

import io.jvirtio.core.device.VirtioDeviceModel;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.QueueState;
import io.jvirtio.core.queue.RingAddresses;
import io.jvirtio.core.queue.VirtqueueException;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.core.spec.FeatureNegotiation;

import java.util.ArrayList;
import java.util.List;

/**
 * What every virtio transport's device side keeps per queue — size, enabled, the three ring addresses
 * (virtio-pci §4.1.4.3, virtio-mmio §4.2.2) — and turns into {@link DeviceQueue}s at DRIVER_OK. Not
 * thread-safe: the owning transport guards it with its own lock.
 */
public final class QueueRegisters {
    public final int[] size;
    public final boolean[] enabled;
    public final long[] desc;
    public final long[] driver;
    public final long[] device;

    public QueueRegisters(int queues) {
        size = new int[queues];
        enabled = new boolean[queues];
        desc = new long[queues];
        driver = new long[queues];
        device = new long[queues];
    }

    public int count() {
        return size.length;
    }

    /** Back to reset state; each queue's size starts at the model's maximum, or 0 ({@code zeroSizes}). */
    public void reset(VirtioDeviceModel model, boolean zeroSizes) {
        for (int i = 0; i < size.length; i++) {
            size[i] = zeroSizes ? 0 : model.maxQueueSize(i);
            enabled[i] = false;
            desc[i] = 0;
            driver[i] = 0;
            device[i] = 0;
        }
    }

    /**
     * The device queues for DRIVER_OK: one per enabled queue, null for the others.
     *
     * @throws IllegalArgumentException naming the queue when the driver programmed one that cannot exist
     *                                  (size, alignment, outside guest memory)
     */
    public List<DeviceQueue> create(GuestMemory memory, long features) {
        List<DeviceQueue> queues = new ArrayList<>(size.length);
        for (int i = 0; i < size.length; i++) {
            queues.add(enabled[i] ? create(memory, i, features) : null);
        }
        return queues;
    }

    /**
     * Queue {@code i} as programmed, from the start of its ring.
     *
     * @throws IllegalArgumentException naming the queue when it cannot exist (size, alignment, memory)
     */
    public DeviceQueue create(GuestMemory memory, int i, long features) {
        try {
            return DeviceQueue.create(memory, i, size[i], new RingAddresses(desc[i], driver[i], device[i]), features,
                    QueueState.initial(features));
        } catch (VirtqueueException | IllegalArgumentException e) {
            throw new IllegalArgumentException("queue " + i + ": " + e.getMessage(), e);
        }
    }

    /**
     * The features a modern virtio-pci or a virtio-mmio device offers: the model's, and VIRTIO_F_NOTIFICATION_DATA
     * (§2.9) — a notification may carry the driver's next available position; the device takes it as a hint
     * only (its queue reads the ring anyway, and a hostile value must change nothing).
     */
    public static long offered(VirtioDeviceModel model) {
        return model.deviceFeatures() | Feature.NOTIFICATION_DATA.mask();
    }

    /**
     * Why {@code model} cannot run with the driver's {@code features}, or null (§2.2.2, §3.1.1 step 5):
     * bits never offered, VERSION_1 missing on a modern interface, or the model's own refusal.
     */
    public static String featuresProblem(VirtioDeviceModel model, long offered, long features, boolean modern) {
        String problem = FeatureNegotiation.checkAccepted(offered, features);
        if (problem == null && modern && !Feature.VERSION_1.isSet(features)) {
            problem = "driver did not accept VIRTIO_F_VERSION_1 on a modern interface";
        }
        if (problem == null && !model.acceptFeatures(features)) {
            problem = "device model refused " + Feature.describe(model.type(), features);
        }
        return problem;
    }
}
