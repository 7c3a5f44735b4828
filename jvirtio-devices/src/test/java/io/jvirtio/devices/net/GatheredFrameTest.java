package io.jvirtio.devices.net;

import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.DeviceHarness;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A frame over several transmit buffers — a Linux guest's TSO segment: its headers in one buffer, its data in
 * pages — crosses the switch to a NIC that takes it from where it lies in the sending guest's memory, copied once,
 * into the receiving driver's buffers; what the switch must flood or finish is gathered into a copy first, as
 * before, and arrives the same.
 */
class GatheredFrameTest {
    static final long BASE = Feature.maskOf(Feature.VERSION_1, Feature.NET_MAC);
    static final long SENDS = BASE | Feature.maskOf(Feature.NET_CSUM, Feature.NET_HOST_TSO4);
    static final long TAKES = BASE | Feature.maskOf(Feature.NET_GUEST_CSUM, Feature.NET_GUEST_TSO4);

    final List<DeviceHarness> harnesses = new ArrayList<>();

    @AfterEach
    void tearDown() {
        harnesses.forEach(DeviceHarness::close);
    }

    static byte[] mac(int n) {
        return new byte[] {0x52, 0x54, 0, 7, 7, (byte) n};
    }

    DeviceHarness nic(VirtualSwitch sw, int n, long features) throws Exception {
        DeviceHarness h = new DeviceHarness(new NetDevice(sw.offloadPort(), mac(n), 1), features);
        harnesses.add(h);
        return h;
    }

    /** A 20,000-byte TCP segment from NIC 1 to {@code dst}, behind a header asking TSO and a partial checksum. */
    static byte[] segment(byte[] dst) {
        byte[] p = SoftwareOffloadTest.packet(false, true, Offloads.GSO_TCPV4, 1448, 0x18, 77, 1,
                SoftwareOffloadTest.payload(20_000));
        System.arraycopy(dst, 0, p, 12, 6);
        System.arraycopy(mac(1), 0, p, 18, 6);
        return p;
    }

    /** {@code p} sent by {@code h}'s driver as Linux sends a segment: header and frame headers, then two pages. */
    static void sendOverThreeBuffers(DeviceHarness h, byte[] p) throws Exception {
        int first = 12 + 14 + 20 + 32;
        int second = 4096;
        long a = h.alloc.allocate(first, 8);
        long b = h.alloc.allocate(second, 8);
        long c = h.alloc.allocate(p.length - first - second, 8);
        h.memory.write(a, p, 0, first);
        h.memory.write(b, p, first, second);
        h.memory.write(c, p, first + second, p.length - first - second);
        h.roundTrip(1, new Scatterlist().addReadable(a, first).addReadable(b, second)
                .addReadable(c, p.length - first - second));
    }

    /** Makes the switch learn where NIC {@code n} is: its driver sends a small broadcast. */
    static void announce(DeviceHarness h, int n) throws Exception {
        byte[] f = new byte[12 + 60];
        Arrays.fill(f, 12, 18, (byte) 0xff);
        System.arraycopy(mac(n), 0, f, 18, 6);
        long buf = h.alloc.allocate(f.length, 8);
        h.memory.write(buf, f, 0, f.length);
        h.roundTrip(1, new Scatterlist().addReadable(buf, f.length));
    }

    /** Offers {@code n} receive buffers of 64 KiB and more to {@code h}'s driver before anything is sent. */
    static void offerBuffers(DeviceHarness h, int n) {
        io.jvirtio.core.queue.DriverQueue<Object> rx = h.queues.get(0);
        int size = 12 + 65550;
        for (int i = 0; i < n; i++) {
            long buf = h.alloc.allocate(size, 8);
            rx.addInBuf(buf, size, buf);
        }
        rx.kick();
    }

    /** What reached {@code h}'s driver in the buffers offered, until none came for {@code quietMs}. */
    static List<byte[]> collected(DeviceHarness h, long quietMs) throws Exception {
        io.jvirtio.core.queue.DriverQueue<Object> rx = h.queues.get(0);
        List<byte[]> frames = new ArrayList<>();
        long deadline = System.nanoTime() + quietMs * 1_000_000L;
        while (System.nanoTime() < deadline) {
            Object token = rx.getBuf();
            if (token == null) {
                Thread.onSpinWait();
                continue;
            }
            byte[] got = new byte[rx.lastLength()];
            h.memory.read((Long) token, got, 0, got.length);
            frames.add(got);
            deadline = System.nanoTime() + quietMs * 1_000_000L;
        }
        return frames;
    }

