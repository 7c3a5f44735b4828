package io.jvirtio.devices.net;

import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A tiny host on a {@link VirtualSwitch}: it answers ARP requests for its IPv4 address and ICMP echo
 * requests sent to it — enough for a guest to {@code ping} something behind a jvirtio NIC. (A test and
 * demo helper: it copies each ARP and IPv4 frame it looks at.) It sits on an offload port and takes every
 * offload, so what the switch floods to it passes as it is, header and all: nothing is finished, sliced or
 * copied for a frame it does not answer.
 */
public final class Responder {
    private final NetBackend port;
    private final byte[] mac;
    private final byte[] ip;
    public final AtomicLong arpReplies = new AtomicLong();
    public final AtomicLong echoReplies = new AtomicLong();

    public Responder(VirtualSwitch sw, byte[] mac, byte[] ip) {
        if (mac.length != 6 || ip.length != 4) {
            throw new IllegalArgumentException("need a 6-byte MAC and a 4-byte IPv4 address");
        }
        this.mac = mac.clone();
        this.ip = ip.clone();
        this.port = sw.offloadPort();
        port.acceptOffloads(VirtualSwitch.OFFLOADS);
        int ipv4 = java.lang.foreign.MemorySegment.ofArray(this.ip).get(BE_INT, 0);
        long station = VirtualSwitch.mac(this.mac, 0);
        port.connect(new NetBackend.Receiver() {
            @Override
            public void receive(java.lang.foreign.MemorySegment buffer, long at, long length) {
                if (length > H && forUs(buffer, at, length, ipv4)) {
                    frame(buffer.asSlice(at + H, length - H).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE));
                }
            }

            /**
             * Broadcasts (ARP) and frames to our address (ICMP): what else the switch floods — frames to addresses
             * it has not learned — is not even handed over.
             */
            @Override
            public boolean wants(long dst) {
                return dst == RxFilter.BROADCAST || dst == station;
            }

            /** A burst the switch floods here (a traffic source's): looked at in one loop, not a call a frame. */
            @Override
            public void receive(FrameBurst burst, int from, int to) {
                for (int i = from; i < to; i++) {
                    receive(burst.data(i), burst.offset(i), burst.length(i));
                }
            }
        });
    }

    /** The virtio-net header in front of every frame on the port (ours: all zero, nothing asked). */
    private static final int H = io.jvirtio.core.spec.Net.HDR_SIZE;
    private static final java.lang.foreign.ValueLayout.OfInt BE_INT =
            java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED.withOrder(java.nio.ByteOrder.BIG_ENDIAN);

    /**
     * An ARP request or an ICMP packet for our address, the only frames answered: the rest of what the switch
     * floods here (every frame to an unknown address) is passed over without a copy — nothing allocated.
     */
    private static boolean forUs(java.lang.foreign.MemorySegment f, long at, long length, int ip) {
        if (length < H + 42 || f.get(java.lang.foreign.ValueLayout.JAVA_BYTE, at + H + 12) != 0x08) {
            return false;
        }
        byte type = f.get(java.lang.foreign.ValueLayout.JAVA_BYTE, at + H + 13);
        if (type == 0x06) {
            return f.get(BE_INT, at + H + 38) == ip;                     // ARP target protocol address
        }
        return type == 0x00 && f.get(java.lang.foreign.ValueLayout.JAVA_BYTE, at + H + 23) == 1 // ICMP
                && f.get(BE_INT, at + H + 30) == ip;                      // IPv4 destination
    }

    private void frame(byte[] f) {
        if (f.length >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[21] == 1 && Arrays.equals(f, 38, 42, ip, 0, 4)) {
            arp(f);
        } else if (f.length >= 42 && f[12] == 0x08 && f[13] == 0x00 && (f[14] & 0xf0) == 0x40 && f[23] == 1
                && Arrays.equals(f, 30, 34, ip, 0, 4) && Arrays.equals(f, 0, 6, mac, 0, 6)) {
            int ihl = (f[14] & 0x0f) * 4;
            if (f.length >= 14 + ihl + 8 && f[14 + ihl] == 8) {
                echo(f, ihl);
            }
        }
    }

    private void arp(byte[] req) {
        ByteBuffer b = ByteBuffer.allocate(H + 60);
        b.position(H); // a header that asks nothing
        b.put(req, 6, 6).put(mac).putShort((short) 0x0806);
        b.putShort((short) 1).putShort((short) 0x0800).put((byte) 6).put((byte) 4).putShort((short) 2);
        b.put(mac).put(ip).put(req, 22, 6).put(req, 28, 4);
        arpReplies.incrementAndGet();
        port.transmit(java.lang.foreign.MemorySegment.ofArray(b.array()), H + 60);
    }

    private void echo(byte[] req, int ihl) {
        int ipTotal = ((req[16] & 0xff) << 8) | (req[17] & 0xff);
        if (ipTotal < ihl + 8 || 14 + ipTotal > req.length) {
            return;
        }
        byte[] r = Arrays.copyOf(req, 14 + ipTotal);
        System.arraycopy(req, 6, r, 0, 6);
        System.arraycopy(mac, 0, r, 6, 6);
        System.arraycopy(req, 30, r, 26, 4);   // IP source = request's destination
        System.arraycopy(req, 26, r, 30, 4);   // IP destination = request's source
        r[22] = 64;
        r[24] = 0;
        r[25] = 0;
        short ipSum = checksum(r, 14, ihl);
        r[24] = (byte) (ipSum >> 8);
        r[25] = (byte) ipSum;
        int icmp = 14 + ihl;
        r[icmp] = 0; // echo reply
        r[icmp + 2] = 0;
        r[icmp + 3] = 0;
        short sum = checksum(r, icmp, ipTotal - ihl);
        r[icmp + 2] = (byte) (sum >> 8);
        r[icmp + 3] = (byte) sum;
        echoReplies.incrementAndGet();
        byte[] withHeader = new byte[H + r.length]; // a header that asks nothing
        System.arraycopy(r, 0, withHeader, H, r.length);
        port.transmit(java.lang.foreign.MemorySegment.ofArray(withHeader), withHeader.length);
    }

    /** The Internet checksum (RFC 1071) of {@code len} bytes at {@code off}. */
    public static short checksum(byte[] b, int off, int len) {
        long sum = 0;
        for (int i = 0; i < len; i += 2) {
            int hi = b[off + i] & 0xff;
            int lo = i + 1 < len ? b[off + i + 1] & 0xff : 0;
            sum += (hi << 8) | lo;
        }
        while ((sum >> 16) != 0) {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        return (short) ~sum;
    }
}
