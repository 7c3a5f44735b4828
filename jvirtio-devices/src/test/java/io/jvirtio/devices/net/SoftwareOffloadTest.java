package io.jvirtio.devices.net;

import io.jvirtio.core.memory.GuestMemory;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The software finish of offloads for a receiver that did not take them: every segment checked field by field
 * against what the original frame says, and every checksum verified the receiver's way (the one's complement
 * sum over the covered bytes, checksum included, is all ones).
 */
class SoftwareOffloadTest {
    static final ValueLayout.OfShort BE16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    static final ValueLayout.OfInt BE32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    final MemorySegment scratch = Arena.ofAuto().allocate(65536 + 128);
    final List<byte[]> out = new ArrayList<>();

    boolean finish(byte[] packet) {
        return SoftwareOffload.finish(MemorySegment.ofArray(packet), packet.length, scratch, (f, n) -> {
            assertThat(f.asSlice(0, 10).toArray(ValueLayout.JAVA_BYTE)).as("a header that asks nothing").containsOnly(0);
            out.add(f.asSlice(12, n - 12).toArray(ValueLayout.JAVA_BYTE));
        });
    }

    static byte[] payload(int n) {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) {
            b[i] = (byte) (i * 31 + 7);
        }
        return b;
    }

    /**
     * Header + Ethernet + IPv4 (id {@code id}) or IPv6 + TCP (32-byte header: options) or UDP + payload. The
     * transport checksum field holds the pseudo-header sum over the whole length, as a sender asking for
     * NEEDS_CSUM leaves it.
     */
    static byte[] packet(boolean v6, boolean tcp, int gso, int gsoSize, int tcpFlags, int seq, int id, byte[] data) {
        int l3 = 14;
        int l4 = l3 + (v6 ? 40 : 20);
        int l4len = tcp ? 32 : 8;
        byte[] p = new byte[12 + l4 + l4len + data.length];
        MemorySegment s = MemorySegment.ofArray(p);
        s.set(ValueLayout.JAVA_BYTE, 0, (byte) 1);
        s.set(ValueLayout.JAVA_BYTE, 1, (byte) gso);
        s.set(GuestMemory.U16, 2, (short) 999); // hdr_len: wrong on purpose (net-dev-6: not relied on)
        s.set(GuestMemory.U16, 4, (short) gsoSize);
        s.set(GuestMemory.U16, 6, (short) l4);
        s.set(GuestMemory.U16, 8, (short) (tcp ? 16 : 6));
        MemorySegment f = s.asSlice(12);
        f.set(BE16, 12, (short) (v6 ? 0x86dd : 0x0800));
        int total = l4len + data.length;
        long pseudo;
        int proto = tcp ? 6 : 17;
        if (v6) {
            f.set(ValueLayout.JAVA_BYTE, l3, (byte) 0x60);
            f.set(BE16, l3 + 4, (short) total);
            f.set(ValueLayout.JAVA_BYTE, l3 + 6, (byte) proto);
            f.set(ValueLayout.JAVA_BYTE, l3 + 7, (byte) 64);
            for (int i = 0; i < 32; i++) {
                f.set(ValueLayout.JAVA_BYTE, l3 + 8 + i, (byte) (0x20 + i));
            }
            pseudo = SoftwareOffload.sum(f, l3 + 8, 32, proto + total);
        } else {
            f.set(ValueLayout.JAVA_BYTE, l3, (byte) 0x45);
            f.set(BE16, l3 + 2, (short) (20 + total));
            f.set(BE16, l3 + 4, (short) id);
            f.set(ValueLayout.JAVA_BYTE, l3 + 8, (byte) 64);
            f.set(ValueLayout.JAVA_BYTE, l3 + 9, (byte) proto);
            f.set(BE32, l3 + 12, 0xc0000202);
            f.set(BE32, l3 + 16, 0xc0000201);
            pseudo = SoftwareOffload.sum(f, l3 + 12, 8, proto + total);
            f.set(BE16, l3 + 10, (short) ~SoftwareOffload.fold(SoftwareOffload.sum(f, l3, 20, 0))); // not offloaded
        }
        f.set(BE16, l4, (short) 40000);
        f.set(BE16, l4 + 2, (short) 5201);
        if (tcp) {
            f.set(BE32, l4 + 4, seq);
            f.set(BE32, l4 + 8, 0x01020304);
            f.set(ValueLayout.JAVA_BYTE, l4 + 12, (byte) 0x80); // data offset 8 words
            f.set(ValueLayout.JAVA_BYTE, l4 + 13, (byte) tcpFlags);
            f.set(BE16, l4 + 14, (short) 0xffff);
            f.set(BE16, l4 + 16, (short) SoftwareOffload.fold(pseudo));
            for (int i = 20; i < 32; i++) {
                f.set(ValueLayout.JAVA_BYTE, l4 + i, (byte) 1); // NOP options
            }
        } else {
            f.set(BE16, l4 + 4, (short) total);
            f.set(BE16, l4 + 6, (short) SoftwareOffload.fold(pseudo));
        }
        MemorySegment.copy(data, 0, f, ValueLayout.JAVA_BYTE, l4 + l4len, data.length);
        return p;
    }

    /** The receiver's check: the sum over the transport header and data plus the pseudo-header is all ones. */
    static void assertTransportChecksum(byte[] frame, boolean v6, int proto) {
        MemorySegment f = MemorySegment.ofArray(frame);
        int l3 = 14;
        int l4 = l3 + (v6 ? 40 : 20);
        int total = frame.length - l4;
        long pseudo = v6 ? SoftwareOffload.sum(f, l3 + 8, 32, proto + total) : SoftwareOffload.sum(f, l3 + 12, 8, proto + total);
        assertThat(SoftwareOffload.fold(SoftwareOffload.sum(f, l4, total, pseudo))).as("transport checksum").isEqualTo(0xffff);
        if (!v6) {
            assertThat(SoftwareOffload.fold(SoftwareOffload.sum(f, l3, 20, 0))).as("IPv4 header checksum").isEqualTo(0xffff);
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("net-dev-6")
    void aTcpV4SegmentIsCutLikeLinuxGsoCutsIt() {
        byte[] data = payload(5000);
        int flags = 0x80 | 0x10 | 0x08 | 0x01; // CWR ACK PSH FIN
        assertThat(finish(packet(false, true, Offloads.GSO_TCPV4, 1448, flags, 0xfffff000, 0xfffe, data))).isTrue();
        assertThat(out).hasSize(4);
        int[] sizes = {1448, 1448, 1448, 656};
        ByteArrayOutputStream joined = new ByteArrayOutputStream();
        for (int i = 0; i < 4; i++) {
            byte[] seg = out.get(i);
            MemorySegment f = MemorySegment.ofArray(seg);
            assertThat(seg.length).isEqualTo(14 + 20 + 32 + sizes[i]);
            assertThat(Short.toUnsignedInt(f.get(BE16, 16))).as("tot_len").isEqualTo(20 + 32 + sizes[i]);
            assertThat(Short.toUnsignedInt(f.get(BE16, 18))).as("IPv4 id").isEqualTo((0xfffe + i) & 0xffff);
            assertThat(f.get(BE32, 34 + 4)).as("sequence number").isEqualTo(0xfffff000 + 1448 * i);
            int segFlags = seg[34 + 13] & 0xff;
            assertThat(segFlags & 0x10).as("ACK on every segment").isNotZero();
            assertThat(segFlags & 0x80).as("CWR on the first only").isEqualTo(i == 0 ? 0x80 : 0);
            assertThat(segFlags & 0x09).as("FIN and PSH on the last only").isEqualTo(i == 3 ? 0x09 : 0);
            assertTransportChecksum(seg, false, 6);
            joined.write(seg, 14 + 20 + 32, sizes[i]);
        }
        assertThat(joined.toByteArray()).isEqualTo(data);
    }

    @Test
    void aTcpV6SegmentIsCutWithItsPayloadLength() {
        byte[] data = payload(3000);
        assertThat(finish(packet(true, true, Offloads.GSO_TCPV6 | Offloads.GSO_ECN, 1500, 0x18, 1000, 0, data))).isTrue();
        assertThat(out).hasSize(2);
        for (int i = 0; i < 2; i++) {
            byte[] seg = out.get(i);
            MemorySegment f = MemorySegment.ofArray(seg);
            assertThat(Short.toUnsignedInt(f.get(BE16, 14 + 4))).as("payload length").isEqualTo(32 + 1500);
            assertThat(f.get(BE32, 54 + 4)).isEqualTo(1000 + 1500 * i);
            assertThat(seg[54 + 13] & 0x08).as("PSH on the last only").isEqualTo(i == 1 ? 0x08 : 0);
            assertTransportChecksum(seg, true, 6);
        }
    }

    @Test
    void aUdpSegmentBecomesDatagramsOfGsoSize() {
        byte[] data = payload(8000);
        assertThat(finish(packet(false, false, Offloads.GSO_UDP_L4, 1000, 0, 0, 7, data))).isTrue();
        assertThat(out).hasSize(8);
        ByteArrayOutputStream joined = new ByteArrayOutputStream();
        for (byte[] seg : out) {
            MemorySegment f = MemorySegment.ofArray(seg);
            assertThat(Short.toUnsignedInt(f.get(BE16, 34 + 4))).as("UDP length").isEqualTo(1008);
            assertTransportChecksum(seg, false, 17);
            joined.write(seg, 42, 1000);
        }
        assertThat(joined.toByteArray()).isEqualTo(data);
    }

    @Test
    void aPartialChecksumAloneIsCompletedInPlace() {
        byte[] p = packet(false, false, 0, 0, 0, 0, 1, payload(333));
        assertThat(finish(p)).isTrue();
        assertThat(out).hasSize(1);
        byte[] f = out.getFirst();
        assertThat(f.length).isEqualTo(p.length - 12);
        assertTransportChecksum(f, false, 17);
        byte[] q = packet(true, true, 0, 0, 0x18, 5, 0, payload(1));
        out.clear();
        assertThat(finish(q)).isTrue();
        assertTransportChecksum(out.getFirst(), true, 6);
    }

    @Test
    void aHeaderTheFrameCannotHoldIsRefusedAndNothingLeaves() {
        byte[] beyond = packet(false, false, 0, 0, 0, 0, 1, payload(10));
        beyond[6] = (byte) 0xf0; // csum_start past the end
        byte[] wrongFamily = packet(true, true, Offloads.GSO_TCPV4, 1000, 0x10, 0, 0, payload(3000));
        byte[] noSize = packet(false, true, Offloads.GSO_TCPV4, 0, 0x10, 0, 0, payload(3000));
        byte[] tinySize = packet(false, true, Offloads.GSO_TCPV4, SoftwareOffload.MIN_GSO_SIZE - 1, 0x10, 0, 0, payload(3000));
        byte[] udpAsTcp = packet(false, true, Offloads.GSO_UDP_L4, 1000, 0x10, 0, 0, payload(3000));
        byte[] truncated = java.util.Arrays.copyOf(packet(false, true, Offloads.GSO_TCPV4, 1000, 0x10, 0, 0, payload(0)), 12 + 14 + 20 + 10);
        byte[] ufo = packet(false, false, 3, 1000, 0, 0, 0, payload(3000));
        for (byte[] bad : List.of(beyond, wrongFamily, noSize, tinySize, udpAsTcp, truncated, ufo)) {
            assertThat(finish(bad)).isFalse();
        }
        assertThat(out).isEmpty();
    }
}
