package io.jvirtio.devices.net;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.DeviceHarness;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A NIC over a backend that carries offloads (a TAP device with its virtio-net header): the header travels
 * both ways, within what the driver negotiated (§5.1.6.2, §5.1.6.4), and the backend hears what that is.
 */
class NetOffloadTest {
    static final byte[] MAC = {0x52, 0x54, 0, 1, 2, 3};
    static final long BASE = Feature.maskOf(Feature.VERSION_1, Feature.NET_MAC);
    static final long ALL = BASE | TapBackend.OFFLOADS | TapBackend.USO;

    /** A backend with the TAP's offloads, driven by the test; frames and headers as bytes. */
    static final class HeaderWire implements NetBackend {
        volatile Receiver receiver;
        volatile long accepted = -1;
        final List<byte[]> fromGuest = new CopyOnWriteArrayList<>();

        public void transmit(MemorySegment buffer, long offset, long length) {
            fromGuest.add(buffer.asSlice(offset, length).toArray(ValueLayout.JAVA_BYTE));
        }

        public void connect(Receiver r) {
            receiver = r;
        }

        @Override
        public long offloads() {
            return TapBackend.OFFLOADS | TapBackend.USO;
        }

        @Override
        public void acceptOffloads(long features) {
            accepted = features;
        }

        void toGuest(byte[] headerAndFrame) {
            receiver.receive(MemorySegment.ofArray(headerAndFrame), headerAndFrame.length);
        }
    }

    final HeaderWire wire = new HeaderWire();
    NetDevice dev;
    DeviceHarness h;

    @AfterEach
    void tearDown() {
        if (h != null) {
            h.close();
        }
    }

    void start(long features) throws Exception {
        dev = new NetDevice(wire, MAC, 1);
        h = new DeviceHarness(dev, features);
    }

    /** A virtio-net header (flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers 0) + frame. */
    static byte[] packet(int flags, int gso, int gsoSize, int frameBytes) {
        byte[] p = new byte[12 + frameBytes];
        MemorySegment s = MemorySegment.ofArray(p);
        s.set(ValueLayout.JAVA_BYTE, 0, (byte) flags);
        s.set(ValueLayout.JAVA_BYTE, 1, (byte) gso);
        s.set(GuestMemory.U16, 2, (short) 54);
        s.set(GuestMemory.U16, 4, (short) gsoSize);
        s.set(GuestMemory.U16, 6, (short) 34);
        s.set(GuestMemory.U16, 8, (short) 16);
        System.arraycopy(MAC, 0, p, 12, 6);
        for (int i = 12 + 12; i < p.length; i++) {
            p[i] = (byte) (i * 7);
        }
        return p;
    }

    byte[] receiveInto(int bufferBytes) throws Exception {
        DriverQueue<Object> rx = h.queues.get(0);
        long buf = h.alloc.allocate(bufferBytes, 8);
        rx.addInBuf(buf, bufferBytes, "rx");
        rx.kick();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (System.nanoTime() < deadline) {
            if (rx.getBuf() != null) {
                byte[] got = new byte[rx.lastLength()];
                h.memory.read(buf, got, 0, got.length);
                return got;
            }
            Thread.sleep(1);
        }
        return null;
    }

    @Test
    void theNicOffersTheBackendsOffloadsAndTellsItWhatTheDriverTook() throws Exception {
        start(BASE | Feature.maskOf(Feature.NET_CSUM, Feature.NET_GUEST_CSUM));
        assertThat(dev.deviceFeatures() & (TapBackend.OFFLOADS | TapBackend.USO)).isEqualTo(TapBackend.OFFLOADS | TapBackend.USO);
        assertThat(wire.accepted).as("the backend hears the driver's choice at DRIVER_OK")
                .isEqualTo(BASE | Feature.maskOf(Feature.NET_CSUM, Feature.NET_GUEST_CSUM));
        assertThat(new NetDevice(new NetDeviceTest.Wire(), MAC, 1).deviceFeatures() & TapBackend.OFFLOADS)
                .as("a backend of plain frames: no offload offered").isZero();
    }

