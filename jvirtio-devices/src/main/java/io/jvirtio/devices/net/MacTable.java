package io.jvirtio.devices.net;

import java.util.Arrays;

/**
 * A learning switch's address table: which port each station address was last seen behind. Looking up and
 * confirming an address take no lock and allocate nothing (every frame does both); a new address, or a port
 * leaving, replaces the table copy-on-write under a lock.
 *
 * @param <P> a port
 */
final class MacTable<P> {
    /** Addresses remembered at most; beyond that unknown destinations are flooded. */
    static final int SIZE = 1024;

    /**
     * Addresses and their ports in one immutable-size pair behind one volatile reference, so a reader always gets
     * arrays of the same size. An address moving rewrites its owner in place.
     */
    private record Table(long[] macs, Object[] owners) {
    }

    private volatile Table table = new Table(new long[0], new Object[0]);

    /** The port {@code mac} is behind, or null when unknown. */
    @SuppressWarnings("unchecked")
    P lookup(long mac) {
        Table t = table;
        long[] m = t.macs;
        Object[] o = t.owners;
        for (int i = 0; i < m.length; i++) {
            if (m[i] == mac) {
                return (P) o[i];
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
    void learn(long mac, P from) {
        Table t = table;
        long[] m = t.macs;
        Object[] o = t.owners;
        for (int i = 0; i < m.length; i++) {
            if (m[i] == mac) {
                if (o[i] != from) {
                    o[i] = from;
                }
                return;
            }
        }
        add(mac, from);
    }

    /** Remembers where a new address lives; copy-on-write. */
    private synchronized void add(long mac, P port) {
        Table t = table;
        long[] m = t.macs;
        for (int i = 0; i < m.length; i++) {
            if (m[i] == mac) {
                t.owners[i] = port; // learned meanwhile by another sender
                return;
            }
        }
        if (m.length >= SIZE) {
            return;
        }
        Object[] o = Arrays.copyOf(t.owners, m.length + 1);
        o[m.length] = port;
        long[] nm = Arrays.copyOf(m, m.length + 1);
        nm[m.length] = mac;
        table = new Table(nm, o);
    }

    /** Forgets every address behind {@code port} (it left the switch). */
    synchronized void forget(P port) {
        Table t = table;
        int n = 0;
        long[] nm = new long[t.macs.length];
        Object[] no = new Object[t.macs.length];
        for (int i = 0; i < t.macs.length; i++) {
            if (t.owners[i] != port) {
                nm[n] = t.macs[i];
                no[n++] = t.owners[i];
            }
        }
        table = new Table(Arrays.copyOf(nm, n), Arrays.copyOf(no, n));
    }
}
