package io.jvirtio.core.queue;

/**
 * The driver's notification to the device that a queue has new available buffers (VIRTIO 1.2 §2.9,
 * "Driver Notifications"): a PCI notify write, an MMIO QueueNotify write, a vhost-user kick eventfd.
 */
@FunctionalInterface
public interface Doorbell {
    void ring();
}
