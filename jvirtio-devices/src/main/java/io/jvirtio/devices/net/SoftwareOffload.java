package io.jvirtio.devices.net;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.spec.Net;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * Does in software what a virtio-net header asks of a device that offered the offload (§5.1.6.2), for a
 * receiver that did not take it: the partial checksum completed (VIRTIO_NET_HDR_F_NEEDS_CSUM: the one's
 * complement sum from csum_start to the end, stored at csum_start + csum_offset), and a segment cut into frames
 * of gso_size bytes of payload — TCP over IPv4 and IPv6 (TSO), UDP (USO) — each with its own lengths, IPv4 id and
 * header checksum, TCP sequence number and flags (FIN and PSH on the last only, CWR on the first only), and its
 * transport checksum, as Linux's GSO cuts them. The headers are parsed from the frame, not taken from hdr_len
 * (net-dev-6: a device must not rely on it); a frame whose headers do not hold together is refused.
 *
 * <p>Allocation-free: segments are built one at a time in the caller's scratch buffer (at least a header, the
 * frame's headers and gso_size bytes) and handed on.
 */
final class SoftwareOffload {
    private static final ValueLayout.OfShort BE16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final ValueLayout.OfInt BE32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    static final int ETH_HLEN = 14;
    /** The virtio-net header in front of every frame, in and out. */
    private static final int H = Net.HDR_SIZE;
    static final int ETH_P_8021Q = 0x8100;
    static final int IPPROTO_TCP = 6;
    static final int IPPROTO_UDP = 17;
    /**
     * The smallest gso_size cut: below it a 64 KiB segment would become thousands of frames — work a hostile
     * driver could ask of every receiver (Linux's smallest TCP MSS is larger still).
     */
    static final int MIN_GSO_SIZE = 64;
    private static final int TCP_FIN = 0x01;
    private static final int TCP_PSH = 0x08;
    private static final int TCP_CWR = 0x80;

    /** Where finished frames go, each behind a virtio-net header that asks nothing. */
    interface Sink {
        void frame(MemorySegment buffer, long length);
    }

    private SoftwareOffload() {
    }

    /**
     * Finishes the frame behind the header at the start of {@code packet} ({@code length} bytes, header
     * included) and hands the result to {@code out}, each frame behind a zeroed header (nothing asked): the
     * packet itself, its checksum completed in place, when it is not a segment, else its segments, built one
     * after the other in {@code scratch}.
     *
     * @return false when the header asks something the frame cannot hold (a checksum beyond its end, a segment
     *         whose headers are not IPv4/IPv6 + TCP/UDP, gso_size below {@link #MIN_GSO_SIZE}): nothing was
     *         handed on
     */
    static boolean finish(MemorySegment packet, long length, MemorySegment scratch, Sink out) {
        if (length < H + ETH_HLEN) {
            return false;
        }
        int flags = packet.get(ValueLayout.JAVA_BYTE, Net.HDR_FLAGS) & 0xff;
        int gso = packet.get(ValueLayout.JAVA_BYTE, Net.HDR_GSO_TYPE) & 0xff & ~Offloads.GSO_ECN;
        if (gso == Net.HDR_GSO_NONE) {
            if ((flags & Offloads.HDR_F_NEEDS_CSUM) != 0) {
                int start = Short.toUnsignedInt(packet.get(GuestMemory.U16, 6));
                int offset = Short.toUnsignedInt(packet.get(GuestMemory.U16, 8));
                if ((offset & 1) != 0 || H + start + offset + 2L > length) {
                    return false;
                }
                packet.set(BE16, H + start + offset, (short) ~fold(sum(packet, H + start, length - H - start, 0)));
            }
            clearHeader(packet);
            out.frame(packet, length);
            return true;
        }
        return segment(packet, length, gso, Short.toUnsignedInt(packet.get(GuestMemory.U16, 4)), scratch, out);
    }

    /** A header that asks nothing (num_buffers, the receiver's field, is left). */
    private static void clearHeader(MemorySegment packet) {
        packet.set(ValueLayout.JAVA_LONG_UNALIGNED, 0, 0L);
        packet.set(GuestMemory.U16, 8, (short) 0);
    }

