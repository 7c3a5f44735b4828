package io.jvirtio.core.device;

import io.jvirtio.core.spec.DeviceType;

/**
 * A virtio device as the VMM implements it: a configuration space, some queues and a backend
 * (Firecracker's shape). The transport owns status and feature negotiation and calls in at the points
 * VIRTIO 1.2 §3.1.1 defines.
 */
public interface VirtioDeviceModel {
    DeviceType type();

    /** Features offered (§2.2), including the device-independent ones it supports such as VERSION_1. */
    long deviceFeatures();

    /** Number of virtqueues. */
    int numQueues();

    /** Largest size the driver may give queue {@code index} (a power of two). */
    int maxQueueSize(int index);

    /** The device configuration space (§4.1.4.6 "device cfg"); the transport reads and writes it. */
    ConfigSpace config();

    /**
     * FEATURES_OK (§2.2.2, §3.1.1 step 5): the driver accepted {@code features} (a subset of the offer).
     * Return false to refuse a combination the device cannot operate; the transport then leaves
     * FEATURES_OK clear.
     */
    default boolean acceptFeatures(long features) {
        return true;
    }

    /**
     * DRIVER_OK: the driver is live. The context gives the negotiated features, guest memory, the
     * enabled queues and the interrupts. The device starts serving; queue notifications arrive through
     * {@link #queueNotify(int)}.
     */
    void activate(DeviceContext context);

    /** The driver notified queue {@code index} (§2.9). Called on the notifying thread; must not block. */
    void queueNotify(int index);

    /**
     * Device reset (§2.4): stop using every queue and return to the initial state. On return the device
     * no longer touches guest memory.
     */
    void reset();
}
