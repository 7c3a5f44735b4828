package io.jvirtio.devices.net;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A learning Ethernet switch between NICs in the machine: it remembers which port each source MAC came
 * from, forwards unicast frames to that port, and floods broadcast, multicast and unknown destinations
 * to every other port. Switching a frame allocates nothing and takes no lock (learning a new address
 * does, once); the receiving NIC copies what it keeps.
 */
public final class VirtualSwitch {
    private static final ValueLayout.OfInt BE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final ValueLayout.OfShort BE_SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    /** Addresses remembered at most; beyond that unknown destinations are flooded. */
    static final int MAC_TABLE_SIZE = 1024;

    private final CopyOnWriteArrayList<Port> ports = new CopyOnWriteArrayList<>();
    /**
     * The address table: one volatile reference, so a reader always gets addresses and their ports of the same
     * size. A new address or a port leaving replaces it; an address moving rewrites its owner in place.
     */
    private volatile Table table = new Table(new long[0], new Port[0]);

    private record Table(long[] macs, Port[] owners) {
    }
    private final AtomicLong forwarded = new AtomicLong();
    private final AtomicLong flooded = new AtomicLong();

    /** A new port; give it to a NIC as its backend. */
    public NetBackend port() {
        Port p = new Port();
        ports.add(p);
        return p;
    }

    /**
     * Plugs {@code link} (a host TAP device, another switch's port) into a new port: what the switch sends to
     * that port goes out of {@code link}, and what arrives on {@code link} is switched like a NIC's frames.
     *
     * @return closing it unplugs the port and closes {@code link}
     */
    public Attached attach(NetBackend link) {
        NetBackend port = port();
        port.connect(link::transmit);
        link.connect(port::transmit);
        return new Attached(port, link);
    }

    /** A link plugged into the switch by {@link #attach}. */
    public record Attached(NetBackend port, NetBackend link) implements AutoCloseable {
        @Override
        public void close() {
            port.close();
            link.close();
        }
    }

    /** Ports currently connected. */
    public int portCount() {
        return ports.size();
    }

    public long forwarded() {
        return forwarded.get();
    }

    public long flooded() {
        return flooded.get();
    }

    /** The 48-bit address at {@code offset} of {@code frame}. */
    static long mac(MemorySegment frame, long offset) {
        return (Integer.toUnsignedLong(frame.get(BE_INT, offset)) << 16) | Short.toUnsignedLong(frame.get(BE_SHORT, offset + 4));
    }

    static long mac(byte[] b, int at) {
        return mac(MemorySegment.ofArray(b), at);
    }

    private Port lookup(long mac) {
        Table t = table;
        long[] m = t.macs;
        Port[] o = t.owners;
        for (int i = 0; i < m.length; i++) {
            if (m[i] == mac) {
                return o[i];
            }
        }
        return null;
    }

    /**
     * Notes that {@code mac} is behind {@code from}. An address that moved (a migrated guest, or one seen
     * on two ports in turn, as a forwarding loop makes it) is rewritten in place: no lock, no copy — a
     * reader sees the old port or the new one, either a port the address was at. Only a new address takes
     * the copy-on-write path.
     */
    private void learnSource(long mac, Port from) {
        Table t = table;
        long[] m = t.macs;
        Port[] o = t.owners;
        for (int i = 0; i < m.length; i++) {
            if (m[i] == mac) {
                if (o[i] != from) {
                    o[i] = from;
                }
                return;
            }
        }
        learn(mac, from);
    }

    /** Remembers where {@code mac} lives; copy-on-write, so only a new or moved address costs anything. */
    private synchronized void learn(long mac, Port port) {
        Table t = table;
        long[] m = t.macs;
        for (int i = 0; i < m.length; i++) {
            if (m[i] == mac) {
                t.owners[i] = port; // learned meanwhile by another sender
                return;
            }
        }
        if (m.length >= MAC_TABLE_SIZE) {
            return;
        }
        Port[] o = Arrays.copyOf(t.owners, m.length + 1);
        o[m.length] = port;
        long[] nm = Arrays.copyOf(m, m.length + 1);
        nm[m.length] = mac;
        table = new Table(nm, o);
    }

    private synchronized void forget(Port port) {
        Table t = table;
        int n = 0;
        long[] nm = new long[t.macs.length];
        Port[] no = new Port[t.macs.length];
        for (int i = 0; i < t.macs.length; i++) {
            if (t.owners[i] != port) {
                nm[n] = t.macs[i];
                no[n++] = t.owners[i];
            }
        }
        table = new Table(Arrays.copyOf(nm, n), Arrays.copyOf(no, n));
    }

    private void switchFrame(Port from, MemorySegment frame, long length) {
        if (length < 14) {
            return;
        }
        if ((frame.get(ValueLayout.JAVA_BYTE, 6) & 1) == 0) {
            learnSource(mac(frame, 6), from);
        }
        if ((frame.get(ValueLayout.JAVA_BYTE, 0) & 1) == 0) {
            Port to = lookup(mac(frame, 0));
            if (to != null) {
                NetBackend.Receiver r = to.receiver;
                if (to != from && r != null) {
                    forwarded.incrementAndGet();
                    r.receive(frame, length);
                }
                return;
            }
        }
        flooded.incrementAndGet();
        for (Port p : ports) {
            NetBackend.Receiver r = p.receiver;
            if (p != from && r != null) {
                r.receive(frame, length);
            }
        }
    }

    private final class Port implements NetBackend {
        volatile Receiver receiver;

        @Override
        public void transmit(MemorySegment buffer, long length) {
            switchFrame(this, buffer, length);
        }

        @Override
        public void connect(Receiver receiver) {
            this.receiver = receiver;
        }

        @Override
        public void close() {
            ports.remove(this);
            forget(this);
            receiver = null;
        }
    }
}
