package io.jvirtio.devices.net;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.spec.Net;

import java.lang.foreign.MemorySegment;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * A NIC's receive filter (§5.1.6.5.1, §5.1.6.5.2): promiscuous and all-multicast modes, the station address
 * and the MAC filter tables, which the driver sets through the control queue. Read per frame by whichever
 * thread delivers it (volatile fields, immutable sets: a check allocates nothing and takes no lock); written
 * by the control queue's thread.
 */
final class RxFilter {
    static final long BROADCAST = 0xffff_ffff_ffffL;
    /** Entries a table may hold (Linux sends at most what fits a page; QEMU keeps 64). */
    static final int TABLE_ENTRIES = 64;

    private volatile boolean promiscuous = true;
    private volatile boolean allMulticast = true;
    private volatile Set<Long> unicast = Set.of();
    private volatile Set<Long> multicast = Set.of();
    private volatile long mac;

    RxFilter(long mac) {
        this.mac = mac;
    }

    /** Promiscuous, all-multicast, broadcast, our address, and the filter tables. */
    boolean accepts(long dst) {
        if (promiscuous || dst == BROADCAST) {
            return true;
        }
        if ((dst & (1L << 40)) != 0) {
            return allMulticast || multicast.contains(dst);
        }
        return dst == mac || unicast.contains(dst);
    }

    /** Promiscuous mode: every address is taken. */
    boolean promiscuous() {
        return promiscuous;
    }

    /** Device reset (net-dev-11): promiscuous again, the tables empty; the address stays. */
    void reset() {
        promiscuous = true;
        allMulticast = true;
        unicast = Set.of();
        multicast = Set.of();
    }

    void mac(long address) {
        mac = address;
    }

    /** VIRTIO_NET_CTRL_RX: {@code cmd} PROMISC or ALLMULTI, {@code on} from the command's byte. */
    int rxMode(int cmd, boolean on) {
        if (cmd == Net.CTRL_RX_PROMISC) {
            promiscuous = on;
        } else if (cmd == Net.CTRL_RX_ALLMULTI) {
            allMulticast = on;
        } else {
            return Net.ERR;
        }
        return Net.OK;
    }

    /**
     * VIRTIO_NET_CTRL_MAC_TABLE_SET: struct virtio_net_ctrl_mac ×2 — le32 entries, then 6-byte addresses
     * (unicast table, then multicast) — in {@code b[2..n)}, the whole command ({@code total} bytes) read. The
     * tables change only when the command is whole and well-formed (net-dev-12: before it is acknowledged).
     */
    int macTable(byte[] b, int n, long total) {
        if (total != n) {
            return Net.ERR;
        }
        int at = 2;
        Set<Long> uc = new HashSet<>();
        Set<Long> mc = new HashSet<>();
        for (Set<Long> table : List.of(uc, mc)) {
            if (at + 4 > n) {
                return Net.ERR;
            }
            long entries = Integer.toUnsignedLong(MemorySegment.ofArray(b).get(GuestMemory.U32, at));
            at += 4;
            if (entries > TABLE_ENTRIES || at + entries * 6 > n) {
                return Net.ERR;
            }
            for (int i = 0; i < entries; i++) {
                table.add(VirtualSwitch.mac(b, at));
                at += 6;
            }
        }
        if (at != n) {
            return Net.ERR;
        }
        unicast = Set.copyOf(uc);
        multicast = Set.copyOf(mc);
        return Net.OK;
    }
}
