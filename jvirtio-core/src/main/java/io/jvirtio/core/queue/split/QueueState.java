package io.jvirtio.core.queue.split;

/**
 * The device side's private ring position, which is all a device needs to stop and resume a queue
 * (vhost-user GET/SET_VRING_BASE, live migration): both free-running 16-bit indices.
 *
 * @param nextAvail the next available-ring index the device will read ({@code last_avail_idx})
 * @param nextUsed  the next used-ring index the device will write
 */
public record QueueState(int nextAvail, int nextUsed) {
    public QueueState {
        if ((nextAvail & ~0xffff) != 0 || (nextUsed & ~0xffff) != 0) {
            throw new IllegalArgumentException("ring indices are 16-bit: " + nextAvail + ", " + nextUsed);
        }
    }

    public static final QueueState INITIAL = new QueueState(0, 0);
}
