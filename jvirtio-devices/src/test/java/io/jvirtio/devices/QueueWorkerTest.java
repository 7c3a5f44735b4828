package io.jvirtio.devices;

import io.jvirtio.core.queue.RingAddresses;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.rng.RngDevice;
import org.junit.jupiter.api.Test;

import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/** A hostile ring ends in DEVICE_NEEDS_RESET from the worker, never in an exception escaping its thread. */
class QueueWorkerTest {

    @Test
    void loopingChainSetsNeedsReset() throws Exception {
        try (DeviceHarness h = new DeviceHarness(new RngDevice(), Feature.VERSION_1.mask())) {
            RingAddresses ring = h.queues.getFirst().addresses();
            long buf = h.alloc.allocate(64, 8);
            for (int i = 0; i < 2; i++) {
                long d = ring.descTable() + 16L * i;
                h.memory.writeU64(d, buf);
                h.memory.writeU32(d + 8, 16);
                h.memory.writeU16(d + 12, (short) 3); // NEXT | WRITE
                h.memory.writeU16(d + 14, (short) (1 - i));
            }
            h.memory.writeU16(ring.availRing() + 4, (short) 0);
            h.memory.writeU16(ring.availRing() + 2, (short) 1);
            h.queues.getFirst().notifyDevice();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (h.needsReset.get() == null && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            assertThat(h.needsReset.get()).contains("virtqueue 0").contains("loop");
        }
    }

    /** A one-queue device whose handler fails the way a memory fault does (the JVM raises InternalError). */
    static final class Faulting extends QueueDevice {
        public io.jvirtio.core.spec.DeviceType type() { return io.jvirtio.core.spec.DeviceType.ENTROPY; }
        public long deviceFeatures() { return Feature.VERSION_1.mask(); }
        public int numQueues() { return 1; }
        public int maxQueueSize(int index) { return 8; }
        public io.jvirtio.core.device.ConfigSpace config() { return new io.jvirtio.core.device.ConfigSpace(0); }

        @Override
        protected QueueThread worker(int index, io.jvirtio.core.queue.DeviceQueue queue,
                                     io.jvirtio.core.queue.Interrupt interrupt, io.jvirtio.core.device.DeviceContext c) {
            return requestWorker(index, queue, interrupt, chain -> {
                throw new InternalError("a fault occurred in an unsafe memory access operation");
            }, c);
        }
    }

    @Test
    void anErrorInAWorkerSetsNeedsResetInsteadOfKillingTheQueueSilently() throws Exception {
        try (DeviceHarness h = new DeviceHarness(new Faulting(), Feature.VERSION_1.mask())) {
            long buf = h.alloc.allocate(64, 8);
            h.queues.getFirst().addInBuf(buf, 64, "x");
            h.queues.getFirst().kick();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (h.needsReset.get() == null && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            assertThat(h.needsReset.get()).contains("queue 0 failed").contains("InternalError");
        }
    }
}
