package io.jvirtio.bus;

import io.jvirtio.core.spec.DeviceType;

import java.util.Set;

/**
 * A device driver on the {@link VirtioBus} (Linux {@code struct virtio_driver}).
 */
public interface VirtioDriver {
    String name();

    /** Device types this driver binds to (the id table). */
    Set<DeviceType> idTable();

    /**
     * Feature bits this driver understands (the feature table). The bus adds the transport/ring
     * features it supports itself (VERSION_1, INDIRECT_DESC, EVENT_IDX) and negotiates the intersection.
     */
    long features();

    /**
     * Binds to a device whose features are negotiated (FEATURES_OK is set). Finds queues, reads config,
     * may call {@link VirtioDevice#ready()}; the bus sets DRIVER_OK after a successful return if the
     * driver did not. Throwing makes the bus set FAILED.
     */
    void probe(VirtioDevice device) throws Exception;

    /** Unbinds: the driver resets the device, reclaims buffers and deletes its queues. */
    void remove(VirtioDevice device);

    /** The device changed its configuration space (§2.5). */
    default void configChanged(VirtioDevice device) {
    }

    /**
     * The device set DEVICE_NEEDS_RESET (§2.1.2): it will complete nothing more until it is reset, so a
     * driver fails what it has in flight instead of waiting for it (basic-drv-4), and refuses new work.
     */
    default void needsReset(VirtioDevice device) {
    }
}
