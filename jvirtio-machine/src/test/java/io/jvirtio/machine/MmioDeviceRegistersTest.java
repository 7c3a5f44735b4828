package io.jvirtio.machine;

import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.spec.Conformance;
import io.jvirtio.core.spec.DeviceStatus;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.MemoryBackend;
import io.jvirtio.transport.mmio.VirtioMmioDevice;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;

import static io.jvirtio.transport.mmio.VirtioMmio.*;
import static org.assertj.core.api.Assertions.assertThat;

/** The device side of virtio-mmio register by register, as a driver — or a hostile one — writes it. */
class MmioDeviceRegistersTest {
    static final long BASE = 0x1_0000_0000L;

    GuestMemory mem;
    BlkDevice blk;
    VirtioMmioDevice dev;
    final AtomicInteger activations = new AtomicInteger();
    final List<Boolean> line = new CopyOnWriteArrayList<>();
    /** What the transport asked of the model: its reset (with the status a driver read then), queues stopped. */
    final List<String> events = new CopyOnWriteArrayList<>();

    @BeforeEach
    void plug() {
        mem = GuestMemory.allocate(BASE, 1 << 20);
        blk = new BlkDevice(new MemoryBackend(1 << 20, false), 2);
        dev = new VirtioMmioDevice(new MaskedModel(blk, 0) {
            @Override
            public void activate(DeviceContext c) {
                activations.incrementAndGet();
                super.activate(c);
            }

            @Override
            public void reset() {
                events.add("reset, status " + r(STATUS));
                super.reset();
            }

            @Override
            public io.jvirtio.core.queue.QueueState stopQueue(int i) {
                events.add("stop " + i);
                return super.stopQueue(i);
            }
        }, mem, "mmio0", line::add);
    }

    @AfterEach
    void unplug() {
        dev.reset();
        mem.close();
    }

    long r(int off) {
        return dev.read(off, 4);
    }

    void w(int off, long v) {
        dev.write(off, 4, v);
    }

    void features() {
        w(DRIVER_FEATURES_SEL, 1);
        w(DRIVER_FEATURES, Feature.VERSION_1.mask() >>> 32);
        w(DRIVER_FEATURES_SEL, 0);
        w(DRIVER_FEATURES, 0);
    }

    /** Queue {@code q} at {@code size} descriptors on rings in guest memory (or at {@code desc}), ready. */
    void queue(int q, int size, long desc) {
        w(QUEUE_SEL, q);
        w(QUEUE_NUM, size);
        w(QUEUE_DESC_LOW, desc);
        w(QUEUE_DESC_HIGH, desc >>> 32);
        long driver = BASE + 0x10000L * (q + 1);
        w(QUEUE_DRIVER_LOW, driver);
        w(QUEUE_DRIVER_HIGH, driver >>> 32);
        w(QUEUE_DEVICE_LOW, driver + 0x1000);
        w(QUEUE_DEVICE_HIGH, (driver + 0x1000) >>> 32);
        w(QUEUE_READY, 1);
    }

    @Test
    void aQueueSelectorNamingNoQueueSelectsNothingWhateverItsValue() {
        long max = blk.maxQueueSize(0);
        for (long sel : new long[] {2, 3, 0x7fff_ffffL, 0x8000_0000L, 0xffff_ffffL}) {
            w(QUEUE_SEL, sel);
            assertThat(r(QUEUE_NUM_MAX)).as("QueueNumMax of queue 0x%x", sel).isZero();
            assertThat(r(QUEUE_READY)).as("QueueReady of queue 0x%x", sel).isZero();
            w(QUEUE_NUM, 8);
            w(QUEUE_DESC_LOW, 0x1234);
            w(QUEUE_READY, 1);
            assertThat(r(QUEUE_READY)).as("still no queue 0x%x", sel).isZero();
            w(QUEUE_NOTIFY, sel);
        }
        for (int q = 0; q < 2; q++) {
            w(QUEUE_SEL, q);
            assertThat(r(QUEUE_NUM_MAX)).isEqualTo(max);
            assertThat(r(QUEUE_READY)).as("queue %d untouched", q).isZero();
        }
    }

    @Test
    @Conformance("basic-dev-1")
    void onlyTheStatusWriteThatAddsDriverOkStartsTheDevice() {
        w(STATUS, DeviceStatus.ACKNOWLEDGE);
        w(STATUS, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER);
        features();
        int ok = DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK;
        w(STATUS, ok);
        assertThat(r(STATUS)).isEqualTo(ok);
        assertThat(activations.get()).as("before DRIVER_OK").isZero();
        w(STATUS, ok | DeviceStatus.DRIVER_OK);
        assertThat(activations.get()).isEqualTo(1);
        w(STATUS, ok | DeviceStatus.DRIVER_OK);
        assertThat(activations.get()).as("DRIVER_OK written again").isEqualTo(1);
    }

