package io.jvirtio.devices.net;

import io.jvirtio.core.spec.Net;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.DeviceHarness;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Consumer;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The NIC model's own parts, exactly: its frame queue, the receive filter, the MAC table, close. */
class NetModelTest {
    static final byte[] MAC = {0x52, 0x54, 0, 1, 2, 3};
    static final long FEATURES = Feature.maskOf(Feature.VERSION_1, Feature.NET_MAC, Feature.NET_CTRL_VQ, Feature.NET_CTRL_RX);

    @Test
    void theFrameQueueKeepsOrderBoundsAndSlotsAcrossManyWraps() {
        FrameRing ring = new FrameRing(4, 64);
        assertThatThrownBy(() -> new FrameRing(3, 64)).isInstanceOf(IllegalArgumentException.class);
        assertThat(ring.isEmpty()).isTrue();
        MemorySegment f = MemorySegment.ofArray(new byte[65]);
        assertThat(ring.offer(f, 0, 65)).as("larger than a slot").isFalse();
        for (int round = 0; round < 10; round++) {
            for (int i = 0; i < 4; i++) {
                f.set(ValueLayout.JAVA_BYTE, 0, (byte) (round * 4 + i));
                assertThat(ring.offer(f, 0, 10 + i)).isTrue();
            }
            assertThat(ring.offer(f, 0, 10)).as("full").isFalse();
            for (int i = 0; i < 4; i++) {
                assertThat(ring.isEmpty()).isFalse();
                assertThat(ring.headLength()).isEqualTo(10 + i);
                assertThat(ring.headOffset()).isEqualTo(64L * ((round * 4 + i) % 4));
                assertThat(ring.slots().get(ValueLayout.JAVA_BYTE, ring.headOffset())).isEqualTo((byte) (round * 4 + i));
                ring.poll();
            }
            assertThat(ring.isEmpty()).isTrue();
        }
        assertThat(ring.offer(f, 0, 64)).as("exactly a slot").isTrue();
        ring.clear();
        assertThat(ring.isEmpty()).isTrue();
        ring.close();
    }

    /** A backend the test drives, remembering whether the device closed it. */
    static class Wire implements NetBackend {
        volatile Receiver receiver;
        final AtomicBoolean closed = new AtomicBoolean();
        final Consumer<byte[]> toGuest = f -> receiver.receive(MemorySegment.ofArray(f), f.length);

        public void transmit(MemorySegment buffer, long offset, long length) { }
        public void connect(Receiver r) { receiver = r; }
        public void close() { closed.set(true); }
    }

    static byte[] frameTo(byte[] dst) {
        byte[] f = new byte[60];
        System.arraycopy(dst, 0, f, 0, 6);
        f[6] = 0x52;
        f[11] = 9;
        return f;
    }

    int control(DeviceHarness h, int... values) throws Exception {
        byte[] cmd = new byte[values.length];
        for (int i = 0; i < values.length; i++) {
            cmd[i] = (byte) values[i];
        }
        return controlBytes(h, cmd);
    }

    int controlBytes(DeviceHarness h, byte[] cmd) throws Exception {
        long buf = h.alloc.allocate(cmd.length + 1, 8);
        h.memory.write(buf, cmd, 0, cmd.length);
        h.roundTrip(2, new Scatterlist().addReadable(buf, cmd.length).addWritable(buf + cmd.length, 1));
        return h.memory.slice(buf + cmd.length, 1).get(ValueLayout.JAVA_BYTE, 0);
    }

