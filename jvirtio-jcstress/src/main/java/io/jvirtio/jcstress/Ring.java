package io.jvirtio.jcstress;

import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.QueueState;
import io.jvirtio.core.queue.VirtqueueException;
import io.jvirtio.core.queue.split.SplitLayout;
import io.jvirtio.core.spec.Feature;

import java.lang.foreign.Arena;

/**
 * One small split ring with both ends, as each jcstress state: the production {@link DriverQueue} and
 * {@link DeviceQueue} meeting only through guest memory. The memory comes from an automatic arena, since
 * jcstress makes millions of these and never closes them.
 */
final class Ring {
    static final long BASE = 0x1_0000_0000L;
    static final int SIZE = 8;

    final DriverQueue<Integer> driver;
    final DeviceQueue device;
    final long buffer;
    /** The head of the chain in flight, for the test that completes it. */
    int head;

    Ring(boolean eventIdx) {
        this(eventIdx, false);
    }

    /** A split ring, or a packed one ({@code packed}): the same handshakes, the other format's fields. */
    Ring(boolean eventIdx, boolean packed) {
        long bytes = 16 * 1024;
        GuestMemory memory;
        try (GuestMemory.Builder b = GuestMemory.builder()) {
            memory = b.segment(BASE, Arena.ofAuto().allocate(bytes, 4096)).build();
        }
        GuestAllocator alloc = new GuestAllocator(memory, BASE, bytes);
        long features = Feature.VERSION_1.mask() | (eventIdx ? Feature.EVENT_IDX.mask() : 0)
                | (packed ? Feature.RING_PACKED.mask() : 0);
        driver = DriverQueue.allocate(alloc, 0, SplitLayout.modern(SIZE), features, 0, () -> { });
        try {
            device = DeviceQueue.create(memory, 0, SIZE, driver.addresses(), features, QueueState.initial(features));
        } catch (VirtqueueException e) {
            throw new AssertionError(e);
        }
        buffer = alloc.allocate(64, 8);
    }

    private final DescriptorChain chain = new DescriptorChain();

    /** The driver adds a buffer and the device takes it; returns its head. */
    int offerAndTake(int token) {
        driver.addInBuf(buffer, 64, token);
        driver.kickPrepare();
        try {
            if (!device.pop(chain)) {
                throw new AssertionError("nothing to pop");
            }
            return chain.head();
        } catch (VirtqueueException e) {
            throw new AssertionError(e);
        }
    }

    /**
     * One buffer served all the way (used, interrupt decided, reaped by the driver), so that both sides'
     * suppression state has moved off its initial values: with EVENT_IDX a stale avail_event/used_event then
     * really says "do not notify", and only the handshake's fences make the other side see the new one.
     */
    void oneRoundTrip() {
        device.disableNotifications(); // serving: avail_event is left behind (§2.7.10), as a busy device does
        int head = offerAndTake(1);
        device.addUsed(head, 64);
        device.publishUsed();
        device.needsNotification();
        try {
            if (driver.getBuf() == null) {
                throw new AssertionError("nothing reaped");
            }
        } catch (VirtqueueException e) {
            throw new AssertionError(e);
        }
    }
}