    @Test
    @io.jvirtio.core.spec.Conformance("net-dev-5")
    void aSegmentAndItsPartialChecksumTravelWithTheirHeaderBothWays() throws Exception {
        start(ALL);
        // guest → backend: a 20,000-byte TCPv4 segment asking for a checksum, header and all (num_buffers 0)
        byte[] out = packet(1, 1, 1448, 20_000);
        out[10] = 7; // num_buffers: a receive field, which no backend reads (a receiving NIC writes its own)
        long tx = h.alloc.allocate(out.length, 8);
        h.memory.write(tx, out, 0, out.length);
        h.roundTrip(1, new Scatterlist().addReadable(tx, out.length));
        byte[] sent = wire.fromGuest.getFirst();
        assertThat(sent).as("handed on as it lies, header and all").isEqualTo(out);

        // backend → guest: a 30,000-byte segment (beyond any MTU) arrives with its header; num_buffers 1
        byte[] in = packet(1, 1 | 0x80, 1448, 30_000);
        wire.toGuest(in);
        byte[] got = receiveInto(12 + 30_000);
        in[10] = 1;
        assertThat(got).isEqualTo(in);
    }

    @Test
    @io.jvirtio.core.spec.Conformance({"net-dev-7", "net-dev-8"})
    void headersCheckedApartStillArriveWholeOverMergeableBuffersTheyCross() throws Exception {
        // the header and the Ethernet header are copied, checked and written from that copy; here the first
        // buffer ends inside the Ethernet header, so the copy itself spans two buffers
        start(ALL | Feature.NET_MRG_RXBUF.mask());
        DriverQueue<Object> rx = h.queues.get(0);
        long a = h.alloc.allocate(20, 8);
        long b = h.alloc.allocate(16, 8);
        long c = h.alloc.allocate(512, 8);
        rx.addInBuf(a, 20, "a");
        rx.addInBuf(b, 16, "b");
        rx.addInBuf(c, 512, "c");
        rx.kick();
        byte[] in = packet(1, 1, 1448, 200);
        wire.toGuest(in);
        int[] lengths = new int[3];
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        for (int i = 0; i < 3 && System.nanoTime() < deadline; ) {
            if (rx.getBuf() != null) {
                lengths[i++] = rx.lastLength();
            } else {
                Thread.sleep(1);
            }
        }
        assertThat(lengths).containsExactly(20, 16, 212 - 36);
        byte[] got = new byte[212];
        h.memory.read(a, got, 0, 20);
        h.memory.read(b, got, 20, 16);
        h.memory.read(c, got, 36, 212 - 36);
        in[10] = 3; // num_buffers
        assertThat(got).isEqualTo(in);
    }

    @Test
    @io.jvirtio.core.spec.Conformance("net-dev-9")
    void whatTheDriverDidNotAcceptNeverReachesIt() throws Exception {
        start(BASE); // no GUEST_CSUM, no GUEST_TSO
        wire.toGuest(packet(1, 0, 0, 100));          // a partial checksum
        wire.toGuest(packet(0, 1, 1448, 100));       // a TCPv4 segment
        wire.toGuest(packet(0, 4, 1448, 100));       // a TCPv6 segment
        wire.toGuest(packet(0, 0x80, 0, 100));       // ECN alone is no gso_type
        wire.toGuest(packet(0, 3, 1448, 100));       // UDP: never offered
        assertThat(dev.rxDropped.get()).isEqualTo(5);
        wire.toGuest(packet(2, 0, 0, 100));          // DATA_VALID: delivered, flags cleared (GUEST_CSUM refused)
        byte[] got = receiveInto(2048);
        assertThat(got).hasSize(112);
        assertThat(got[0]).as("flags zero without GUEST_CSUM").isZero();
        assertThat(got[1]).as("gso_type NONE").isZero();
    }

    @Test
    @io.jvirtio.core.spec.Conformance("net-dev-9")
    void whatTheDriverDidNotAcceptIsRefusedAlsoWhenWrittenStraightIntoItsBuffers() throws Exception {
        start(BASE); // no GUEST_CSUM, no GUEST_TSO
        DriverQueue<Object> rx = h.queues.get(0);
        long a = h.alloc.allocate(2048, 8);
        long b = h.alloc.allocate(2048, 8);
        rx.addInBuf(a, 2048, "a");
        rx.addInBuf(b, 2048, "b");
        rx.kick();
        // the receive thread takes the kick, finds nothing to deliver and sleeps: the frames below are then
        // written into the ring on this thread (the direct path), where nothing but the writer checks them
        Thread.sleep(100);
        wire.toGuest(packet(0, 1, 1448, 100));       // a TCPv4 segment
        wire.toGuest(packet(1, 0, 0, 100));          // a partial checksum
        wire.toGuest(packet(2, 0, 0, 100));          // DATA_VALID: delivered, flags cleared
        assertThat(dev.rxDropped.get()).isEqualTo(2);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (rx.getBuf() == null && System.nanoTime() < deadline) {
            Thread.sleep(1);
        }
        assertThat(rx.lastLength()).as("the first buffer holds the third frame").isEqualTo(112);
        byte[] got = new byte[12];
        h.memory.read(a, got, 0, 12);
        assertThat(got[0]).as("flags zero without GUEST_CSUM").isZero();
        assertThat(got[1]).as("gso_type NONE").isZero();
        assertThat(rx.getBuf()).as("the second buffer is still the driver's").isNull();
    }

