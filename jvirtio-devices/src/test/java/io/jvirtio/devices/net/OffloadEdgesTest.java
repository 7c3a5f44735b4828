package io.jvirtio.devices.net;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.spec.Conformance;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.core.spec.Net;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static io.jvirtio.devices.net.SoftwareOffloadTest.BE16;
import static io.jvirtio.devices.net.SoftwareOffloadTest.BE32;
import static io.jvirtio.devices.net.SoftwareOffloadTest.assertTransportChecksum;
import static io.jvirtio.devices.net.SoftwareOffloadTest.packet;
import static io.jvirtio.devices.net.SoftwareOffloadTest.payload;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * The headers a guest writes, at the edges of what {@link SoftwareOffload} and {@link Offloads} accept: each
 * bound one byte inside and one outside, each refusal reached, each field of a frame that asks nothing left as
 * it was — what mutation testing showed no other test pins down.
 */
class OffloadEdgesTest {
    final List<byte[]> out = new ArrayList<>();

    boolean finish(byte[] packet, MemorySegment scratch) {
        return SoftwareOffload.finish(MemorySegment.ofArray(packet), packet.length, scratch,
                (f, n) -> out.add(f.asSlice(0, n).toArray(ValueLayout.JAVA_BYTE)));
    }

    boolean finish(byte[] packet) {
        return finish(packet, Arena.ofAuto().allocate(65536 + 128));
    }

    /** A 12-byte header asking nothing and {@code frame} behind it. */
    static byte[] plain(byte[] frame) {
        byte[] p = new byte[Net.HDR_SIZE + frame.length];
        System.arraycopy(frame, 0, p, Net.HDR_SIZE, frame.length);
        return p;
    }

    @Test
    @Conformance("net-dev-6")
    void aFrameThatAsksNothingPassesByteForByteDownToABareEthernetHeader() {
        byte[] frame = payload(14);
        assertThat(finish(plain(frame))).isTrue();
        assertThat(out).hasSize(1);
        assertThat(Arrays.copyOfRange(out.getFirst(), Net.HDR_SIZE, out.getFirst().length)).isEqualTo(frame);
        // unknown flags and csum fields without NEEDS_CSUM: ignored, cleared, nothing written into the frame
        byte[] p = plain(payload(200));
        p[0] = (byte) 0xfe;
        p[6] = 20;
        p[8] = 4;
        byte[] before = p.clone();
        assertThat(finish(p)).isTrue();
        assertThat(Arrays.copyOfRange(out.get(1), Net.HDR_SIZE, p.length))
                .isEqualTo(Arrays.copyOfRange(before, Net.HDR_SIZE, p.length));
        assertThat(Arrays.copyOf(out.get(1), 10)).as("a header that asks nothing").containsOnly(0);
        assertThat(finish(Arrays.copyOf(plain(frame), Net.HDR_SIZE + 13))).as("shorter than an Ethernet header")
                .isFalse();
        assertThat(out).hasSize(2);
    }

    /** A frame of 100 bytes asking for its checksum in the field at {@code start + offset}, the field 0. */
    static byte[] partial(int start, int offset) {
        byte[] frame = payload(100);
        byte[] p = plain(frame);
        p[0] = (byte) Offloads.HDR_F_NEEDS_CSUM;
        MemorySegment h = MemorySegment.ofArray(p);
        h.set(GuestMemory.U16, 6, (short) start);
        h.set(GuestMemory.U16, 8, (short) offset);
        if (Net.HDR_SIZE + start + offset + 2 <= p.length) {
            h.set(BE16, Net.HDR_SIZE + start + offset, (short) 0); // what the sender leaves there: its seed, 0 here
        }
        return p;
    }

