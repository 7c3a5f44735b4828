package io.jvirtio.cli;

import io.jvirtio.core.os.NativeException;
import io.jvirtio.devices.PollerGroup;
import io.jvirtio.devices.console.StreamBackend;
import io.jvirtio.devices.net.NetDevice;
import io.jvirtio.devices.net.PacketGenerator;
import io.jvirtio.devices.net.Responder;
import io.jvirtio.devices.net.TapBackend;
import io.jvirtio.devices.net.VirtualSwitch;

import java.util.concurrent.atomic.AtomicInteger;

/**
 * What the exports of one {@code jvirtio serve} process share: one virtual switch for every net export (with
 * one host answering ARP and ping on it, and optionally a host TAP device as its uplink), and one terminal for
 * console exports.
 */
final class Shared implements AutoCloseable {
    private Net net;
    private StreamBackend stdio;

    /**
     * The process's switch; the first net export decides the responder's address, the host TAP device
     * plugged into it, if any ({@code tap}: its name, null for none), and the traffic source on it, if any
     * ({@code generate}: its frame size in bytes, null for none).
     */
    record Net(VirtualSwitch sw, Responder responder, String ip, AtomicInteger macs, TapBackend tap, PacketGenerator generator) {
        /** A NIC on the switch with {@code pairs} receive/transmit queue pairs (more than one: VIRTIO_NET_F_MQ). */
        NetDevice device(int pairs) {
            // an offload port: guests pass each other 64 KiB segments and partial checksums, finished in
            // software only for a receiver that did not take them
            return new NetDevice(sw.offloadPort(), connectionMac(macs.incrementAndGet()), pairs);
        }

        /**
         * A NIC with a TAP device of its own, named from {@code template} ({@code %d}: the kernel's number), with
         * the virtio-net header: checksum and segmentation offloads pass between the guest and the host kernel.
         */
        NetDevice deviceOnOwnTap(String template, int pairs) {
            try {
                // a multi-queue TAP device for several pairs: one TAP queue per pair, flows kept on theirs
                return new NetDevice(new TapBackend(template, true, pairs), connectionMac(macs.incrementAndGet()), pairs);
            } catch (NativeException e) {
                throw new IllegalStateException("TAP device " + template + ": " + e.getMessage(), e);
            }
        }
    }

    synchronized Net net(String ip, String tap, String generate, PollerGroup pollers) {
        if (net == null) {
            if (generate != null && tap != null) {
                throw new IllegalArgumentException("generate=" + generate + " floods the switch with broadcast frames: not"
                        + " with a host TAP device on it (tap=" + tap + ")");
            }
            String address = ip == null ? "192.0.2.1" : ip;
            VirtualSwitch sw = new VirtualSwitch();
            Responder responder = new Responder(sw, new byte[] {0x52, 0x54, 0, 0x4a, 0x56, 1}, parseIp(address));
            TapBackend uplink = null;
            if (tap != null) {
                uplink = openTap(tap);
                sw.attach(uplink);
                if (pollers != null) {
                    uplink.readIn(0, pollers.poller(0)); // its frames switched by a poller: straight into its rings
                }
            }
            PacketGenerator generator = generate == null ? null : generator(sw, generate,
                    pollers == null ? null : pollers.poller(0));
            // 52:54:00:4a:56:01: the responder; :02: the generator
            net = new Net(sw, responder, address, new AtomicInteger(1), uplink, generator);
        } else {
            if (ip != null && !ip.equals(net.ip())) {
                throw new IllegalArgumentException("ip=" + ip + ": the net exports of a process share one switch, whose host is "
                        + net.ip());
            }
            if (tap != null && (net.tap() == null || !tap.equals(net.tap().name()))) {
                throw new IllegalArgumentException("tap=" + tap + ": the net exports of a process share one switch, "
                        + (net.tap() == null ? "made without a TAP device" : "whose TAP device is " + net.tap().name()));
            }
            if (generate != null && (net.generator() == null || !generate.equals(String.valueOf(net.generator().frameBytes())))) {
                throw new IllegalArgumentException("generate=" + generate + ": the net exports of a process share one switch, "
                        + (net.generator() == null ? "made without a traffic source" : "whose traffic source sends "
                        + net.generator().frameBytes() + "-byte frames"));
            }
        }
        return net;
    }

