package io.jvirtio.core.queue;

import io.jvirtio.core.spec.Feature;

/**
 * The device side's private ring position, which is all a device needs to stop and resume a queue
 * (vhost-user GET/SET_VRING_BASE, live migration). Split ring: both free-running 16-bit indices. Packed
 * ring: each a 15-bit ring slot with its wrap counter in bit 15, as vhost-user carries them.
 *
 * @param nextAvail the next available index (split) or descriptor slot and wrap counter (packed) the device reads
 * @param nextUsed  the next used index (split) or descriptor slot and wrap counter (packed) the device writes
 */
public record QueueState(int nextAvail, int nextUsed) {
    public QueueState {
        if ((nextAvail & ~0xffff) != 0 || (nextUsed & ~0xffff) != 0) {
            throw new IllegalArgumentException("ring indices are 16-bit: " + nextAvail + ", " + nextUsed);
        }
    }

    /** A split ring after reset. */
    public static final QueueState INITIAL = new QueueState(0, 0);

    /** A packed ring after reset: slot 0, both wrap counters 1 (§2.8.1). */
    public static final QueueState INITIAL_PACKED = new QueueState(0x8000, 0x8000);

    /** The position after a reset for a ring of the negotiated format. */
    public static QueueState initial(long features) {
        return Feature.RING_PACKED.isSet(features) ? INITIAL_PACKED : INITIAL;
    }
}