    @Test
    @Conformance("net-dev-6")
    void aChecksumFieldMayEndAtTheFramesLastByteNotBeyondAndNotAtAnOddOffset() {
        int start = 96; // the field: the frame's last two bytes
        byte[] p = partial(start, 2);
        byte[] before = p.clone();
        assertThat(finish(p)).isTrue();
        MemorySegment done = MemorySegment.ofArray(out.getFirst());
        assertThat(SoftwareOffload.fold(SoftwareOffload.sum(done, Net.HDR_SIZE + start, 4, 0))).as("checksummed")
                .isEqualTo(0xffff);
        assertThat(Arrays.copyOfRange(out.getFirst(), Net.HDR_SIZE, Net.HDR_SIZE + start + 2))
                .isEqualTo(Arrays.copyOfRange(before, Net.HDR_SIZE, Net.HDR_SIZE + start + 2));
        assertThat(finish(partial(start, 4))).as("one word past the end").isFalse();
        assertThat(finish(partial(start - 1, 3))).as("ending at the last byte from an odd offset").isFalse();
        assertThat(out).hasSize(1);
    }

    /** {@code p} with an 802.1Q tag (VLAN 5) inserted after the addresses. */
    static byte[] tagged(byte[] p) {
        int at = Net.HDR_SIZE + 12;
        byte[] t = new byte[p.length + 4];
        System.arraycopy(p, 0, t, 0, at);
        t[at] = (byte) 0x81;
        t[at + 3] = 5;
        System.arraycopy(p, at, t, at + 4, p.length - at);
        return t;
    }

    @Test
    void aSegmentBehindAVlanTagIsCutWithTheTagOnEveryFrame() {
        byte[] data = payload(3000);
        byte[] p = tagged(packet(false, true, Offloads.GSO_TCPV4, 1000, 0x18, 77, 9, data));
        assertThat(finish(p)).isTrue();
        assertThat(out).hasSize(3);
        for (int i = 0; i < 3; i++) {
            byte[] seg = Arrays.copyOfRange(out.get(i), Net.HDR_SIZE, out.get(i).length);
            assertThat(Arrays.copyOfRange(seg, 12, 16)).as("the tag").containsExactly(0x81, 0, 0, 5);
            byte[] untagged = new byte[seg.length - 4];
            System.arraycopy(seg, 0, untagged, 0, 12);
            System.arraycopy(seg, 16, untagged, 12, seg.length - 16);
            assertThat(MemorySegment.ofArray(untagged).get(BE32, 34 + 4)).isEqualTo(77 + 1000 * i);
            assertTransportChecksum(untagged, false, 6);
            assertThat(Arrays.copyOfRange(untagged, 14 + 20 + 32, untagged.length))
                    .isEqualTo(Arrays.copyOfRange(data, 1000 * i, 1000 * (i + 1)));
        }
        assertThat(finish(Arrays.copyOf(p, Net.HDR_SIZE + 17))).as("cut inside the tag").isFalse();
        assertThat(out).hasSize(3);
    }

    @Test
    void headersCutShortOrOutOfShapeAreRefusedAndNothingLeaves() {
        byte[] v4 = packet(false, true, Offloads.GSO_TCPV4, 1000, 0x10, 0, 0, payload(3000));
        byte[] v6 = packet(true, true, Offloads.GSO_TCPV6, 1000, 0x10, 0, 0, payload(3000));
        int l3 = Net.HDR_SIZE + 14;
        byte[] smallIhl = v4.clone();
        smallIhl[l3] = 0x44; // an IPv4 header of 16 bytes
        byte[] smallTcp = v4.clone();
        smallTcp[l3 + 20 + 12] = 0x40; // a TCP header of 16 bytes
        for (byte[] bad : List.of(Arrays.copyOf(v4, l3 + 19), smallIhl, Arrays.copyOf(v6, l3 + 39),
                Arrays.copyOf(v4, l3 + 20 + 19), smallTcp)) {
            assertThat(finish(bad)).isFalse();
        }
        assertThat(out).isEmpty();
    }