    /** The traffic source of {@code generate=BYTES}, in the rounds of the NICs' poller if any; a bad size is named. */
    private static PacketGenerator generator(VirtualSwitch sw, String bytes, io.jvirtio.devices.Poller poller) {
        int n;
        try {
            n = Integer.parseInt(bytes);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("generate '" + bytes + "' is not a frame size in bytes");
        }
        if (n < PacketGenerator.MIN_FRAME || n > PacketGenerator.MAX_FRAME) {
            throw new IllegalArgumentException("generate " + n + ": a frame size is " + PacketGenerator.MIN_FRAME + ".."
                    + PacketGenerator.MAX_FRAME + " bytes");
        }
        return new PacketGenerator(sw, n, 1, poller); // 1: the responder, not a receiver to send to
    }

    /** Opens a TAP device for the command line: a failure names the device and what it needs. */
    static TapBackend openTap(String name) {
        try {
            return new TapBackend(name, true); // with the virtio-net header: offloads pass to and from the host
        } catch (NativeException e) {
            throw new IllegalArgumentException("tap " + name + ": " + e.getMessage()
                    + " (a TAP device needs /dev/net/tun and CAP_NET_ADMIN)", e);
        }
    }

    synchronized StreamBackend stdio() {
        if (stdio == null) {
            stdio = StreamBackend.stdio(); // one terminal: shared by every connection
        }
        return stdio;
    }

    synchronized Net netIfAny() {
        return net;
    }

    /** The net exports' polling threads (poll-us, pollers): made by the first that asks, shared by all. */
    private PollerGroup netPollers;

    /**
     * The {@code count} polling threads for net queues that spin {@code pollNanos} before sleeping, or null for 0 (a
     * thread per queue, woken by kicks); every net export that polls must ask for the same time and number.
     */
    synchronized PollerGroup netPollers(long pollNanos, int count) {
        if (pollNanos == 0) {
            return null;
        }
        if (netPollers == null) {
            netPollers = new PollerGroup("jvirtio-net-poller", count, pollNanos);
        } else if (netPollers.pollNanos() != pollNanos || netPollers.size() != count) {
            throw new IllegalArgumentException("poll-us=" + pollNanos / 1000 + ", pollers=" + count + ": the net exports"
                    + " of a process share their polling threads: " + netPollers.size() + ", polling "
                    + netPollers.pollNanos() / 1000 + " µs");
        }
        return netPollers;
    }

    /**
     * Stops what the exports shared, once they are closed: the traffic source, the polling thread, the host TAP
     * device (the terminal is the process's own and stays).
     */
    @Override
    public synchronized void close() {
        if (net != null) {
            if (net.generator() != null) {
                net.generator().close();
            }
            if (net.tap() != null) {
                net.tap().close();
            }
        }
        if (netPollers != null) {
            netPollers.close();
        }
    }

    static byte[] parseIp(String s) {
        String[] parts = s.split("\\.");
        if (parts.length != 4) {
            throw new IllegalArgumentException("ip '" + s + "' is not an IPv4 address");
        }
        byte[] ip = new byte[4];
        for (int i = 0; i < 4; i++) {
            try {
                int v = Integer.parseInt(parts[i]);
                if (v < 0 || v > 255) {
                    throw new NumberFormatException();
                }
                ip[i] = (byte) v;
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("ip '" + s + "' is not an IPv4 address");
            }
        }
        return ip;
    }

    /**
     * The MAC of the NIC of connection {@code n}: locally administered 52:54:01 (the responder is 52:54:00:…)
     * and 24 bits of connection number, so addresses repeat only after 16 million connections, not 254.
     */
    static byte[] connectionMac(int n) {
        return new byte[] {0x52, 0x54, 0x01, (byte) (n >>> 16), (byte) (n >>> 8), (byte) n};
    }
}