    @Test
    void theReceiveFilterTakesBroadcastItsOwnAddressTheTablesAndAllMulticastOnRequest() throws Exception {
        Wire wire = new Wire();
        NetDevice dev = new NetDevice(wire, MAC, 1);
        try (DeviceHarness h = new DeviceHarness(dev, FEATURES)) {
            byte[] uc = {0x52, 0x54, 0, 9, 9, 1};
            byte[] mc = {0x33, 0x33, 0, 0, 0, 1};
            byte[] otherMc = {0x01, 0, 0x5e, 0, 0, 7};
            assertThat(control(h, 0, 0, 0)).as("promiscuous off").isEqualTo(Net.OK);
            assertThat(control(h, 0, 1, 0)).as("all-multicast off").isEqualTo(Net.OK);
            assertThat(control(h, 1, 0, 1, 0, 0, 0, uc[0], uc[1], uc[2], uc[3], uc[4], uc[5],
                    1, 0, 0, 0, mc[0], mc[1], mc[2], mc[3], mc[4], mc[5])).isEqualTo(Net.OK);
            byte[][] accepted = {{-1, -1, -1, -1, -1, -1}, MAC, uc, mc};
            byte[][] filtered = {{0x52, 0x54, 0, 9, 9, 2}, otherMc};
            for (byte[] d : filtered) {
                wire.toGuest.accept(frameTo(d));
            }
            assertThat(dev.rxFiltered.get()).isEqualTo(2);
            for (byte[] d : accepted) {
                wire.toGuest.accept(frameTo(d));
            }
            assertThat(dev.rxFiltered.get()).as("broadcast, own, table unicast, table multicast pass").isEqualTo(2);
            assertThat(control(h, 0, 1, 1)).as("all-multicast on").isEqualTo(Net.OK);
            wire.toGuest.accept(frameTo(otherMc));
            assertThat(dev.rxFiltered.get()).isEqualTo(2);
            assertThat(control(h, 0, 2, 1)).as("no such rx command").isEqualTo(Net.ERR);
            assertThat(control(h, 0, 0)).as("rx command without its byte").isEqualTo(Net.ERR);
        }
    }

    @Test
    void macTablesMustBeExactlyTheirAnnouncedSize() throws Exception {
        Wire wire = new Wire();
        NetDevice dev = new NetDevice(wire, MAC, 1);
        try (DeviceHarness h = new DeviceHarness(dev, FEATURES)) {
            byte[] sixtyFour = new byte[2 + 4 + 64 * 6 + 4];
            sixtyFour[0] = 1;
            sixtyFour[2] = 64;
            for (int i = 0; i < 64; i++) {
                sixtyFour[6 + 6 * i] = 0x52;
                sixtyFour[6 + 6 * i + 5] = (byte) i;
            }
            assertThat(controlBytes(h, sixtyFour)).as("64 unicast entries fit").isEqualTo(Net.OK);
            assertThat(control(h, 1, 0, 65, 0, 0, 0)).as("65 entries announced").isEqualTo(Net.ERR);
            assertThat(control(h, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7)).as("a byte after both tables").isEqualTo(Net.ERR);
            assertThat(control(h, 1, 0, 0, 0, 0, 0)).as("the multicast count missing").isEqualTo(Net.ERR);
            assertThat(control(h, 1, 0, 1, 0, 0, 0, 1, 2, 3)).as("an entry cut short").isEqualTo(Net.ERR);
            assertThat(control(h, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0)).as("two empty tables").isEqualTo(Net.OK);
            assertThat(control(h, 1, 1, 1, 2, 3)).as("MAC_ADDR_SET not negotiated").isEqualTo(Net.ERR);
            assertThat(control(h, 1, 9, 0)).as("unknown MAC command").isEqualTo(Net.ERR);
            assertThat(control(h, 4, 0, 1, 0)).as("MQ not negotiated").isEqualTo(Net.ERR);
        }
    }

    @Test
    void closingClosesTheBackendAndTakesNoMoreFrames() throws Exception {
        Wire wire = new Wire();
        NetDevice dev = new NetDevice(wire, MAC, 2);
        DeviceHarness h = new DeviceHarness(dev, FEATURES);
        wire.toGuest.accept(frameTo(MAC));
        h.close();
        dev.close();
        assertThat(wire.closed).isTrue();
        long dropped = dev.rxDropped.get();
        wire.toGuest.accept(frameTo(MAC)); // a sender that still held the receiver
        assertThat(dev.rxDropped.get()).isEqualTo(dropped + 1);
    }

