/**
 * The split virtqueue, VIRTIO 1.2 §2.7, from both ends.
 *
 * <ul>
 *   <li>{@link io.jvirtio.core.queue.split.SplitLayout}: sizes and alignment of the three parts.</li>
 *   <li>{@link io.jvirtio.core.queue.split.SplitRing}: the three parts mapped from guest memory.</li>
 *   <li>{@link io.jvirtio.core.queue.DriverQueue}: the driver side — Linux's {@code virtqueue_ops}.</li>
 *   <li>{@link io.jvirtio.core.queue.DeviceQueue} and
 *       {@link io.jvirtio.core.queue.DescriptorChain}: the device side, which treats everything in
 *       the ring as hostile and reports violations as a {@link io.jvirtio.core.queue.RingError}.</li>
 * </ul>
 */
package io.jvirtio.core.queue.split;
