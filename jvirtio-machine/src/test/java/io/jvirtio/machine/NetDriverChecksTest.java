package io.jvirtio.machine;

import io.jvirtio.core.device.ConfigSpace;
import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.device.VirtioDeviceModel;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.queue.QueueState;
import io.jvirtio.core.spec.Conformance;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.drivers.net.NetDriver;
import io.jvirtio.drivers.net.VirtioNet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * What the net driver checks before it trusts a received buffer: the used length a device reports, exactly at
 * and one past each edge — the header plus an Ethernet header, the buffer's size — and, with MRG_RXBUF, the
 * num_buffers a frame claims against the buffers that really came. A frame the device did not write as it says
 * is dropped and counted, never delivered with an earlier frame's bytes, and the ring stays in step: the next
 * frame arrives whole.
 */
class NetDriverChecksTest {
    static final int HDR = 12;
    static final int BUFFER = 2048; // the driver's receive buffer without MTU (VirtioNet.BUFFER)
    static final byte[] MAC = {0x52, 0x54, 0, 0, 0, 9};

    /** A device (a NIC unless said otherwise) whose receive ring, queue 0, the test fills by hand. */
    static final class HandDevice implements VirtioDeviceModel {
        final ConfigSpace config = new ConfigSpace(12);
        final long features;
        final DeviceType type;
        final int bufferSize;
        volatile DeviceQueue rx;
        volatile Interrupt rxIrq;
        final CountDownLatch started = new CountDownLatch(2);

        HandDevice(long features) {
            this(DeviceType.NET, features, BUFFER);
            config.store(0, MAC);
        }

        HandDevice(DeviceType type, long features, int bufferSize) {
            this.type = type;
            this.features = features;
            this.bufferSize = bufferSize;
        }

        public DeviceType type() { return type; }
        public long deviceFeatures() { return features; }
        public int numQueues() { return 2; }
        public int maxQueueSize(int index) { return 64; }
        public ConfigSpace config() { return config; }
        public void activate(DeviceContext c) {
            for (int i = 0; i < 2; i++) {
                startQueue(i, c.queues().get(i), c.interrupts().get(i));
            }
        }
        public void startQueue(int i, DeviceQueue q, Interrupt irq) {
            if (i == 0) {
                rx = q;
                rxIrq = irq;
            }
            started.countDown();
        }
        public QueueState stopQueue(int i) { return null; }
        public void queueNotify(int i) { }
        public void reset() { }

        /** Fills the next receive buffers with {@code contents} and reports {@code lengths} used, published together. */
        void deliver(byte[][] contents, long[] lengths) throws Exception {
            DescriptorChain chain = new DescriptorChain();
            for (int b = 0; b < contents.length; b++) {
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
                while (!rx.pop(chain)) {
                    assertThat(System.nanoTime()).as("a receive buffer posted").isLessThan(deadline);
                    Thread.sleep(1);
                }
                assertThat(chain.writableBytes()).isEqualTo(bufferSize);
                chain.writeWritable(0, MemorySegment.ofArray(contents[b]));
                rx.addUsed(chain, (int) lengths[b]);
            }
            rx.publishUsed();
            rxIrq.raise();
        }
    }

    /** A received buffer: the 12-byte header with {@code numBuffers}, then a frame of {@code frameLength} bytes. */
    static byte[] buffer(int numBuffers, int frameLength, int seed) {
        byte[] b = new byte[HDR + frameLength];
        b[10] = (byte) numBuffers;
        for (int i = 0; i < frameLength; i++) {
            b[HDR + i] = (byte) (i * 31 + seed);
        }
        if (frameLength >= 6) {
            System.arraycopy(MAC, 0, b, HDR, 6);
        }
        return b;
    }

    static byte[] frameOf(byte[] buffer) {
        return java.util.Arrays.copyOfRange(buffer, HDR, buffer.length);
    }

    VirtioNet bind(DriverRulesTest.Rig rig, HandDevice nic) throws Exception {
        NetDriver driver = new NetDriver();
        rig.drive(nic, driver);
        assertThat(nic.started.await(5, TimeUnit.SECONDS)).isTrue();
        return driver.nics().getFirst();
    }

