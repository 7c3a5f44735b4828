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

    /** A device of one queue of 8, features VERSION_1 alone, no configuration: what a worker test needs. */
    abstract static class OneQueue extends QueueDevice {
        public io.jvirtio.core.spec.DeviceType type() { return io.jvirtio.core.spec.DeviceType.ENTROPY; }
        public long deviceFeatures() { return Feature.VERSION_1.mask(); }
        public int numQueues() { return 1; }
        public int maxQueueSize(int index) { return 8; }
        public io.jvirtio.core.device.ConfigSpace config() { return new io.jvirtio.core.device.ConfigSpace(0); }
    }

    /** A one-queue device whose handler fails the way a memory fault does (the JVM raises InternalError). */
    static final class Faulting extends OneQueue {

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

    /** A one-queue device whose handler touches its chains first; it logs what it touches and handles, by first byte. */
    static final class Touchy extends OneQueue {
        final java.util.List<String> log = new java.util.concurrent.CopyOnWriteArrayList<>();

        @Override
        protected QueueThread worker(int index, io.jvirtio.core.queue.DeviceQueue queue,
                                     io.jvirtio.core.queue.Interrupt interrupt, io.jvirtio.core.device.DeviceContext c) {
            return requestWorker(index, queue, interrupt, new QueueHandler.Touching() {
                public long touch(io.jvirtio.core.queue.DescriptorChain chain) {
                    log.add("t" + first(chain));
                    return 0;
                }

                public int handle(io.jvirtio.core.queue.DescriptorChain chain) {
                    log.add("h" + first(chain));
                    return 0;
                }

                public void groupHandled() {
                    log.add("|");
                }
            }, c);
        }

        static int first(io.jvirtio.core.queue.DescriptorChain chain) {
            return chain.segment(0).get(java.lang.foreign.ValueLayout.JAVA_BYTE, 0);
        }
    }

    /** The log of a {@link Touchy} as its groups, each ending in "|" ({@code groupHandled}). */
    static java.util.List<String> groups(java.util.List<String> log) {
        return String.join(" ", log).replace("|", "|\n").lines().map(String::strip).filter(g -> !g.equals("|")).toList();
    }

    /** Buffers 1..{@code n} on the queue, each 8 bytes starting with its number; not kicked. */
    static void offerNumbered(DeviceHarness h, int n) throws Exception {
        for (int i = 1; i <= n; i++) {
            long buf = h.alloc.allocate(8, 8);
            h.memory.write(buf, new byte[] {(byte) i}, 0, 1);
            h.queues.getFirst().addBuf(new io.jvirtio.core.queue.Scatterlist().addReadable(buf, 8), "b" + i);
        }
    }

    static void awaitUsed(DeviceHarness h, int n) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        int got = 0;
        while (got < n && System.nanoTime() < deadline) {
            if (h.queues.getFirst().getBuf() != null) {
                got++;
            } else {
                Thread.sleep(1);
            }
        }
        assertThat(got).as("buffers used").isEqualTo(n);
    }

    @Test
    void aTouchingHandlersChainsAreAllTouchedThenHandledInRingOrder() throws Exception {
        Touchy dev = new Touchy();
        try (DeviceHarness h = new DeviceHarness(dev, Feature.VERSION_1.mask())) {
            offerNumbered(h, 3);
            h.queues.getFirst().kick();
            awaitUsed(h, 3);
            // the worker's first pass may find only some of the buffers (each add publishes the available
            // index): whatever the groups, each is touched whole before any of it is handled, in ring order
            assertThat(groups(dev.log))
                    .isIn(java.util.List.of("t1 t2 t3 h1 h2 h3 |"),
                            java.util.List.of("t1 h1 |", "t2 t3 h2 h3 |"),
                            java.util.List.of("t1 t2 h1 h2 |", "t3 h3 |"),
                            java.util.List.of("t1 h1 |", "t2 h2 |", "t3 h3 |"));
        }
    }

    @Test
    void aRingThatBreaksInsideAGroupHasTheChainsBeforeTheBreakHandledAndUsed() throws Exception {
        Touchy dev = new Touchy();
        try (DeviceHarness h = new DeviceHarness(dev, Feature.VERSION_1.mask())) {
            offerNumbered(h, 2);
            // outside guest memory: the third chain breaks the ring
            h.queues.getFirst().addBuf(new io.jvirtio.core.queue.Scatterlist().addReadable(0x7f00_0000_0000L, 8), "bad");
            h.queues.getFirst().kick();
            awaitUsed(h, 2);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (h.needsReset.get() == null && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            assertThat(h.needsReset.get()).contains("virtqueue 0");
            assertThat(groups(dev.log)).isIn(java.util.List.of("t1 t2 h1 h2 |"),
                    java.util.List.of("t1 h1 |", "t2 h2 |"));
        }
    }
}
