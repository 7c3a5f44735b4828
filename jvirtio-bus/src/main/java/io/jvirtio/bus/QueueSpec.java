package io.jvirtio.bus;

import io.jvirtio.core.queue.DriverQueue;

import java.util.function.Consumer;

/**
 * One queue a driver asks {@link ConfigOps#findQueues} for.
 *
 * @param name     for diagnostics ("requestq", "rx0")
 * @param size     wanted size, or 0 for the device's maximum; clamped to the maximum
 * @param callback run when the device uses buffers of this queue (Linux's vq callback); null when the
 *                 driver polls this queue and wants no interrupt
 */
public record QueueSpec(String name, int size, Consumer<DriverQueue<Object>> callback) {
}
