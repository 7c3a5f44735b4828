package io.jvirtio.devices.net;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.core.spec.Net;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The offload fields of the virtio-net header (§5.1.6: flags, gso_type) held against what the driver
 * negotiated, for a NIC whose backend carries offloads: what may reach the driver (net-dev-9), what may leave
 * it (net-drv-7), and which feature sets are consistent (§5.1.3.1). Allocation-free; the per-frame checks read
 * two bytes.
 */
final class Offloads {
    static final int HDR_F_NEEDS_CSUM = 1;
    static final int GSO_TCPV4 = 1;
    static final int GSO_TCPV6 = 4;
    /** VIRTIO_NET_HDR_GSO_UDP_L4: a UDP datagram to be cut into datagrams of gso_size (USO, §5.1.6.2). */
    static final int GSO_UDP_L4 = 5;
    static final int GSO_ECN = 0x80;

    static final int ETH_P_IP = 0x0800;
    static final int ETH_P_IPV6 = 0x86dd;
    private static final ValueLayout.OfShort BIG_U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(java.nio.ByteOrder.BIG_ENDIAN);

    private Offloads() {
    }

    /** §5.1.3.1: segmentation (TCP or UDP) needs checksum offload, ECN needs TCP segmentation — on each side. */
    static boolean consistent(long features) {
        return needs(features, Feature.NET_GUEST_CSUM, Feature.NET_GUEST_TSO4, Feature.NET_GUEST_TSO6)
                && needs(features, Feature.NET_CSUM, Feature.NET_HOST_TSO4, Feature.NET_HOST_TSO6)
                && (!Feature.NET_GUEST_ECN.isSet(features) || any(features, Feature.NET_GUEST_TSO4, Feature.NET_GUEST_TSO6))
                && (!Feature.NET_HOST_ECN.isSet(features) || any(features, Feature.NET_HOST_TSO4, Feature.NET_HOST_TSO6))
                && needs(features, Feature.NET_GUEST_CSUM, Feature.NET_GUEST_USO4, Feature.NET_GUEST_USO6)
                && (!Feature.NET_HOST_USO.isSet(features) || Feature.NET_CSUM.isSet(features));
    }

    /** The header's flags (low byte) and gso_type (high byte), at {@code at}, in one load. */
    static int flagsAndGso(MemorySegment frame, long at) {
        return Short.toUnsignedInt(frame.get(io.jvirtio.core.memory.GuestMemory.U16, at + Net.HDR_FLAGS));
    }

    /** Whether the header at {@code at} asks anything: a checksum to finish or a segment to cut. */
    static boolean asksAnything(MemorySegment frame, long at) {
        int fg = flagsAndGso(frame, at);
        return (fg & HDR_F_NEEDS_CSUM) != 0 || fg >>> 8 != 0;
    }

    /**
     * net-dev-9: whether the driver accepted what the header of a frame for it asks — a partial checksum
     * (GUEST_CSUM), a TCP segment (GUEST_TSO4/6, with ECN: GUEST_ECN), a UDP one (GUEST_USO4 for IPv4,
     * GUEST_USO6 for IPv6: the header does not say which, the frame's EtherType does). The backend was told
     * ({@link NetBackend#acceptOffloads}); this keeps a backend that did not listen from breaking the rule.
     */
    static boolean driverTakes(MemorySegment frame, long at, long features) {
        return driverTakes(frame, at, flagsAndGso(frame, at), features);
    }

    /** {@link #driverTakes(MemorySegment, long, long)} with the header's {@link #flagsAndGso} already read. */
    static boolean driverTakes(MemorySegment frame, long at, int flagsAndGso, long features) {
        int flags = flagsAndGso & 0xff;
        int gso = flagsAndGso >>> 8;
        if (gso == GSO_UDP_L4 && ((flags & HDR_F_NEEDS_CSUM) == 0 || Feature.NET_GUEST_CSUM.isSet(features))) {
            int etherType = Short.toUnsignedInt(frame.get(BIG_U16, at + Net.HDR_SIZE + 12));
            return etherType == ETH_P_IP ? Feature.NET_GUEST_USO4.isSet(features)
                    : etherType == ETH_P_IPV6 && Feature.NET_GUEST_USO6.isSet(features);
        }
        return driverTakes(flags, gso, features);
    }

