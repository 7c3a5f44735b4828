package io.jvirtio.core.queue;

/**
 * Guest-physical addresses of a split queue's three parts, as a transport reports them
 * (PCI {@code queue_desc}/{@code queue_driver}/{@code queue_device}; vhost-user SET_VRING_ADDR).
 *
 * @param descTable  the Descriptor Area
 * @param availRing  the Driver Area
 * @param usedRing   the Device Area
 */
public record RingAddresses(long descTable, long availRing, long usedRing) {
}