    @Test
    @io.jvirtio.core.spec.Conformance("net-dev-6")
    void aHeaderTheDriverHadNoRightToWriteIsClearedOrItsFrameDropped() throws Exception {
        start(BASE); // no CSUM: whatever the header says, the backend gets a zero one
        byte[] junk = packet(0xff, 0xff, 0xffff, 100);
        long tx = h.alloc.allocate(junk.length, 8);
        h.memory.write(tx, junk, 0, junk.length);
        h.roundTrip(1, new Scatterlist().addReadable(tx, junk.length));
        byte[] sent = wire.fromGuest.getFirst();
        assertThat(java.util.Arrays.copyOf(sent, 12)).containsOnly(0);
        assertThat(java.util.Arrays.copyOfRange(sent, 12, sent.length)).isEqualTo(java.util.Arrays.copyOfRange(junk, 12, junk.length));
        h.close();

        start(BASE | Feature.maskOf(Feature.NET_CSUM, Feature.NET_HOST_TSO4)); // CSUM and TSO4, not TSO6 or ECN
        for (byte[] p : new byte[][] {packet(1, 4, 1448, 100), packet(1, 1 | 0x80, 1448, 100), packet(1, 3, 1448, 100)}) {
            h.memory.write(tx, p, 0, p.length);
            h.roundTrip(1, new Scatterlist().addReadable(tx, p.length));
        }
        assertThat(dev.txDropped.get()).as("TSO6, ECN and UDP segments the driver may not send").isEqualTo(3);
        byte[] ok = packet(1, 1, 1448, 100);
        h.memory.write(tx, ok, 0, ok.length);
        h.roundTrip(1, new Scatterlist().addReadable(tx, ok.length));
        assertThat(wire.fromGuest.getLast()).isEqualTo(ok);
    }

    @Test
    void segmentationWithoutChecksumOffloadIsNotAConsistentChoice() {
        NetDevice d = new NetDevice(wire, MAC, 1);
        assertThat(d.acceptFeatures(BASE | Feature.NET_HOST_TSO4.mask())).as("HOST_TSO4 needs CSUM").isFalse();
        assertThat(d.acceptFeatures(BASE | Feature.NET_GUEST_TSO6.mask())).as("GUEST_TSO6 needs GUEST_CSUM").isFalse();
        assertThat(d.acceptFeatures(BASE | Feature.maskOf(Feature.NET_GUEST_CSUM, Feature.NET_GUEST_ECN)))
                .as("GUEST_ECN needs GUEST_TSO4 or 6").isFalse();
        assertThat(d.acceptFeatures(BASE | Feature.NET_HOST_USO.mask())).as("HOST_USO needs CSUM").isFalse();
        assertThat(d.acceptFeatures(BASE | Feature.NET_GUEST_USO6.mask())).as("GUEST_USO6 needs GUEST_CSUM").isFalse();
        assertThat(d.acceptFeatures(ALL)).isTrue();
        d.close();
    }

    /** VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET with {@code offloads}; the device's ack. */
    int setGuestOffloads(long offloads) throws Exception {
        long cmd = h.alloc.allocate(16, 8);
        MemorySegment c = MemorySegment.ofArray(new byte[10]);
        c.set(ValueLayout.JAVA_BYTE, 0, (byte) 5);
        c.set(ValueLayout.JAVA_LONG_UNALIGNED, 2, offloads);
        h.memory.write(cmd, c.toArray(ValueLayout.JAVA_BYTE), 0, 10);
        h.roundTrip(2, new Scatterlist().addReadable(cmd, 10).addWritable(cmd + 15, 1));
        byte[] ack = new byte[1];
        h.memory.read(cmd + 15, ack, 0, 1);
        return ack[0];
    }