    @Test
    void aSegmentOverSeveralBuffersGoesToAKnownNicFromWhereItLies() throws Exception {
        VirtualSwitch sw = new VirtualSwitch();
        DeviceHarness sender = nic(sw, 1, SENDS);
        DeviceHarness receiver = nic(sw, 2, TAKES);
        announce(receiver, 2);
        offerBuffers(receiver, 2);
        byte[] p = segment(mac(2));
        sendOverThreeBuffers(sender, p);
        List<byte[]> got = collected(receiver, 300);
        assertThat(got).as("one frame, whole: the driver took GUEST_TSO4").hasSize(1);
        byte[] want = p.clone();
        want[10] = 1; // num_buffers, the receiving NIC's to set
        assertThat(got.getFirst()).isEqualTo(want);
        assertThat(sw.gathered()).as("handed on from the sender's buffers, not gathered into a copy").isEqualTo(1);
    }

    @Test
    @io.jvirtio.core.spec.Conformance("net-dev-7")
    void aGatheredFrameLargerThanTheBuffersOfferedIsDroppedAndCountedNeverTruncated() throws Exception {
        VirtualSwitch sw = new VirtualSwitch();
        DeviceHarness sender = nic(sw, 1, SENDS);
        NetDevice dev = new NetDevice(sw.offloadPort(), mac(2), 1);
        DeviceHarness receiver = new DeviceHarness(dev, TAKES);
        harnesses.add(receiver);
        announce(receiver, 2);
        offerBuffers(receiver, 1);
        byte[] p = segment(mac(2));
        sendOverThreeBuffers(sender, p);
        assertThat(collected(receiver, 300)).hasSize(1);
        assertThat(dev.rxFrames()).isEqualTo(1);
        assertThat(dev.rxDropped.get()).isZero();
        io.jvirtio.core.queue.DriverQueue<Object> rx = receiver.queues.get(0);
        long small = receiver.alloc.allocate(4096, 8);
        receiver.memory.write(small, new byte[4096], 0, 4096);
        rx.addInBuf(small, 4096, small); // no MRG_RXBUF: a 20,000-byte segment cannot go into it
        rx.kick();
        sendOverThreeBuffers(sender, p);
        assertThat(collected(receiver, 300)).as("nothing, not a truncated frame").isEmpty();
        assertThat(dev.rxDropped.get()).isEqualTo(1);
        assertThat(dev.rxFrames()).isEqualTo(1);
        assertThat(sw.gathered()).as("both handed on from the sender's buffers").isEqualTo(2);
        byte[] after = new byte[4096];
        receiver.memory.read(small, after, 0, 4096);
        assertThat(after).containsOnly(0);
    }

    @Test
    void whatTheSwitchMustFinishIsGatheredIntoACopyAndCut() throws Exception {
        VirtualSwitch sw = new VirtualSwitch();
        DeviceHarness sender = nic(sw, 1, SENDS);
        DeviceHarness receiver = nic(sw, 2, BASE); // no GUEST_TSO4: the switch cuts the segment
        announce(receiver, 2);
        offerBuffers(receiver, 20);
        sendOverThreeBuffers(sender, segment(mac(2)));
        List<byte[]> got = collected(receiver, 300);
        assertThat(got).as("cut into frames of the MSS").hasSize(14);
        assertThat(sw.gathered()).isZero();
        assertThat(sw.finished()).isEqualTo(1);
    }

    @Test
    void aSegmentToAnUnknownAddressIsFloodedFromACopyAndArrivesWhole() throws Exception {
        VirtualSwitch sw = new VirtualSwitch();
        DeviceHarness sender = nic(sw, 1, SENDS);
        DeviceHarness receiver = nic(sw, 2, TAKES);
        offerBuffers(receiver, 2);
        byte[] p = segment(new byte[] {0x02, 0, 0, 0, 0, 0x63}); // nobody's
        sendOverThreeBuffers(sender, p);
        List<byte[]> got = collected(receiver, 300);
        byte[] want = p.clone();
        want[10] = 1;
        assertThat(got).hasSize(1);
        assertThat(got.getFirst()).isEqualTo(want);
        assertThat(sw.gathered()).isZero();
        assertThat(sw.flooded()).isGreaterThanOrEqualTo(1);
    }
}
