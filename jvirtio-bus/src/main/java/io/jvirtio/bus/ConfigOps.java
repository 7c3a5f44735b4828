package io.jvirtio.bus;

import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.queue.DriverQueue;

import java.util.List;

/**
 * What a transport's driver side offers the bus and the device drivers — Linux's
 * {@code virtio_config_ops}. virtio-pci implements it with register accesses; vhost-user with messages.
 */
public interface ConfigOps {
    /** The device status byte (§2.1). */
    int getStatus();

    /** Writes the status byte; bits are only ever added, except by {@link #reset()}. */
    void setStatus(int status);

    /**
     * Resets the device (§2.4) and waits until it reads back 0.
     *
     * @throws IllegalStateException when the device does not complete its reset in bounded time
     */
    void reset();

    /**
     * Whether the device is driven through a modern interface (virtio-pci capabilities, virtio-mmio version
     * 2, vhost-user): such a device must offer VIRTIO_F_VERSION_1 (§4.1.2.2 basic-drv-8), and a legacy one
     * is driven without FEATURES_OK.
     */
    default boolean modern() {
        return true;
    }

    /**
     * The ring and transport features the driver accepts over this transport on top of its own: the bus's
     * {@link VirtioBus#TRANSPORT_FEATURES}, and VIRTIO_F_NOTIFICATION_DATA where a notification can carry data
     * (virtio-pci modern, virtio-mmio; not vhost-user's eventfd kicks).
     */
    default long transportFeatures() {
        return VirtioBus.TRANSPORT_FEATURES;
    }

    /** The 64 feature bits the device offers. */
    long getFeatures();

    /** Writes the driver's accepted features (before FEATURES_OK). */
    void finalizeFeatures(long features);

    /** {@code config_generation} (§2.5.1). */
    int generation();

    /**
     * Reads one configuration field of {@code length} bytes: 1, 2 and 4 as one access of that width, 8 as
     * two 32-bit halves, any other length (a byte array such as a MAC) byte by byte (§4.1.3.1). Callers use
     * {@link VirtioDevice#readConfig} for the generation loop.
     */
    void readConfig(int offset, byte[] dst, int dstOffset, int length);

    void writeConfig(int offset, byte[] src);

    /**
     * Sets up {@code specs.size()} queues (Linux {@code find_vqs}): allocates the rings in guest memory,
     * programs them, wires notifications and interrupts, enables them.
     */
    List<DriverQueue<Object>> findQueues(List<QueueSpec> specs) throws TransportException;

    /** Undoes {@link #findQueues}: only after a reset, when the device no longer uses the queues. */
    void deleteQueues();

    /**
     * Memory the device can reach by DMA, for the driver's buffers (Linux's DMA API): rings are
     * allocated here by {@link #findQueues}, request headers and data buffers by the drivers.
     */
    GuestAllocator dma();

    /** Where the device sits, e.g. {@code 0000:00:03.0}. */
    String busInfo();

    /** How interrupts are wired after {@link #findQueues}, e.g. {@code "MSI-X per queue"}. */
    String interruptMode();
}