    @Test
    void theSmallestGsoSizeIsCutAndAScratchOneByteShortOfASegmentRefuses() {
        int hlen = Net.HDR_SIZE + 14 + 20 + 32;
        byte[] p = packet(false, true, Offloads.GSO_TCPV4, SoftwareOffload.MIN_GSO_SIZE, 0x10, 0, 0, payload(640));
        assertThat(finish(p, Arena.ofAuto().allocate(hlen + SoftwareOffload.MIN_GSO_SIZE))).isTrue();
        assertThat(out).hasSize(10);
        out.clear();
        assertThat(finish(p, Arena.ofAuto().allocate(hlen + SoftwareOffload.MIN_GSO_SIZE - 1))).isFalse();
        assertThat(out).isEmpty();
    }

    @Test
    void segmentsKeepTheSendersTcpFlagsButFinPshOnTheLastAndCwrOnTheFirst() {
        int flags = 0x80 | 0x40 | 0x20 | 0x10 | 0x08 | 0x01; // CWR ECE URG ACK PSH FIN
        assertThat(finish(packet(false, true, Offloads.GSO_TCPV4, 1000, flags, 0, 0, payload(2500)))).isTrue();
        int at = Net.HDR_SIZE + 14 + 20 + 13;
        assertThat(out.stream().map(s -> s[at] & 0xff).toList()).containsExactly(0xf0, 0x70, 0x79);
    }

    @Test
    void aUdpChecksumThatComesOutZeroIsSentAsAllOnes() {
        byte[] data = payload(100);
        data[98] = 0;
        data[99] = 0;
        byte[] p = packet(false, false, Offloads.GSO_UDP_L4, 1000, 0, 0, 0, data);
        int check = Net.HDR_SIZE + 14 + 20 + 6;
        assertThat(finish(p.clone())).isTrue();
        int c = Short.toUnsignedInt(MemorySegment.ofArray(out.getFirst()).get(BE16, check));
        // the last word makes the sum before the checksum all ones: the checksum comes out 0
        int x = 0xffff - (~c & 0xffff);
        p[p.length - 2] = (byte) (x >>> 8);
        p[p.length - 1] = (byte) x;
        out.clear();
        assertThat(finish(p)).isTrue();
        assertThat(Short.toUnsignedInt(MemorySegment.ofArray(out.getFirst()).get(BE16, check))).isEqualTo(0xffff);
        assertTransportChecksum(Arrays.copyOfRange(out.getFirst(), Net.HDR_SIZE, out.getFirst().length), false, 17);
    }

    @Test
    void theOnesComplementSumOfWordsTakesAnOddLastByteAsTheHighHalfOfOne() {
        Random random = new Random(7);
        for (int length = 0; length < 12; length++) {
            byte[] b = new byte[length];
            random.nextBytes(b);
            if (length > 0) {
                b[length - 1] = (byte) 0xff; // a last byte with its top bit set: taken unsigned
            }
            long expected = 3;
            for (int i = 0; i < length; i += 2) {
                expected += (b[i] & 0xff) << 8 | (i + 1 < length ? b[i + 1] & 0xff : 0);
            }
            assertThat(SoftwareOffload.fold(SoftwareOffload.sum(MemorySegment.ofArray(b), 0, length, 3)))
                    .as("%d bytes", length).isEqualTo(SoftwareOffload.fold(expected));
        }
    }

    /** A header of {@code flags} and {@code gso} in front of a frame of {@code etherType}. */
    static MemorySegment header(int flags, int gso, int etherType) {
        MemorySegment h = MemorySegment.ofArray(new byte[Net.HDR_SIZE + 60]);
        h.set(ValueLayout.JAVA_BYTE, 0, (byte) flags);
        h.set(ValueLayout.JAVA_BYTE, 1, (byte) gso);
        h.set(BE16, Net.HDR_SIZE + 12, (short) etherType);
        return h;
    }

