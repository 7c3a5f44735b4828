package io.jvirtio.core.queue;

import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.spec.Conformance;
import io.jvirtio.core.spec.Feature;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * VIRTIO_F_NOTIFICATION_DATA (§2.9): what a driver queue hands its doorbell with each notification —
 * next_off in bits 0–14 and next_wrap in bit 15: the 16-bit available index of a split ring, the next slot
 * and the driver's wrap counter of a packed one.
 */
class NotificationDataTest {

    /** A doorbell that records the data it is rung with. */
    static final class Recording implements Doorbell {
        final List<Integer> rung = new ArrayList<>();

        @Override
        public void ring() {
            rung.add(-1);
        }

        @Override
        public void ring(int next) {
            rung.add(next);
        }
    }

    @Test
    @Conformance("notif-drv-1")
    void aSplitQueueRingsWithItsAvailableIndexAcrossTheWrapOf16Bits() throws Exception {
        try (GuestMemory mem = GuestMemory.allocate(0x1_0000_0000L, 1 << 20)) {
            GuestAllocator alloc = new GuestAllocator(mem, 0x1_0000_0000L, 1 << 20);
            Recording bell = new Recording();
            DriverQueue<Integer> q = DriverQueue.allocate(alloc, 0, 4, Feature.NOTIFICATION_DATA.mask(), 0, bell);
            DeviceQueue d = DeviceQueue.create(mem, 0, 4, q.addresses(), 0, QueueState.INITIAL);
            long b = alloc.allocate(16, 8);
            DescriptorChain c = new DescriptorChain();
            for (int i = 0; i < 65_540; i++) {
                q.addOutBuf(b, 16, i);
                q.kickPrepare(); // keeps the queue's count of unannounced buffers low (it kicks by itself at 2^16)
                if (i == 2 || i == 65_534 || i == 65_539) {
                    q.notifyDevice();
                }
                d.pop(c);
                d.addUsed(c, 0);
                d.publishUsed();
                q.getBuf();
            }
            assertThat(bell.rung).containsExactly(3, 65_535, 4); // avail.idx after 3, 65535 and 65540 (mod 2^16)
        }
    }

    @Test
    @Conformance({"packed-drv-3", "notif-drv-1"})
    void aPackedQueueRingsWithItsNextSlotAndWrapCounter() throws Exception {
        try (GuestMemory mem = GuestMemory.allocate(0x1_0000_0000L, 1 << 20)) {
            GuestAllocator alloc = new GuestAllocator(mem, 0x1_0000_0000L, 1 << 20);
            Recording bell = new Recording();
            long features = Feature.RING_PACKED.mask() | Feature.NOTIFICATION_DATA.mask();
            DriverQueue<Integer> q = DriverQueue.allocate(alloc, 0, 3, features, 0, bell);
            DeviceQueue d = DeviceQueue.create(mem, 0, 3, q.addresses(), features, QueueState.INITIAL_PACKED);
            long b = alloc.allocate(16, 8);
            q.notifyDevice();
            q.addBuf(new Scatterlist().addReadable(b, 8).addWritable(b + 8, 8), 0);
            q.notifyDevice();
            DescriptorChain c = new DescriptorChain();
            d.pop(c);
            d.addUsed(c, 0);
            d.publishUsed();
            q.getBuf();
            q.addBuf(new Scatterlist().addReadable(b, 8).addWritable(b + 8, 8), 1); // slots 2 and 0: wraps
            q.notifyDevice();
            assertThat(bell.rung).containsExactly(0x8000, 0x8002, 0x0001);
        }
    }
}