    @Test
    @io.jvirtio.core.spec.Conformance("net-dev-5")
    void theDriverTurnsReceiveOffloadsOffAndOnWithinWhatItNegotiated() throws Exception {
        long ctrl = Feature.maskOf(Feature.NET_CTRL_VQ, Feature.NET_CTRL_GUEST_OFFLOADS);
        start(ALL | ctrl);
        assertThat(setGuestOffloads(Feature.NET_GUEST_CSUM.mask())).as("segments off, checksums on").isZero();
        assertThat(wire.accepted & Offloads.GUEST_OFFLOADS).as("the backend hears it (TUNSETOFFLOAD)")
                .isEqualTo(Feature.NET_GUEST_CSUM.mask());
        wire.toGuest(packet(0, 1, 1448, 3000));      // a TCPv4 segment: no longer for this driver
        assertThat(dev.rxDropped.get()).isEqualTo(1);
        byte[] in = packet(1, 0, 0, 100);            // a partial checksum still is
        wire.toGuest(in);
        byte[] got = receiveInto(2048);
        assertThat(got[0]).as("NEEDS_CSUM kept").isEqualTo((byte) 1);

        assertThat(setGuestOffloads(Feature.NET_GUEST_UFO.mask() | Feature.NET_GUEST_CSUM.mask()))
                .as("UFO was never negotiated").isEqualTo((byte) 1);
        assertThat(setGuestOffloads(Feature.NET_GUEST_TSO4.mask())).as("TSO4 without the checksum").isEqualTo((byte) 1);
        assertThat(setGuestOffloads(Feature.NET_MAC.mask())).as("not an offload").isEqualTo((byte) 1);
        assertThat(setGuestOffloads(Feature.maskOf(Feature.NET_GUEST_CSUM, Feature.NET_GUEST_TSO4))).isZero();
        wire.toGuest(packet(0, 1, 1448, 3000));
        assertThat(receiveInto(12 + 3000)).as("segments on again").hasSize(12 + 3000);
        h.close();

        start(ALL | Feature.NET_CTRL_VQ.mask()); // without CTRL_GUEST_OFFLOADS the command is refused
        assertThat(setGuestOffloads(Feature.NET_GUEST_CSUM.mask())).isEqualTo((byte) 1);
    }

    /** A UDP segment (gso_type UDP_L4: USO) with a partial checksum, of a frame of {@code etherType}. */
    static byte[] udpSegment(int etherType, int frameBytes) {
        byte[] p = packet(1, Offloads.GSO_UDP_L4, 1000, frameBytes);
        p[12 + 12] = (byte) (etherType >> 8);
        p[12 + 13] = (byte) etherType;
        return p;
    }

    @Test
    @io.jvirtio.core.spec.Conformance("net-dev-9")
    void aUdpSegmentReachesOnlyADriverThatTookUsoForItsIpVersion() throws Exception {
        start(BASE | Feature.maskOf(Feature.NET_GUEST_CSUM, Feature.NET_GUEST_USO4));
        wire.toGuest(udpSegment(Offloads.ETH_P_IPV6, 5000)); // GUEST_USO6 not taken
        wire.toGuest(udpSegment(0x8100, 5000));              // neither IPv4 nor IPv6
        assertThat(dev.rxDropped.get()).isEqualTo(2);
        byte[] v4 = udpSegment(Offloads.ETH_P_IP, 5000);
        wire.toGuest(v4);
        byte[] got = receiveInto(12 + 5000);
        v4[10] = 1; // num_buffers
        assertThat(got).as("an IPv4 UDP segment for a driver with GUEST_USO4, header and all").isEqualTo(v4);
    }

    @Test
    @io.jvirtio.core.spec.Conformance("net-drv-7")
    void aUdpSegmentLeavesTheDriverOnlyWithHostUso() throws Exception {
        start(BASE | Feature.NET_CSUM.mask());
        byte[] p = udpSegment(Offloads.ETH_P_IP, 5000);
        long tx = h.alloc.allocate(p.length, 8);
        h.memory.write(tx, p, 0, p.length);
        h.roundTrip(1, new Scatterlist().addReadable(tx, p.length));
        assertThat(dev.txDropped.get()).as("USO without HOST_USO").isEqualTo(1);
        assertThat(wire.fromGuest).isEmpty();
        h.close();

        start(BASE | Feature.maskOf(Feature.NET_CSUM, Feature.NET_HOST_USO));
        tx = h.alloc.allocate(p.length, 8);
        h.memory.write(tx, p, 0, p.length);
        h.roundTrip(1, new Scatterlist().addReadable(tx, p.length));
        assertThat(wire.fromGuest.getLast()).as("with HOST_USO the backend gets it to cut").isEqualTo(p);
    }
}