    private static boolean segment(MemorySegment frame, long length, int gso, int gsoSize, MemorySegment scratch,
                                   Sink out) {
        int l3 = H + ETH_HLEN;
        int etherType = Short.toUnsignedInt(frame.get(BE16, H + 12));
        if (etherType == ETH_P_8021Q) {
            if (length < H + ETH_HLEN + 4) {
                return false;
            }
            etherType = Short.toUnsignedInt(frame.get(BE16, H + 16));
            l3 += 4;
        }
        boolean v4 = etherType == Offloads.ETH_P_IP;
        if (!v4 && etherType != Offloads.ETH_P_IPV6 || gsoSize < MIN_GSO_SIZE) {
            return false;
        }
        int l4;
        int proto;
        if (v4) {
            if (length < l3 + 20) {
                return false;
            }
            int ihl = (frame.get(ValueLayout.JAVA_BYTE, l3) & 0x0f) * 4;
            if (ihl < 20) {
                return false;
            }
            l4 = l3 + ihl;
            proto = frame.get(ValueLayout.JAVA_BYTE, l3 + 9) & 0xff;
        } else {
            l4 = l3 + 40; // extension headers: not cut (Linux's GSO handles them; no guest here sends them)
            if (length < l4) {
                return false;
            }
            proto = frame.get(ValueLayout.JAVA_BYTE, l3 + 6) & 0xff;
        }
        boolean tcp = gso == Offloads.GSO_TCPV4 || gso == Offloads.GSO_TCPV6;
        if (tcp ? proto != IPPROTO_TCP || (gso == Offloads.GSO_TCPV4) != v4
                : gso != Offloads.GSO_UDP_L4 || proto != IPPROTO_UDP) {
            return false;
        }
        int l4len;
        if (tcp) {
            if (length < l4 + 20) {
                return false;
            }
            l4len = ((frame.get(ValueLayout.JAVA_BYTE, l4 + 12) & 0xf0) >>> 4) * 4;
            if (l4len < 20) {
                return false;
            }
        } else {
            l4len = 8;
        }
        int hlen = l4 + l4len; // the virtio-net header and the frame's headers
        if (length < hlen || scratch.byteSize() < hlen + Math.min(gsoSize, length - hlen)) {
            return false;
        }
        long payload = length - hlen;
        int seq = tcp ? frame.get(BE32, l4 + 4) : 0;
        int tcpFlags = tcp ? frame.get(ValueLayout.JAVA_BYTE, l4 + 13) & 0xff : 0;
        int id = v4 ? Short.toUnsignedInt(frame.get(BE16, l3 + 4)) : 0;
        long pseudo = pseudoHeader(frame, l3, v4, proto);
        int n = 0;
        for (long at = 0; ; at += gsoSize, n++) {
            int chunk = (int) Math.min(gsoSize, payload - at);
            boolean last = at + chunk >= payload;
            MemorySegment.copy(frame, 0, scratch, 0, hlen);
            clearHeader(scratch);
            MemorySegment.copy(frame, hlen + at, scratch, hlen, chunk);
            int l4total = l4len + chunk;
            if (v4) {
                scratch.set(BE16, l3 + 2, (short) (l4 - l3 + l4total));
                scratch.set(BE16, l3 + 4, (short) (id + n));
                scratch.set(BE16, l3 + 10, (short) 0);
                scratch.set(BE16, l3 + 10, (short) ~fold(sum(scratch, l3, l4 - l3, 0)));
            } else {
                scratch.set(BE16, l3 + 4, (short) l4total);
            }
            int checkAt;
            if (tcp) {
                scratch.set(BE32, l4 + 4, seq + (int) at);
                int f = tcpFlags;
                if (!last) {
                    f &= ~(TCP_FIN | TCP_PSH);
                }
                if (n > 0) {
                    f &= ~TCP_CWR;
                }
                scratch.set(ValueLayout.JAVA_BYTE, l4 + 13, (byte) f);
                checkAt = l4 + 16;
            } else {
                scratch.set(BE16, l4 + 4, (short) l4total);
                checkAt = l4 + 6;
            }
            scratch.set(BE16, checkAt, (short) 0);
            int check = ~fold(sum(scratch, l4, l4total, pseudo + l4total)) & 0xffff;
            // UDP: a computed zero is sent as all ones (RFC 768), zero meaning "no checksum"
            scratch.set(BE16, checkAt, (short) (!tcp && check == 0 ? 0xffff : check));
            out.frame(scratch, hlen + chunk);
            if (last) {
                return true;
            }
        }
    }

    /** The pseudo-header's addresses and protocol (its length is added per segment). */
    private static long pseudoHeader(MemorySegment frame, int l3, boolean v4, int proto) {
        return v4 ? sum(frame, l3 + 12, 8, proto) : sum(frame, l3 + 8, 32, proto);
    }

    /** {@code initial} plus the big-endian 16-bit words of {@code [from, from + length)}, unfolded. */
    static long sum(MemorySegment s, long from, long length, long initial) {
        long acc = initial;
        long i = 0;
        for (; i + 4 <= length; i += 4) {
            acc += Integer.toUnsignedLong(s.get(BE32, from + i));
        }
        for (; i + 2 <= length; i += 2) {
            acc += Short.toUnsignedInt(s.get(BE16, from + i));
        }
        if (i < length) {
            acc += (s.get(ValueLayout.JAVA_BYTE, from + i) & 0xff) << 8;
        }
        return acc;
    }

    /** The one's complement sum folded to 16 bits. */
    static int fold(long sum) {
        long s = sum;
        while ((s >>> 16) != 0) {
            s = (s & 0xffff) + (s >>> 16);
        }
        return (int) s;
    }
}