    @Test
    @Conformance({"mmio-dev-4", "basic-dev-7"})
    void aResetForgetsTheAcceptedFeaturesTheQueueSelectorAndLowersTheLine() {
        features();
        w(STATUS, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK | DeviceStatus.DRIVER_OK);
        blk.config().update(0, 4096, 8);
        assertThat(line).as("a configuration change").containsExactly(true);
        w(QUEUE_SEL, 9);
        w(STATUS, 0);
        assertThat(line).as("reset lowers the line").endsWith(false);
        assertThat(r(INTERRUPT_STATUS)).isZero();
        assertThat(r(QUEUE_NUM_MAX)).as("QueueSel back at 0").isEqualTo(blk.maxQueueSize(0));
        // the features accepted before the reset are gone: FEATURES_OK without VERSION_1 is refused
        w(STATUS, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK);
        assertThat(r(STATUS) & DeviceStatus.FEATURES_OK).isZero();
    }

    @Test
    @Conformance("basic-dev-2")
    void aQueueThatCannotExistEndsInNeedsResetAndAConfigurationInterrupt() {
        features();
        int ok = DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK;
        w(STATUS, ok);
        queue(0, 3, BASE); // not a power of two
        w(STATUS, ok | DeviceStatus.DRIVER_OK);
        assertThat(r(STATUS) & DeviceStatus.DEVICE_NEEDS_RESET).as("at DRIVER_OK").isNotZero();
        assertThat(r(INTERRUPT_STATUS)).isEqualTo(INT_CONFIG);
        assertThat(line).containsExactly(true);
        assertThat(activations.get()).isZero();

        // and a queue started after DRIVER_OK on a ring outside guest memory
        w(STATUS, 0);
        line.clear();
        features();
        w(STATUS, ok);
        queue(0, 8, BASE);
        w(STATUS, ok | DeviceStatus.DRIVER_OK);
        assertThat(r(STATUS) & DeviceStatus.DEVICE_NEEDS_RESET).isZero();
        queue(1, 8, BASE + (1 << 20) - 16);
        assertThat(r(STATUS) & DeviceStatus.DEVICE_NEEDS_RESET).as("queue 1 started outside memory").isNotZero();
        assertThat(r(INTERRUPT_STATUS)).isEqualTo(INT_CONFIG);
        assertThat(line).containsExactly(true);
    }

    @Test
    void noConfigurationInterruptBeforeDriverOk() {
        w(STATUS, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER);
        blk.config().update(0, 4096, 8);
        assertThat(r(INTERRUPT_STATUS)).isZero();
        assertThat(line).isEmpty();
    }

    @Test
    @Conformance("basic-dev-8")
    void theModelIsStoppedBeforeStatusReadsZero() {
        features();
        int ok = DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK | DeviceStatus.DRIVER_OK;
        w(STATUS, ok);
        events.clear();
        w(STATUS, 0);
        assertThat(events).containsExactly("reset, status " + ok);
        assertThat(r(STATUS)).isZero();
    }

    @Test
    @Conformance("mmio-dev-6")
    void queueReadyZeroAfterDriverOkStopsTheModelsQueue() {
        features();
        int ok = DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK;
        w(STATUS, ok);
        queue(0, 8, BASE);
        w(STATUS, ok | DeviceStatus.DRIVER_OK);
        events.clear();
        w(QUEUE_SEL, 0);
        w(QUEUE_READY, 0);
        assertThat(events).containsExactly("stop 0");
        assertThat(r(QUEUE_READY)).isZero();
        w(QUEUE_READY, 0);
        assertThat(events).as("already stopped").containsExactly("stop 0");
    }

    @Test
    @Conformance("mmio-dev-3")
    void acknowledgingTheLastPendingBitLowersTheLineAndOnlyThat() {
        features();
        w(STATUS, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK | DeviceStatus.DRIVER_OK);
        blk.config().update(0, 4096, 8);
        assertThat(line).containsExactly(true);
        w(INTERRUPT_ACK, INT_VRING); // a bit that is not set
        assertThat(r(INTERRUPT_STATUS)).isEqualTo(INT_CONFIG);
        assertThat(line).as("still pending: the line stays up").containsExactly(true);
        w(INTERRUPT_ACK, INT_CONFIG);
        assertThat(r(INTERRUPT_STATUS)).isZero();
        assertThat(line).containsExactly(true, false);
    }
}
