package io.jvirtio.devices.net;

import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.DeviceHarness;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Offloads between guests on the switch: a NIC on an offload port sends a 20,000-byte TCP segment asking for its
 * checksum; a NIC whose driver took GUEST_TSO4 gets it whole, one that did not gets it cut into frames of the
 * MSS with their checksums done, and a plain port gets those frames without a header.
 */
class SwitchOffloadTest {
    static final long BASE = Feature.maskOf(Feature.VERSION_1, Feature.NET_MAC);
    final List<DeviceHarness> harnesses = new ArrayList<>();

    @AfterEach
    void tearDown() {
        harnesses.forEach(DeviceHarness::close);
    }

    DeviceHarness nic(VirtualSwitch sw, int n, long features) throws Exception {
        DeviceHarness h = new DeviceHarness(new NetDevice(sw.offloadPort(), new byte[] {0x52, 0x54, 0, 7, 7, (byte) n}, 1), features);
        harnesses.add(h);
        return h;
    }

    /** Frames reaching {@code h}'s driver until none came for {@code quietMs}. */
    static List<byte[]> received(DeviceHarness h, int buffers, long quietMs) throws Exception {
        DriverQueue<Object> rx = h.queues.get(0);
        int size = 12 + 65550;
        for (int i = 0; i < buffers; i++) {
            long buf = h.alloc.allocate(size, 8);
            rx.addInBuf(buf, size, buf);
        }
        rx.kick();
        List<byte[]> frames = new ArrayList<>();
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(quietMs);
        while (System.nanoTime() < deadline) {
            Object token = rx.getBuf();
            if (token == null) {
                Thread.sleep(1);
                continue;
            }
            byte[] got = new byte[rx.lastLength()];
            h.memory.read((Long) token, got, 0, got.length);
            frames.add(got);
            deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(quietMs);
        }
        return frames;
    }

    @Test
    @io.jvirtio.core.spec.Conformance("net-dev-9")
    void aSegmentGoesWholeToADriverThatTookTsoAndCutToOneThatDidNot() throws Exception {
        VirtualSwitch sw = new VirtualSwitch();
        DeviceHarness sender = nic(sw, 1, BASE | Feature.maskOf(Feature.NET_CSUM, Feature.NET_HOST_TSO4));
        DeviceHarness whole = nic(sw, 2, BASE | Feature.maskOf(Feature.NET_GUEST_CSUM, Feature.NET_GUEST_TSO4));
        DeviceHarness cut = nic(sw, 3, BASE);
        List<byte[]> plain = new CopyOnWriteArrayList<>();
        NetBackend port = sw.port();
        port.connect((b, at, n) -> plain.add(b.asSlice(at, n).toArray(ValueLayout.JAVA_BYTE)));

        byte[] data = SoftwareOffloadTest.payload(20_000);
        byte[] p = SoftwareOffloadTest.packet(false, true, Offloads.GSO_TCPV4, 1448, 0x18, 77, 1, data);
        byte[] dst = {0x02, 0, 0, 0, 0, 0x63}; // nobody's: flooded to every port
        System.arraycopy(dst, 0, p, 12, 6);
        System.arraycopy(new byte[] {0x52, 0x54, 0, 7, 7, 1}, 0, p, 18, 6);
        long tx = sender.alloc.allocate(p.length, 8);
        sender.memory.write(tx, p, 0, p.length);
        sender.roundTrip(1, new Scatterlist().addReadable(tx, p.length));

        List<byte[]> w = received(whole, 4, 300);
        assertThat(w).as("one frame: the driver took GUEST_TSO4").hasSize(1);
        assertThat(w.getFirst()).hasSize(p.length);
        assertThat(w.getFirst()[1]).as("gso_type TCPV4").isEqualTo((byte) Offloads.GSO_TCPV4);

        List<byte[]> c = received(cut, 20, 300);
        assertThat(c).as("cut into frames of the MSS").hasSize(14);
        ByteArrayOutputStream joined = new ByteArrayOutputStream();
        for (byte[] f : c) {
            assertThat(java.util.Arrays.copyOf(f, 10)).as("a header that asks nothing").containsOnly(0);
            byte[] frame = java.util.Arrays.copyOfRange(f, 12, f.length);
            assertThat(frame.length).isLessThanOrEqualTo(14 + 20 + 32 + 1448);
            SoftwareOffloadTest.assertTransportChecksum(frame, false, 6);
            joined.write(frame, 14 + 20 + 32, frame.length - (14 + 20 + 32));
        }
        assertThat(joined.toByteArray()).isEqualTo(data);

        assertThat(plain).as("the plain port: the same frames, no header").hasSize(14);
        for (byte[] f : plain) {
            assertThat(MemorySegment.ofArray(f).get(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(java.nio.ByteOrder.BIG_ENDIAN), 12))
                    .as("EtherType right after the addresses").isEqualTo((short) 0x0800);
            SoftwareOffloadTest.assertTransportChecksum(f, false, 6);
        }
        assertThat(sw.finished()).as("finished for the two receivers that needed it").isEqualTo(2);
        assertThat(sw.refused()).isZero();
    }
}