    @Test
    void aHeaderAsksSomethingOnlyWithNeedsCsumOrASegmentType() {
        assertThat(Offloads.asksAnything(header(0, 0, 0x800), 0)).isFalse();
        assertThat(Offloads.asksAnything(header(2, 0, 0x800), 0)).as("DATA_VALID asks nothing").isFalse();
        assertThat(Offloads.asksAnything(header(Offloads.HDR_F_NEEDS_CSUM, 0, 0x800), 0)).isTrue();
        assertThat(Offloads.asksAnything(header(0, Offloads.GSO_TCPV4, 0x800), 0)).isTrue();
        MemorySegment at = MemorySegment.ofArray(new byte[100]);
        MemorySegment.copy(header(0, Offloads.GSO_UDP_L4, 0x800), 0, at, 20, Net.HDR_SIZE);
        assertThat(Offloads.asksAnything(at, 20)).as("read where the header is").isTrue();
    }

    @Test
    @Conformance("net-dev-9")
    void aUdpSegmentReachesOnlyADriverThatTookUsoForItsIpVersionAndTheChecksumItAsks() {
        long csum = Feature.NET_GUEST_CSUM.mask();
        long uso4 = csum | Feature.NET_GUEST_USO4.mask();
        long uso6 = csum | Feature.NET_GUEST_USO6.mask();
        int gso = Offloads.GSO_UDP_L4;
        int needs = Offloads.HDR_F_NEEDS_CSUM;
        assertThat(Offloads.driverTakes(header(needs, gso, Offloads.ETH_P_IP), 0, uso4)).isTrue();
        assertThat(Offloads.driverTakes(header(needs, gso, Offloads.ETH_P_IP), 0, uso6)).isFalse();
        assertThat(Offloads.driverTakes(header(needs, gso, Offloads.ETH_P_IPV6), 0, uso6)).isTrue();
        assertThat(Offloads.driverTakes(header(needs, gso, Offloads.ETH_P_IPV6), 0, uso4)).isFalse();
        assertThat(Offloads.driverTakes(header(needs, gso, 0x0806), 0, uso4 | uso6)).as("neither IP").isFalse();
        long usoWithoutCsum = Feature.maskOf(Feature.NET_GUEST_USO4, Feature.NET_GUEST_USO6);
        assertThat(Offloads.driverTakes(header(needs, gso, Offloads.ETH_P_IP), 0, usoWithoutCsum)).isFalse();
        assertThat(Offloads.driverTakes(header(0, gso, Offloads.ETH_P_IP), 0, usoWithoutCsum)).isTrue();
    }

    @Test
    @Conformance("net-dev-6")
    void aSegmentTheDriverMayNotSendIsRefusedOnTheWayToTheBackend() {
        long csum = Feature.NET_CSUM.mask();
        MemorySegment tso4 = header(Offloads.HDR_F_NEEDS_CSUM, Offloads.GSO_TCPV4, Offloads.ETH_P_IP);
        assertThat(Offloads.fitForBackend(tso4, csum)).isFalse();
        assertThat(Offloads.fitForBackend(tso4, csum | Feature.NET_HOST_TSO4.mask())).isTrue();
        MemorySegment ecn = header(Offloads.HDR_F_NEEDS_CSUM, Offloads.GSO_TCPV4 | Offloads.GSO_ECN, Offloads.ETH_P_IP);
        assertThat(Offloads.fitForBackend(ecn, csum | Feature.NET_HOST_TSO4.mask())).isFalse();
        assertThat(Offloads.senderMay(Offloads.GSO_ECN, csum | Feature.maskOf(Feature.NET_HOST_TSO4,
                Feature.NET_HOST_TSO6, Feature.NET_HOST_ECN))).as("ECN without a segment type").isFalse();
        MemorySegment numBuffers = header(Offloads.HDR_F_NEEDS_CSUM, 0, Offloads.ETH_P_IP);
        numBuffers.set(GuestMemory.U16, Net.HDR_NUM_BUFFERS, (short) 3);
        assertThat(Offloads.fitForBackend(numBuffers, csum)).isTrue();
        assertThat(numBuffers.get(GuestMemory.U16, Net.HDR_NUM_BUFFERS)).as("not the backend's business").isZero();
        assertThat(numBuffers.get(ValueLayout.JAVA_BYTE, 0)).as("a partial checksum, with CSUM: kept")
                .isEqualTo((byte) Offloads.HDR_F_NEEDS_CSUM);
    }
}