    @Test
    void shrinkingFromThreePairsToOneDropsWhatWaitsForBothRemovedPairs() throws Exception {
        Wire wire = new Wire();
        NetDevice dev = new NetDevice(wire, MAC, 3);
        try (DeviceHarness h = new DeviceHarness(dev, FEATURES | Feature.NET_MQ.mask())) {
            long cmd = h.alloc.allocate(8, 8);
            h.memory.write(cmd, new byte[] {4, 0, 3, 0}, 0, 4);
            h.roundTrip(6, new Scatterlist().addReadable(cmd, 4).addWritable(cmd + 4, 1));
            // frames from many sources spread over the three pairs; only pair 0 has receive buffers
            DriverQueue<Object> rx0 = h.queues.get(0);
            for (int i = 0; i < 64; i++) {
                rx0.addInBuf(h.alloc.allocate(2048, 8), 2048, i);
            }
            rx0.kick();
            for (int src = 0; src < 30; src++) {
                byte[] f = frameTo(MAC);
                f[11] = (byte) src;
                wire.toGuest.accept(f);
            }
            long delivered = 0;
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            h.memory.write(cmd, new byte[] {4, 0, 1, 0}, 0, 4);
            h.roundTrip(6, new Scatterlist().addReadable(cmd, 4).addWritable(cmd + 4, 1));
            while (System.nanoTime() < deadline && delivered + dev.rxDropped.get() < 30) {
                if (rx0.getBuf() != null) {
                    delivered++;
                } else {
                    Thread.sleep(1);
                }
            }
            assertThat(dev.rxDropped.get()).as("pairs 1 and 2 dropped theirs").isPositive();
            assertThat(delivered + dev.rxDropped.get()).isEqualTo(30);
            assertThat(h.queues.get(2).getBuf()).isNull();
            assertThat(h.queues.get(4).getBuf()).isNull();
        }
    }

    /** A backend that records what the guest transmits. */
    static final class Recorder extends Wire {
        final java.util.List<Long> sent = new java.util.concurrent.CopyOnWriteArrayList<>();

        @Override
        public void transmit(MemorySegment buffer, long offset, long length) {
            sent.add(length);
        }
    }

    @Test
    void framesAtEveryEdgeOfTheirSize() throws Exception {
        Recorder wire = new Recorder();
        NetDevice dev = new NetDevice(wire, MAC, 1, 1500);
        try (DeviceHarness h = new DeviceHarness(dev, FEATURES | Feature.NET_MTU.mask())) {
            // transmit: 14..65536 bytes of frame after the header go out; 13 and 65537 do not
            long tx = h.alloc.allocate(12 + 65537, 8);
            for (int len : new int[] {13, 14, 65536, 65537}) {
                h.roundTrip(1, new Scatterlist().addReadable(tx, 12 + len));
            }
            assertThat(wire.sent).containsExactly(14L, 65536L);
            // receive with MTU 1500 negotiated: 14..1514 bytes pass, 13 and 1515 are dropped
            for (int len : new int[] {13, 14, 1514, 1515}) {
                byte[] f = new byte[len];
                if (len >= 6) {
                    System.arraycopy(MAC, 0, f, 0, 6);
                }
                wire.toGuest.accept(f);
            }
            assertThat(dev.rxDropped.get()).isEqualTo(2);
            // a receive buffer exactly header + frame holds it; one byte less and the frame is dropped
            DriverQueue<Object> rx = h.queues.get(0);
            long exact = h.alloc.allocate(12 + 14, 8);
            rx.addInBuf(exact, 12 + 14, "first of the two");
            rx.kick();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            Object got = null;
            while (got == null && System.nanoTime() < deadline) {
                got = rx.getBuf();
            }
            assertThat(got).isEqualTo("first of the two");
            assertThat(rx.lastLength()).isEqualTo(26);
            rx.addInBuf(h.alloc.allocate(12 + 1513, 8), 12 + 1513, "too small for 1514");
            rx.kick();
            deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while (dev.rxDropped.get() < 3 && System.nanoTime() < deadline) {
                Thread.sleep(1);
            }
            assertThat(dev.rxDropped.get()).as("1514 bytes do not fit 1513").isEqualTo(3);
        }
    }

    @Test
    void aMergeableBufferOfExactlyTheHeaderIsAcceptable() throws Exception {
        Wire wire = new Wire();
        NetDevice dev = new NetDevice(wire, MAC, 1);
        try (DeviceHarness h = new DeviceHarness(dev, FEATURES | Feature.NET_MRG_RXBUF.mask())) {
            DriverQueue<Object> rx = h.queues.get(0);
            long a = h.alloc.allocate(12, 8);
            long b = h.alloc.allocate(100, 8);
            rx.addInBuf(a, 12, "header only");
            rx.addInBuf(b, 100, "frame");
            rx.kick();
            wire.toGuest.accept(frameTo(MAC));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            Object first = null;
            while (first == null && System.nanoTime() < deadline) {
                first = rx.getBuf();
            }
            assertThat(first).isEqualTo("header only");
            assertThat(rx.lastLength()).isEqualTo(12);
            assertThat(h.memory.readU16(a + 10)).as("num_buffers").isEqualTo((short) 2);
            assertThat(h.needsReset.get()).isNull();
        }
    }

