package io.jvirtio.machine;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.core.device.ConfigSpace;
import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.spec.Conformance;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.QueueDevice;
import io.jvirtio.devices.QueueThread;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.MemoryBackend;
import io.jvirtio.drivers.blk.BlkDriver;
import io.jvirtio.drivers.blk.BlockIOException;
import io.jvirtio.drivers.blk.VirtioBlock;
import io.jvirtio.transport.pci.VirtioPciDriver;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** What the block driver checks before it trusts a request or a completion. */
class BlkDriverChecksTest {

    private static VirtioBlock disk(Machine m, io.jvirtio.core.device.VirtioDeviceModel model) {
        m.plug(model);
        VirtioBus bus = new VirtioBus();
        BlkDriver blk = new BlkDriver();
        bus.registerDriver(blk);
        new VirtioPciDriver(m, bus).scan();
        return blk.disks().getFirst();
    }

    @Test
    @Conformance("blk-drv-5")
    void requestsBeyondTheCapacityAreRefusedWithoutReachingTheDevice() throws Exception {
        try (Machine m = new Machine(64 << 20)) {
            BlkDevice dev = new BlkDevice(new MemoryBackend(1 << 20, false));
            VirtioBlock disk = disk(m, dev);
            MemorySegment buf = disk.allocateBuffer(1024);
            for (long sector : new long[] {2047, 2048, -1, Long.MAX_VALUE}) {
                assertThatThrownBy(() -> disk.read(sector, buf).get(5, TimeUnit.SECONDS)).as("read at %d", sector)
                        .hasCauseInstanceOf(IllegalArgumentException.class).hasMessageContaining("beyond the capacity");
                assertThatThrownBy(() -> disk.write(sector, buf).get(5, TimeUnit.SECONDS)).as("write at %d", sector)
                        .hasCauseInstanceOf(IllegalArgumentException.class);
            }
            assertThatThrownBy(() -> disk.writeZeroes(2040, 9).get(5, TimeUnit.SECONDS))
                    .hasCauseInstanceOf(IllegalArgumentException.class);
            disk.read(2046, buf).get(5, TimeUnit.SECONDS); // the last two sectors are fine
            assertThat(dev.errors.sum()).as("the device saw no bad request").isZero();
            assertThat(dev.reads.sum()).isEqualTo(1);
        }
    }

    /** A one-queue block device of 2048 sectors whose requests {@code handler} answers. */
    abstract static class FakeBlk extends QueueDevice {
        final ConfigSpace config = new ConfigSpace(60);

        FakeBlk() {
            config.store(0, 2048, 8);
        }

        public DeviceType type() { return DeviceType.BLOCK; }
        public long deviceFeatures() { return Feature.VERSION_1.mask(); }
        public int numQueues() { return 1; }
        public int maxQueueSize(int index) { return 64; }
        public ConfigSpace config() { return config; }

        abstract int handle(io.jvirtio.core.queue.DescriptorChain chain, DeviceContext context);

        @Override
        protected QueueThread worker(int index, DeviceQueue queue, Interrupt interrupt, DeviceContext context) {
            return requestWorker(index, queue, interrupt, chain -> handle(chain, context), context);
        }
    }

    /** A block device that completes every request with status OK but a used length of 1. */
    static final class ShortLength extends FakeBlk {
        final MemorySegment ok = MemorySegment.ofArray(new byte[1]);

        int handle(io.jvirtio.core.queue.DescriptorChain chain, DeviceContext context) {
            chain.writeWritable(chain.writableBytes() - 1, ok);
            return 1;
        }
    }

    @Test
    @Conformance("split-drv-15")
    void aReadWhoseUsedLengthLeavesOutTheDataFails() throws Exception {
        try (Machine m = new Machine(64 << 20)) {
            VirtioBlock disk = disk(m, new ShortLength());
            MemorySegment buf = disk.allocateBuffer(512);
            assertThatThrownBy(() -> disk.read(0, buf).get(5, TimeUnit.SECONDS))
                    .isInstanceOf(ExecutionException.class).hasCauseInstanceOf(BlockIOException.class);
            disk.write(0, buf).get(5, TimeUnit.SECONDS); // a write needs only the status byte
        }
    }

