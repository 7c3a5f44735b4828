package io.jvirtio.devices.net;

import io.jvirtio.core.spec.Net;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.DeviceHarness;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

import static org.assertj.core.api.Assertions.assertThat;

/** virtio-net device rules with hand-built buffers: headers, mergeable buffers, control commands. */
class NetDeviceTest {
    static final byte[] MAC = {0x52, 0x54, 0, 1, 2, 3};
    static final long BASE = Feature.maskOf(Feature.VERSION_1, Feature.NET_MAC, Feature.NET_CTRL_VQ, Feature.NET_CTRL_RX);

    /** A backend the test drives directly. */
    static final class Wire implements NetBackend {
        volatile Receiver receiver;
        final List<byte[]> fromGuest = new CopyOnWriteArrayList<>();
        final Consumer<byte[]> toGuest = f -> receiver.receive(java.lang.foreign.MemorySegment.ofArray(f), f.length);

        public void transmit(java.lang.foreign.MemorySegment buffer, long offset, long length) {
            fromGuest.add(buffer.asSlice(offset, length).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE));
        }

        public void connect(Receiver r) {
            receiver = r;
        }
    }

    DeviceHarness h;
    Wire wire = new Wire();
    NetDevice dev;

    void start(long features) throws Exception {
        dev = new NetDevice(wire, MAC, 1);
        h = new DeviceHarness(dev, features);
    }

    @AfterEach
    void tearDown() {
        if (h != null) {
            h.close();
        }
    }

    static byte[] frame(int size) {
        byte[] f = new byte[size];
        System.arraycopy(MAC, 0, f, 0, 6);
        for (int i = 12; i < size; i++) {
            f[i] = (byte) i;
        }
        return f;
    }

    /** Waits for the next used rx buffer; returns its length. */
    int nextRx() throws Exception {
        DriverQueue<Object> rx = h.queues.get(0);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (System.nanoTime() < deadline) {
            if (rx.getBuf() != null) {
                return rx.lastLength();
            }
            Thread.sleep(1);
        }
        throw new AssertionError("no receive completion");
    }

    @Test
    void transmitStripsTheHeaderAndSendsTheFrame() throws Exception {
        start(BASE);
        long buf = h.alloc.allocate(12 + 100, 8);
        byte[] f = frame(100);
        h.memory.write(buf + 12, f, 0, 100);
        int len = h.roundTrip(1, new Scatterlist().addReadable(buf, 12).addReadable(buf + 12, 100));
        assertThat(len).isZero();
        assertThat(wire.fromGuest).hasSize(1);
        assertThat(wire.fromGuest.getFirst()).isEqualTo(f);
    }

    @Test
    @io.jvirtio.core.spec.Conformance({"net-dev-7", "net-dev-8"})
    void mergeableFrameSpansBuffersAndCountsThem() throws Exception {
        start(BASE | Feature.NET_MRG_RXBUF.mask());
        long bufs = h.alloc.allocate(4 * 512, 8);
        DriverQueue<Object> rx = h.queues.get(0);
        for (int i = 0; i < 4; i++) {
            rx.addInBuf(bufs + 512L * i, 512, i);
        }
        rx.kick();
        wire.toGuest.accept(frame(1200)); // 12 + 1200 bytes: three 512-byte buffers
        int first = nextRx();
        int second = nextRx();
        int third = nextRx();
        assertThat(first + second + third).isEqualTo(1212);
        assertThat(first).isEqualTo(512);
        assertThat(h.memory.readU16(bufs + 10)).as("num_buffers").isEqualTo((short) 3);
        byte[] got = new byte[1212];
        h.memory.read(bufs, got, 0, 1212);
        assertThat(java.util.Arrays.copyOfRange(got, 12, 1212)).isEqualTo(frame(1200));
    }

    @Test
    void mergeableReceiveBufferSmallerThanTheHeaderNeedsResetAndLeaksNothing() throws Exception {
        start(BASE | Feature.NET_MRG_RXBUF.mask());
        DriverQueue<Object> rx = h.queues.get(0);
        long ok = h.alloc.allocate(2048, 8);
        rx.addInBuf(ok, 2048, "first");
        rx.kick();
        byte[] earlier = frame(1500);
        java.util.Arrays.fill(earlier, 14, 1500, (byte) 0x77); // what could leak into a later buffer
        wire.toGuest.accept(earlier);
        assertThat(nextRx()).isEqualTo(1512);

        long tiny = h.alloc.allocate(16, 8);
        long next = h.alloc.allocate(2048, 8);
        h.memory.write(next, new byte[2048], 0, 2048);
        rx.addInBuf(tiny, 4, "tiny");
        rx.addInBuf(next, 2048, "next");
        rx.kick();
        wire.toGuest.accept(frame(100));
        assertThat(awaitNeedsReset()).contains("MRG_RXBUF").contains("4 writable bytes");
        assertThat(rx.getBuf()).as("nothing was used").isNull();
        byte[] after = new byte[2048];
        h.memory.read(next, after, 0, 2048);
        assertThat(after).as("no byte of an earlier frame reached the next buffer").containsOnly(0);
    }

    /** The device's NEEDS_RESET reason, once it gives one (or null after 5 s). */
    String awaitNeedsReset() throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (h.needsReset.get() == null && System.nanoTime() < deadline) {
            Thread.sleep(1);
        }
        return h.needsReset.get();
    }

    @Test
    void aFurtherMergeableBufferSmallerThanTheHeaderNeedsResetToo() throws Exception {
        start(BASE | Feature.NET_MRG_RXBUF.mask());
        DriverQueue<Object> rx = h.queues.get(0);
        long first = h.alloc.allocate(512, 8);
        long tiny = h.alloc.allocate(16, 8);
        h.memory.write(first, new byte[512], 0, 512);
        rx.addInBuf(first, 512, "first");
        rx.addInBuf(tiny, 4, "tiny"); // the second buffer a 1000-byte frame needs
        rx.kick();
        wire.toGuest.accept(frame(1000));
        assertThat(awaitNeedsReset()).contains("MRG_RXBUF").contains("4 writable bytes");
        assertThat(rx.getBuf()).as("nothing was used").isNull();
        byte[] after = new byte[512];
        h.memory.read(first, after, 0, 512);
        assertThat(after).as("nothing written into the first buffer either").containsOnly(0);
    }

    @Test
    @io.jvirtio.core.spec.Conformance("net-dev-7")
    void withoutMergeableBuffersAFrameTooBigIsDroppedNotTruncated() throws Exception {
        start(BASE);
        long bufs = h.alloc.allocate(2 * 2048, 8);
        DriverQueue<Object> rx = h.queues.get(0);
        rx.addInBuf(bufs, 512, 0);
        rx.kick();
        wire.toGuest.accept(frame(1000));
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (dev.rxDropped.get() == 0 && System.nanoTime() < deadline) {
            Thread.sleep(1);
        }
        assertThat(dev.rxDropped.get()).isEqualTo(1);
        assertThat(rx.getBuf()).as("the small buffer was given back, not used").isNull();
        wire.toGuest.accept(frame(400));
        assertThat(nextRx()).isEqualTo(412);
        assertThat(h.memory.readU16(bufs + 10)).as("num_buffers is 1 without MRG_RXBUF too").isEqualTo((short) 1);
    }

    int control(byte[] cmd) throws Exception {
        long buf = h.alloc.allocate(cmd.length + 1, 8);
        h.memory.write(buf, cmd, 0, cmd.length);
        h.roundTrip(2, new Scatterlist().addReadable(buf, cmd.length).addWritable(buf + cmd.length, 1));
        byte[] ack = new byte[1];
        h.memory.read(buf + cmd.length, ack, 0, 1);
        return ack[0];
    }

    @Test
    void hostileControlCommandsGetErr() throws Exception {
        start(BASE);
        assertThat(control(new byte[] {0, 0, 1})).as("PROMISC on").isEqualTo(Net.OK);
        assertThat(control(new byte[] {0, 7, 1})).as("unknown RX command").isEqualTo(Net.ERR);
        assertThat(control(new byte[] {9, 0})).as("unknown class").isEqualTo(Net.ERR);
        assertThat(control(new byte[] {4, 0, 2, 0})).as("MQ not negotiated").isEqualTo(Net.ERR);
        // MAC table claiming 0x7fffffff unicast entries in 10 bytes
        assertThat(control(new byte[] {1, 0, -1, -1, -1, 0x7f, 0, 0, 0, 0})).isEqualTo(Net.ERR);
        // well-formed: one unicast, zero multicast
        assertThat(control(new byte[] {1, 0, 1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0})).isEqualTo(Net.OK);
        assertThat(control(new byte[] {1, 1, 1, 2, 3, 4, 5, 6})).as("CTRL_MAC_ADDR not negotiated").isEqualTo(Net.ERR);
        assertThat(h.needsReset.get()).isNull();
    }

    @Test
    void queuePairsOutOfRangeAreRefused() throws Exception {
        dev = new NetDevice(wire, MAC, 2);
        h = new DeviceHarness(dev, BASE | Feature.NET_MQ.mask());
        // with MQ and 2 pairs the control queue is queue 4
        long buf = h.alloc.allocate(8, 8);
        for (int[] c : new int[][] {{0, Net.ERR}, {3, Net.ERR}, {2, Net.OK}, {1, Net.OK}}) {
            h.memory.write(buf, new byte[] {4, 0, (byte) c[0], 0}, 0, 4);
            h.roundTrip(4, new Scatterlist().addReadable(buf, 4).addWritable(buf + 4, 1));
            byte[] ack = new byte[1];
            h.memory.read(buf + 4, ack, 0, 1);
            assertThat(ack[0]).as("VQ_PAIRS_SET %d", c[0]).isEqualTo((byte) c[1]);
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("net-dev-16")
    void framesWaitingForAPairThatVqPairsSetRemovesAreDroppedBeforeTheAck() throws Exception {
        dev = new NetDevice(wire, MAC, 2);
        h = new DeviceHarness(dev, BASE | Feature.NET_MQ.mask());
        long cmd = h.alloc.allocate(8, 8);
        h.memory.write(cmd, new byte[] {4, 0, 2, 0}, 0, 4);
        h.roundTrip(4, new Scatterlist().addReadable(cmd, 4).addWritable(cmd + 4, 1)); // two pairs
        // frames for pair 1 (no receive buffers posted there: they wait in its queue)
        int waiting = 0;
        for (int src = 0; src < 64 && waiting < 5; src++) {
            byte[] f = frame(60);
            f[11] = (byte) src;
            long dst = 0x5254_0001_0203L;
            long s = 0x5254_0001_0200L | src;
            if (Math.floorMod(dst * 31 + s, 2L) == 1) {
                f[6] = 0x52; f[7] = 0x54; f[8] = 0; f[9] = 1; f[10] = 2;
                wire.toGuest.accept(f);
                waiting++;
            }
        }
        assertThat(waiting).isEqualTo(5);
        assertThat(dev.rxDropped.get()).isZero();
        h.memory.write(cmd, new byte[] {4, 0, 1, 0}, 0, 4);
        h.roundTrip(4, new Scatterlist().addReadable(cmd, 4).addWritable(cmd + 4, 1)); // back to one pair
        byte[] ack = new byte[1];
        h.memory.read(cmd + 4, ack, 0, 1);
        assertThat(ack[0]).isEqualTo((byte) Net.OK);
        assertThat(dev.rxDropped.get()).as("dropped by pair 1's own thread before the ack was used").isEqualTo(5);
    }

    @Test
    @io.jvirtio.core.spec.Conformance({"net-dev-1", "net-dev-2"})
    void configurationFieldsHoldTheirLimits() {
        NetDevice four = new NetDevice(wire, MAC, 4, 9000);
        assertThat(four.config().load(Net.CFG_MAX_VIRTQUEUE_PAIRS, 2)).isEqualTo(4);
        assertThat(four.config().load(Net.CFG_MTU, 2)).isEqualTo(9000);
        assertThat(Feature.NET_MQ.isSet(four.deviceFeatures())).isTrue();
        NetDevice one = new NetDevice(wire, MAC, 1);
        assertThat(Feature.NET_MQ.isSet(one.deviceFeatures())).as("MQ only with more than one pair").isFalse();
        assertThat(one.config().load(Net.CFG_MTU, 2)).isEqualTo(1500);
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> new NetDevice(wire, MAC, 1, 67))
                .isInstanceOf(IllegalArgumentException.class);
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> new NetDevice(wire, MAC, 65, 1500))
                .isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    @io.jvirtio.core.spec.Conformance({"net-dev-6", "net-dev-9"})
    void headersAreZeroOnReceiveAndIgnoredOnTransmit() throws Exception {
        start(BASE);
        long buf = h.alloc.allocate(12 + 100, 8);
        h.memory.write(buf, new byte[] {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1}, 0, 12); // flags, gso, hdr_len...
        byte[] f = frame(100);
        h.memory.write(buf + 12, f, 0, 100);
        h.roundTrip(1, new Scatterlist().addReadable(buf, 112));
        assertThat(wire.fromGuest).hasSize(1);
        assertThat(wire.fromGuest.getFirst()).as("sent whole whatever the header said").isEqualTo(f);

        long rx = h.alloc.allocate(2048, 8);
        h.memory.slice(rx, 12).fill((byte) 0x77);
        h.queues.get(0).addInBuf(rx, 2048, "rx");
        h.queues.get(0).kick();
        wire.toGuest.accept(frame(80));
        assertThat(nextRx()).isEqualTo(92);
        byte[] hdr = new byte[10];
        h.memory.read(rx, hdr, 0, 10);
        assertThat(hdr).as("flags 0, gso_type NONE, no hdr_len/gso_size/csum fields").containsOnly(0);
    }

    @Test
    @io.jvirtio.core.spec.Conformance({"net-dev-11", "net-dev-15"})
    void resetEmptiesTheFilterTableAndReturnsToOnePair() throws Exception {
        dev = new NetDevice(wire, MAC, 2);
        long features = BASE | Feature.NET_MQ.mask();
        h = new DeviceHarness(dev, features);
        long cmd = h.alloc.allocate(32, 8);
        // two pairs; promiscuous off; a filter table with one unicast address
        for (byte[] c : new byte[][] {{4, 0, 2, 0}, {0, 0, 0}, {1, 0, 1, 0, 0, 0, 0x52, 0x54, 9, 9, 9, 9, 0, 0, 0, 0}}) {
            h.memory.write(cmd, c, 0, c.length);
            h.roundTrip(4, new Scatterlist().addReadable(cmd, c.length).addWritable(cmd + 31, 1));
        }
        h.close();
        h = new DeviceHarness(dev, features); // after the reset, active again
        h.memory.write(cmd, new byte[] {0, 0, 0}, 0, 3);
        h.roundTrip(4, new Scatterlist().addReadable(cmd, 3).addWritable(cmd + 31, 1)); // promiscuous off again
        byte[] toFiltered = frame(60);
        System.arraycopy(new byte[] {0x52, 0x54, 9, 9, 9, 9}, 0, toFiltered, 0, 6);
        wire.toGuest.accept(toFiltered);
        assertThat(dev.rxFiltered.get()).as("the table was emptied by the reset").isEqualTo(1);
        // every frame goes to receiveq1 (pair 0), whatever its addresses
        for (int i = 0; i < 8; i++) {
            h.queues.get(0).addInBuf(h.alloc.allocate(2048, 8), 2048, "q0-" + i);
        }
        h.queues.get(2).addInBuf(h.alloc.allocate(2048, 8), 2048, "q2");
        h.queues.get(0).kick();
        h.queues.get(2).kick();
        for (int src = 0; src < 8; src++) {
            byte[] f = frame(60);
            f[11] = (byte) src; // different sources: with two pairs these would spread over both
            wire.toGuest.accept(f);
        }
        for (int i = 0; i < 8; i++) {
            assertThat(nextRx()).as("frame %d arrives on receiveq1", i).isEqualTo(72);
        }
        assertThat(h.queues.get(2).getBuf()).as("pair 1 gets nothing after reset").isNull();
    }

    @Test
    @io.jvirtio.core.spec.Conformance("net-dev-13")
    void macAddrSetUpdatesTheConfigMacBeforeItIsAcknowledged() throws Exception {
        start(BASE | Feature.NET_CTRL_MAC_ADDR.mask());
        byte[] mac = {0x52, 0x54, 0, 7, 7, 7};
        assertThat(control(new byte[] {1, 1, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]})).isEqualTo(Net.OK);
        byte[] cfg = new byte[6];
        dev.config().read(Net.CFG_MAC, cfg, 0, 6);
        assertThat(cfg).isEqualTo(mac);
    }
}
