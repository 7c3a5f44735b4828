package io.jvirtio.transport.pci;

import io.jvirtio.core.device.ConfigSpace;
import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.device.VirtioDeviceModel;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.queue.QueueState;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.core.spec.Feature;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The INTx line of a function without MSI-X follows its ISR (§4.1.4.5, pci-dev-21) even when the device raises
 * the ISR while a driver's read of it is lowering the line: the reader decides "no bit left", the device sets a
 * bit and asserts the line, and only then does the reader's de-assertion arrive — the line must end up asserted,
 * or the driver never hears of the buffer (a lost interrupt with a level-triggered line).
 */
class IntxLineTest {
    /** A device with one queue that does nothing by itself: the test raises its interrupts. */
    static final class Quiet implements VirtioDeviceModel {
        final ConfigSpace config = new ConfigSpace(0);

        public DeviceType type() {
            return DeviceType.ENTROPY;
        }

        public long deviceFeatures() {
            return Feature.VERSION_1.mask();
        }

        public int numQueues() {
            return 1;
        }

        public int maxQueueSize(int index) {
            return 64;
        }

        public ConfigSpace config() {
            return config;
        }

        public void activate(DeviceContext context) {
        }

        public void startQueue(int index, DeviceQueue queue, Interrupt interrupt) {
        }

        public QueueState stopQueue(int index) {
            return QueueState.INITIAL;
        }

        public void queueNotify(int index) {
        }

        public void reset() {
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("pci-dev-20")
    void aBufferUsedWhileTheDriverReadsTheIsrKeepsTheLineAsserted() {
        try (GuestMemory memory = GuestMemory.allocate(0x1_0000_0000L, 1 << 20)) {
            VirtioPciDevice dev = new VirtioPciDevice(new Quiet(), memory, "intx", 0, false); // no MSI-X: INTx
            List<Boolean> line = new ArrayList<>();
            AtomicBoolean interleave = new AtomicBoolean();
            dev.connect(new PciInterrupts() {
                @Override
                public void msi(long address, int data) {
                    throw new AssertionError("no MSI-X here");
                }

                @Override
                public void intx(boolean asserted) {
                    if (!asserted && interleave.getAndSet(false)) {
                        dev.signalQueue(0); // the device's thread, between the reader's decision and its de-assert
                    }
                    line.add(asserted);
                }
            });
            dev.signalQueue(0);
            assertThat(line).as("a used buffer asserts the line").endsWith(true);
            interleave.set(true);
            assertThat(dev.barRead(PciConfigHeader.VIRTIO_BAR, PciConfigHeader.ISR_OFFSET, 1))
                    .as("the driver's read: the queue bit, cleared").isEqualTo(1);
            assertThat(line).as("the line after the read, the ISR set again meanwhile").endsWith(true);
            assertThat(dev.barRead(PciConfigHeader.VIRTIO_BAR, PciConfigHeader.ISR_OFFSET, 1))
                    .as("the second buffer's bit").isEqualTo(1);
            assertThat(line).as("nothing pending: the line goes down").endsWith(false);
        }
    }
}