    /** A block device that takes the first request, never completes it, and declares DEVICE_NEEDS_RESET. */
    static final class Breaks extends FakeBlk {
        final java.util.concurrent.CountDownLatch took = new java.util.concurrent.CountDownLatch(1);

        int handle(io.jvirtio.core.queue.DescriptorChain chain, DeviceContext context) {
            took.countDown();
            context.failure().needsReset("the test's device broke");
            java.util.concurrent.locks.LockSupport.park(); // never completes; reset's stop unparks it
            return 0;
        }
    }

    @Test
    @Conformance({"basic-drv-4", "basic-dev-2"})
    void deviceNeedsResetFailsWhatIsInFlightAndWhatComesAfter() throws Exception {
        try (Machine m = new Machine(64 << 20)) {
            Breaks dev = new Breaks();
            VirtioBlock disk = disk(m, dev);
            MemorySegment buf = disk.allocateBuffer(512);
            var inFlight = disk.read(0, buf);
            assertThat(dev.took.await(5, TimeUnit.SECONDS)).isTrue();
            assertThatThrownBy(() -> inFlight.get(5, TimeUnit.SECONDS)).isInstanceOf(ExecutionException.class)
                    .hasMessageContaining("device needs reset");
            assertThatThrownBy(() -> disk.write(0, buf).get(5, TimeUnit.SECONDS)).isInstanceOf(ExecutionException.class);
        }
    }

    /**
     * A block device that answers its first request with a used element naming a descriptor that was never
     * made available, then the request's own: two used elements for one buffer in flight, so the driver's ring
     * breaks there.
     */
    static final class WrongUsedId extends FakeBlk {
        int handle(io.jvirtio.core.queue.DescriptorChain chain, DeviceContext context) {
            context.queues().getFirst().addUsed(chain.head() + 10, 1);
            chain.writeWritable(chain.writableBytes() - 1, MemorySegment.ofArray(new byte[1]));
            return (int) chain.writableBytes();
        }
    }

    /**
     * A ring the device broke completes nothing more: what was in flight on it fails at once, naming the
     * error, instead of waiting for ever, and so does every later request.
     */
    @Test
    void aRingTheDeviceBreaksFailsWhatIsInFlightOnItAndWhatComesAfter() throws Exception {
        try (Machine m = new Machine(64 << 20)) {
            VirtioBlock disk = disk(m, new WrongUsedId());
            MemorySegment buf = disk.allocateBuffer(512);
            assertThatThrownBy(() -> disk.read(0, buf).get(5, TimeUnit.SECONDS))
                    .isInstanceOf(ExecutionException.class).hasCauseInstanceOf(java.io.IOException.class)
                    .hasMessageContaining("virtqueue 0: used").hasMessageContaining("in flight");
            assertThatThrownBy(() -> disk.write(0, buf).get(5, TimeUnit.SECONDS))
                    .isInstanceOf(ExecutionException.class).hasCauseInstanceOf(java.io.IOException.class);
        }
    }

    @Test
    @Conformance("blk-drv-4")
    void aCapacityChangeReachesTheDriverThroughTheConfigInterrupt() throws Exception {
        try (Machine m = new Machine(64 << 20)) {
            BlkDevice dev = new BlkDevice(new MemoryBackend(1 << 20, false));
            VirtioBlock disk = disk(m, dev);
            assertThat(disk.capacitySectors()).isEqualTo(2048);
            dev.config().update(0, 1024, 8); // the device shrinks (as a resize would)
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while (disk.capacitySectors() != 1024 && System.nanoTime() < deadline) {
                Thread.sleep(1);
            }
            assertThat(disk.capacitySectors()).isEqualTo(1024);
            assertThatThrownBy(() -> disk.read(1024, disk.allocateBuffer(512)).get(5, TimeUnit.SECONDS))
                    .hasCauseInstanceOf(IllegalArgumentException.class);
        }
    }
}