    /**
     * {@link #driverTakes(MemorySegment, long, long)} from a header's flags and gso_type as read; false for a UDP
     * segment, for which the frame's EtherType is needed too.
     */
    static boolean driverTakes(int flags, int gso, long features) {
        if ((flags & HDR_F_NEEDS_CSUM) != 0 && !Feature.NET_GUEST_CSUM.isSet(features)) {
            return false;
        }
        return gso != GSO_UDP_L4
                && segmentAllowed(gso, features, Feature.NET_GUEST_TSO4, Feature.NET_GUEST_TSO6, Feature.NET_GUEST_ECN);
    }

    /** The GUEST_* offloads a driver may turn on and off with VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET. */
    static final long GUEST_OFFLOADS = Feature.maskOf(Feature.NET_GUEST_CSUM, Feature.NET_GUEST_TSO4,
            Feature.NET_GUEST_TSO6, Feature.NET_GUEST_ECN, Feature.NET_GUEST_UFO, Feature.NET_GUEST_USO4,
            Feature.NET_GUEST_USO6);

    /**
     * §5.1.6.5.6: the features with the GUEST_* offloads replaced by {@code wanted}, or -1 when {@code wanted}
     * holds an offload that was not negotiated (the driver MUST NOT enable one), or any other bit, or a set whose
     * dependencies do not hold (TSO without the checksum, ECN without TSO).
     */
    static long withGuestOffloads(long negotiated, long wanted) {
        if ((wanted & ~(negotiated & GUEST_OFFLOADS)) != 0) {
            return -1;
        }
        long next = (negotiated & ~GUEST_OFFLOADS) | wanted;
        return consistent(next) ? next : -1;
    }

    /**
     * Makes the header of a frame from the driver fit for the backend: without CSUM the driver has nothing to
     * ask (net-drv-7), so whatever it wrote is cleared; a segment it may not send (no HOST_TSO4/6, ECN without
     * HOST_ECN, UDP without HOST_USO, UFO) is refused. num_buffers is not the backend's business.
     *
     * @return false: drop the frame
     */
    static boolean fitForBackend(MemorySegment header, long features) {
        header.set(GuestMemory.U16, Net.HDR_NUM_BUFFERS, (short) 0);
        if (!Feature.NET_CSUM.isSet(features)) {
            header.set(ValueLayout.JAVA_LONG_UNALIGNED, 0, 0L);
            header.set(GuestMemory.U16, 8, (short) 0);
            return true;
        }
        return senderMay(gsoType(header), features);
    }

    /**
     * Whether a driver that negotiated CSUM and {@code features} may send a frame of {@code gso} (gso_type with its
     * ECN bit): a segment only with HOST_TSO4/6 (ECN: HOST_ECN), a UDP one only with HOST_USO; UFO never.
     */
    static boolean senderMay(int gso, long features) {
        if (gso == GSO_UDP_L4) {
            return Feature.NET_HOST_USO.isSet(features);
        }
        return segmentAllowed(gso, features, Feature.NET_HOST_TSO4, Feature.NET_HOST_TSO6, Feature.NET_HOST_ECN);
    }

    private static int gsoType(MemorySegment header) {
        return header.get(ValueLayout.JAVA_BYTE, Net.HDR_GSO_TYPE) & 0xff;
    }

    private static boolean segmentAllowed(int gso, long features, Feature tso4, Feature tso6, Feature ecn) {
        boolean ecnOk = (gso & GSO_ECN) == 0 || ecn.isSet(features);
        return switch (gso & ~GSO_ECN) {
            case Net.HDR_GSO_NONE -> gso == Net.HDR_GSO_NONE;
            case GSO_TCPV4 -> tso4.isSet(features) && ecnOk;
            case GSO_TCPV6 -> tso6.isSet(features) && ecnOk;
            default -> false; // UFO (IP fragmentation): never offered, as QEMU no longer does; USO: above
        };
    }

    private static boolean needs(long features, Feature required, Feature a, Feature b) {
        return required.isSet(features) || !any(features, a, b);
    }

    private static boolean any(long features, Feature a, Feature b) {
        return (features & Feature.maskOf(a, b)) != 0;
    }
}
