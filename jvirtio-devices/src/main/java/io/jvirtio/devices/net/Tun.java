package io.jvirtio.devices.net;

import io.jvirtio.core.os.NativeException;
import io.jvirtio.core.os.Posix;
import io.jvirtio.core.spec.Net;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;

/**
 * Linux's TUN/TAP interface ({@code /dev/net/tun}, {@code include/uapi/linux/if_tun.h}): opening a queue of a
 * TAP device, its virtio-net header and offloads, attaching and detaching the queues of a multi-queue one. Each
 * call names what failed ({@link NativeException}); the frames themselves go through {@link TapQueue}.
 */
final class Tun {
    static final long TUNSETIFF = 0x400454caL;
    static final long TUNSETOFFLOAD = 0x400454d0L;
    static final long TUNSETVNETHDRSZ = 0x400454d8L;
    static final long TUNSETQUEUE = 0x400454d9L;
    static final short IFF_ATTACH_QUEUE = 0x0200;
    static final short IFF_DETACH_QUEUE = 0x0400;
    static final short IFF_TAP = 0x0002;
    static final short IFF_MULTI_QUEUE = 0x0100;
    static final short IFF_NO_PI = 0x1000;
    static final short IFF_VNET_HDR = 0x4000;
    // TUNSETOFFLOAD: what the TAP's reader accepts from the host
    static final int TUN_F_CSUM = 0x01;
    static final int TUN_F_TSO4 = 0x02;
    static final int TUN_F_TSO6 = 0x04;
    static final int TUN_F_TSO_ECN = 0x08;
    static final int TUN_F_USO4 = 0x20;
    static final int TUN_F_USO6 = 0x40;
    /** struct ifreq: the name in its first 16 bytes, the flags at 16. */
    private static final int IFREQ = 40;
    private static final long IFR_FLAGS = 16;

    private Tun() {
    }

    /** A queue's descriptor, and the device's actual name, which TUNSETIFF writes back into the ifreq. */
    record Opened(int fd, String name) {
    }

    /**
     * Opens a queue of the TAP device {@code name} (created if absent; a {@code %d} in it is completed by the
     * kernel), non-blocking: reads answer EAGAIN once the queue is empty, and a write never waits either way (the
     * TAP's socket has no send limit: its sndbuf is INT_MAX unless TUNSETSNDBUF lowers it). With the virtio-net
     * header, 12 bytes of it (VERSION_1: num_buffers too) and no offloads until a driver accepts some.
     */
    static Opened open(byte[] name, short flags, boolean vnetHeader) throws NativeException {
        int tun = Posix.openDevice("/dev/net/tun");
        try (Arena a = Arena.ofConfined()) {
            MemorySegment ifreq = a.allocate(IFREQ);
            MemorySegment.copy(name, 0, ifreq, ValueLayout.JAVA_BYTE, 0, name.length);
            ifreq.set(ValueLayout.JAVA_SHORT, IFR_FLAGS, flags);
            Posix.ioctl(tun, TUNSETIFF, ifreq);
            String actual = ifreq.getString(0, StandardCharsets.US_ASCII);
            if (vnetHeader) {
                MemorySegment size = a.allocate(ValueLayout.JAVA_INT);
                size.set(ValueLayout.JAVA_INT, 0, Net.HDR_SIZE);
                Posix.ioctl(tun, TUNSETVNETHDRSZ, size);
                setOffload(tun, 0);
            }
            Posix.setNonBlocking(tun);
            return new Opened(tun, actual);
        } catch (NativeException e) {
            Posix.close(tun);
            throw e;
        }
    }

    /** TUNSETOFFLOAD: what the kernel may hand this queue's reader unfinished ({@code TUN_F_*}). */
    static void setOffload(int fd, int flags) throws NativeException {
        Posix.ioctlValue(fd, TUNSETOFFLOAD, flags);
    }

    /** Whether the kernel takes TUN_F_USO4/6 (one before 6.2 refuses them with EINVAL); leaves no offload set. */
    static boolean probeUso(int fd) {
        try {
            setOffload(fd, TUN_F_CSUM | TUN_F_USO4 | TUN_F_USO6);
            setOffload(fd, 0);
            return true;
        } catch (NativeException e) {
            try {
                setOffload(fd, 0);
            } catch (NativeException ignored) {
                // the descriptor refuses even no offloads: reading frames will say so
            }
            return false;
        }
    }

    /** TUNSETQUEUE: attaches a queue of a multi-queue device (the kernel steers flows to it) or detaches it. */
    static void setQueue(int fd, boolean attach) throws NativeException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment ifreq = a.allocate(IFREQ);
            ifreq.set(ValueLayout.JAVA_SHORT, IFR_FLAGS, attach ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE);
            Posix.ioctl(fd, TUNSETQUEUE, ifreq);
        }
    }
}
