package io.jvirtio.core.device;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.Interrupt;

import java.util.List;

/**
 * What a transport hands a device model at DRIVER_OK.
 *
 * @param memory       guest memory
 * @param features     the negotiated features
 * @param queues       one entry per queue; null where the driver did not enable the queue
 * @param interrupts   the used-buffer notification of each queue (same indices)
 * @param failure      how the device reports an unrecoverable driver error: the transport sets
 *                     DEVICE_NEEDS_RESET (§2.1.2) and sends a configuration change notification
 */
public record DeviceContext(GuestMemory memory, long features, List<DeviceQueue> queues, List<Interrupt> interrupts,
                            NeedsReset failure) {

    /** Sets DEVICE_NEEDS_RESET with a reason for the log. */
    @FunctionalInterface
    public interface NeedsReset {
        void needsReset(String reason);
    }
}