    /**
     * Lengths at each edge of one buffer: a bare Ethernet header is a frame, one byte less is not; a length up
     * to the buffer's size is taken, one byte more is a device error. Before, a length past the buffer was cut
     * to it and the frame delivered with whatever the buffer held from before.
     */
    @Test
    @Conformance("split-drv-15")
    void aUsedLengthIsTakenUpToTheBufferAndAFrameFromAnEthernetHeaderOn() throws Exception {
        try (DriverRulesTest.Rig rig = new DriverRulesTest.Rig()) {
            HandDevice dev = new HandDevice(Feature.maskOf(Feature.VERSION_1, Feature.NET_MAC));
            VirtioNet nic = bind(rig, dev);
            byte[] smallest = buffer(1, 14, 1);
            byte[] full = buffer(1, BUFFER - HDR, 2);
            byte[] shortOne = buffer(1, 13, 3);
            byte[] over = buffer(1, BUFFER - HDR, 4);
            byte[] after = buffer(1, 60, 5);
            dev.deliver(new byte[][] {smallest, shortOne, full, over, over, after},
                    new long[] {HDR + 14, HDR + 13, BUFFER, BUFFER + 1, 0xffff_ffffL, HDR + 60});
            assertThat(nic.receive(5, TimeUnit.SECONDS)).as("a bare Ethernet header").isEqualTo(frameOf(smallest));
            assertThat(nic.receive(5, TimeUnit.SECONDS)).as("the whole buffer").isEqualTo(frameOf(full));
            assertThat(nic.receive(5, TimeUnit.SECONDS)).as("the ring in step after").isEqualTo(frameOf(after));
            assertThat(nic.receive(200, TimeUnit.MILLISECONDS)).as("nothing else").isNull();
            assertThat(nic.rxDropped.get()).as("13 bytes, 1 past the buffer, 2^32-1").isEqualTo(3);
            assertThat(nic.rxFrames.get()).isEqualTo(3);
        }
    }

    /**
     * MRG_RXBUF: a frame over three buffers is put together byte for byte; one whose continuation claims more
     * than its buffer holds is dropped with all its buffers, and the frame after it arrives whole.
     */
    @ParameterizedTest
    @ValueSource(longs = {BUFFER + 1, 0x8000_0000L})
    @Conformance("split-drv-15")
    void aMergedFrameIsBuiltFromWhatEachBufferHoldsAndDroppedWhenOneClaimsMore(long badLength) throws Exception {
        try (DriverRulesTest.Rig rig = new DriverRulesTest.Rig()) {
            HandDevice dev = new HandDevice(Feature.maskOf(Feature.VERSION_1, Feature.NET_MAC, Feature.NET_MRG_RXBUF));
            VirtioNet nic = bind(rig, dev);
            byte[] first = buffer(3, BUFFER - HDR, 7);
            byte[] second = new byte[BUFFER];
            byte[] third = new byte[100];
            for (int i = 0; i < second.length; i++) {
                second[i] = (byte) (i * 13 + 1);
            }
            for (int i = 0; i < third.length; i++) {
                third[i] = (byte) (i * 17 + 2);
            }
            dev.deliver(new byte[][] {first, second, third}, new long[] {BUFFER, BUFFER, third.length});
            byte[] whole = new byte[BUFFER - HDR + BUFFER + third.length];
            System.arraycopy(frameOf(first), 0, whole, 0, BUFFER - HDR);
            System.arraycopy(second, 0, whole, BUFFER - HDR, BUFFER);
            System.arraycopy(third, 0, whole, BUFFER - HDR + BUFFER, third.length);
            assertThat(nic.receive(5, TimeUnit.SECONDS)).isEqualTo(whole);

            byte[] after = buffer(1, 60, 8);
            dev.deliver(new byte[][] {first, second, third, after}, new long[] {BUFFER, badLength, third.length, HDR + 60});
            assertThat(nic.receive(5, TimeUnit.SECONDS)).as("dropped with its buffers; the next one whole")
                    .isEqualTo(frameOf(after));
            assertThat(nic.rxDropped.get()).isEqualTo(1);

            byte[] lying = buffer(2, BUFFER - HDR, 9);
            dev.deliver(new byte[][] {lying, third, after}, new long[] {BUFFER + 1, third.length, HDR + 60});
            assertThat(nic.receive(5, TimeUnit.SECONDS)).as("a first buffer past its size: dropped with the rest")
                    .isEqualTo(frameOf(after));
            assertThat(nic.receive(200, TimeUnit.MILLISECONDS)).as("nothing else").isNull();
            assertThat(nic.rxDropped.get()).isEqualTo(2);
        }
    }
}