    @Test
    void controlCommandsWithoutAnAckByteOrLongerThanAnyCommandAreRefused() throws Exception {
        Wire wire = new Wire();
        NetDevice dev = new NetDevice(wire, MAC, 1);
        try (DeviceHarness h = new DeviceHarness(dev, FEATURES)) {
            long buf = h.alloc.allocate(1024, 8);
            h.memory.write(buf, new byte[] {0, 0, 1}, 0, 3);
            assertThat(h.roundTrip(2, new Scatterlist().addReadable(buf, 3))).as("no ack byte: nothing written").isZero();
            assertThat(h.roundTrip(2, new Scatterlist().addReadable(buf, 3).addWritable(buf + 512, 1))).isEqualTo(1);
            h.memory.write(buf, new byte[] {1, 0}, 0, 2);
            h.roundTrip(2, new Scatterlist().addReadable(buf, 900).addWritable(buf + 1000, 1));
            assertThat(h.memory.slice(buf + 1000, 1).get(ValueLayout.JAVA_BYTE, 0)).as("longer than any MAC table")
                    .isEqualTo((byte) Net.ERR);
        }
    }

    @Test
    void withTwoPairsTheSecondPairsFramesReachItsOwnQueue() throws Exception {
        Wire wire = new Wire();
        NetDevice dev = new NetDevice(wire, MAC, 2);
        try (DeviceHarness h = new DeviceHarness(dev, FEATURES | Feature.NET_MQ.mask())) {
            long cmd = h.alloc.allocate(8, 8);
            h.memory.write(cmd, new byte[] {4, 0, 2, 0}, 0, 4);
            h.roundTrip(4, new Scatterlist().addReadable(cmd, 4).addWritable(cmd + 4, 1));
            DriverQueue<Object> rx1 = h.queues.get(2);
            rx1.addInBuf(h.alloc.allocate(2048, 8), 2048, "pair 1");
            rx1.kick();
            long dst = 0x5254_0001_0203L;
            for (int src = 0; src < 64; src++) {
                byte[] f = frameTo(MAC);
                f[6] = 0x52;
                f[7] = 0x54;
                f[8] = 0;
                f[9] = 1;
                f[10] = 2;
                f[11] = (byte) src;
                if (Math.floorMod(dst * 31 + (0x5254_0001_0200L | src), 2L) == 1) {
                    wire.toGuest.accept(f);
                    break;
                }
            }
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            Object got = null;
            while (got == null && System.nanoTime() < deadline) {
                got = rx1.getBuf();
            }
            assertThat(got).isEqualTo("pair 1");
        }
    }

    @Test
    void aClosedFrameQueueCanNoLongerBeTouched() {
        FrameRing ring = new FrameRing(2, 64);
        MemorySegment slots = ring.slots();
        ring.close();
        assertThatThrownBy(() -> slots.get(ValueLayout.JAVA_BYTE, 0)).isInstanceOf(IllegalStateException.class);
    }

    @Test
    void closingWhileSendersDeliverFramesFreesTheQueuesWithoutFailingAnySender() throws Exception {
        for (int round = 0; round < 20; round++) {
            Wire wire = new Wire();
            NetDevice dev = new NetDevice(wire, MAC, 1);
            DeviceHarness h = new DeviceHarness(dev, FEATURES);
            java.util.concurrent.atomic.AtomicReference<Throwable> failed = new java.util.concurrent.atomic.AtomicReference<>();
            java.util.concurrent.CountDownLatch started = new java.util.concurrent.CountDownLatch(2);
            var receiver = wire.receiver; // what a sender holds after the port has gone
            List<Thread> senders = new java.util.ArrayList<>();
            for (int t = 0; t < 2; t++) {
                senders.add(Thread.ofPlatform().start(() -> {
                    MemorySegment f = MemorySegment.ofArray(frameTo(MAC));
                    started.countDown();
                    try {
                        for (int i = 0; i < 20_000; i++) {
                            receiver.receive(f, 60);
                        }
                    } catch (Throwable e) {
                        failed.set(e);
                    }
                }));
            }
            started.await();
            dev.close(); // while active: some senders are inside the frame queue when it is freed
            for (Thread t : senders) {
                t.join(10_000);
            }
            h.close();
            assertThat(failed.get()).as("round %d", round).isNull();
        }
    }
}
