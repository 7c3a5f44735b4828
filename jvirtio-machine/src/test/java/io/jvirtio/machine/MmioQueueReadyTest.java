package io.jvirtio.machine;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.split.SplitLayout;
import io.jvirtio.core.spec.Conformance;
import io.jvirtio.core.spec.DeviceStatus;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.console.ConsoleBackend;
import io.jvirtio.devices.console.ConsoleDevice;
import org.junit.jupiter.api.Test;

import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

import static io.jvirtio.transport.mmio.VirtioMmio.*;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * §4.2.2 QueueReady after DRIVER_OK, programmed register by register as a driver does: writing 0 stops the
 * queue (the device no longer touches the ring the driver is about to free), writing 1 starts it on the ring
 * programmed since, and what the device was holding for the queue (console input) survives the restart.
 */
class MmioQueueReadyTest {
    /** A console backend whose input the test types. */
    static final class Keyboard implements ConsoleBackend {
        volatile Consumer<byte[]> input;
        public void start(Consumer<byte[]> in) { input = in; }
        public void write(byte[] data, int offset, int length) { }
        public void close() { }
    }

    Machine m;
    long base;

    void w(int reg, long v) {
        m.mmioWrite(base + reg, 4, v);
    }

    long r(int reg) {
        return m.mmioRead(base + reg, 4);
    }

    void program(int queue, DriverQueue<?> q, int size) {
        w(QUEUE_SEL, queue);
        w(QUEUE_NUM, size);
        w(QUEUE_DESC_LOW, q.addresses().descTable());
        w(QUEUE_DESC_HIGH, q.addresses().descTable() >>> 32);
        w(QUEUE_DRIVER_LOW, q.addresses().availRing());
        w(QUEUE_DRIVER_HIGH, q.addresses().availRing() >>> 32);
        w(QUEUE_DEVICE_LOW, q.addresses().usedRing());
        w(QUEUE_DEVICE_HIGH, q.addresses().usedRing() >>> 32);
        w(QUEUE_READY, 1);
    }

    @Test
    @Conformance({"mmio-dev-6", "mmio-drv-9"})
    void queueReadyZeroStopsTheQueueAndOneRestartsItOnTheNewRing() throws Exception {
        Keyboard keys = new Keyboard();
        m = new Machine(16 << 20);
        try {
            base = m.plugMmio(new ConsoleDevice(keys, 80, 25)).base();
            GuestMemory mem = m.memory();
            long features = Feature.VERSION_1.mask();
            w(STATUS, 0);
            w(STATUS, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER);
            w(DRIVER_FEATURES_SEL, 1);
            w(DRIVER_FEATURES, 1); // VERSION_1 is bit 32
            w(STATUS, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK);
            DriverQueue<String> old = DriverQueue.allocate(m.dma(), 0, SplitLayout.modern(16), features, 0,
                    () -> w(QUEUE_NOTIFY, 0));
            program(0, old, 16);
            w(STATUS, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK | DeviceStatus.DRIVER_OK);

            long oldBuf = m.dma().allocate(64, 8);
            mem.write(oldBuf, new byte[64], 0, 64);
            old.addInBuf(oldBuf, 64, "old");
            old.kick();

            w(QUEUE_SEL, 0);
            w(QUEUE_READY, 0);
            assertThat(r(QUEUE_READY)).as("reads back 0: the driver may free the ring").isZero();

            keys.input.accept("typed while stopped".getBytes());

            DriverQueue<String> fresh = DriverQueue.allocate(m.dma(), 0, SplitLayout.modern(8), features, 0,
                    () -> w(QUEUE_NOTIFY, 0));
            program(0, fresh, 8);
            assertThat(r(QUEUE_READY)).isEqualTo(1);
            long newBuf = m.dma().allocate(64, 8);
            fresh.addInBuf(newBuf, 64, "new");
            fresh.kick();

            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            String token = null;
            while (token == null && System.nanoTime() < deadline) {
                token = fresh.getBuf();
                Thread.onSpinWait();
            }
            assertThat(token).as("the input reached the ring programmed after the restart").isEqualTo("new");
            byte[] got = new byte[fresh.lastLength()];
            mem.read(newBuf, got, 0, got.length);
            assertThat(new String(got)).isEqualTo("typed while stopped");
            assertThat(old.getBuf()).as("the stopped ring was not used").isNull();
            byte[] untouched = new byte[64];
            mem.read(oldBuf, untouched, 0, 64);
            assertThat(untouched).containsOnly(0);
            assertThat(r(STATUS) & DeviceStatus.DEVICE_NEEDS_RESET).isZero();
        } finally {
            m.close();
        }
    }
}
