package io.jvirtio.core.queue;

import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.spec.Feature;

/**
 * Both ends of one ring of either format in a guest memory above 4 GiB: a driver queue allocated there and a
 * device queue mapped over it, meeting only through guest memory — for the tests every format must pass.
 */
final class Rings implements AutoCloseable {
    static final long BASE = 0x1_0000_0000L;
    static final long SIZE = 4 << 20;

    final GuestMemory memory;
    final GuestAllocator allocator;
    final DriverQueue<Integer> driver;
    final DeviceQueue device;

    /** A ring of {@code queueSize} entries, packed when {@code features} has RING_PACKED. */
    Rings(int queueSize, long features, int maxIndirect) throws VirtqueueException {
        memory = GuestMemory.allocate(BASE, SIZE);
        allocator = new GuestAllocator(memory, BASE, SIZE);
        // a split ring's size is a power of two; a packed one's need not be
        int size = Feature.RING_PACKED.isSet(features) ? queueSize : Integer.highestOneBit(queueSize);
        driver = DriverQueue.allocate(allocator, 0, size, features, maxIndirect, () -> { });
        device = DeviceQueue.create(memory, 0, size, driver.addresses(), features, QueueState.initial(features));
    }

    long buffer(int bytes) {
        return allocator.allocate(bytes, 8);
    }

    @Override
    public void close() {
        memory.close();
    }
}
