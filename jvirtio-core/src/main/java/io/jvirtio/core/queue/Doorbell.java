package io.jvirtio.core.queue;

/**
 * The driver's notification to the device that a queue has new available buffers (VIRTIO 1.2 §2.9,
 * "Driver Notifications"): a PCI notify write, an MMIO QueueNotify write, a vhost-user kick eventfd.
 */
@FunctionalInterface
public interface Doorbell {
    /** Notifies the device of the queue (the queue index alone). */
    void ring();

    /**
     * Notifies with the extra data of VIRTIO_F_NOTIFICATION_DATA (§2.9): {@code next} holds {@code next_off} in
     * bits 0–14 and {@code next_wrap} in bit 15 — for a split ring the available index, for a packed ring the
     * next descriptor slot and the driver's wrap counter. Transports that carry the data (PCI and MMIO, when
     * the feature is negotiated) override this; the others, vhost-user's eventfd kicks among them, ring plainly.
     */
    default void ring(int next) {
        ring();
    }
}
