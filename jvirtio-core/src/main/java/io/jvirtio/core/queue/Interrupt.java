package io.jvirtio.core.queue;

/**
 * The device's used-buffer notification to the driver (VIRTIO 1.2 §2.3): an MSI-X message, INTx with
 * the ISR bit, a vhost-user call eventfd.
 */
@FunctionalInterface
public interface Interrupt {
    void raise();
}
