package io.jvirtio.vhostuser;

import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Every payload decoder of vhost-user.rst at the edges of what it takes: the size a message must have, the
 * descriptors it must carry, and the range of each field — one byte or one unit inside and outside.
 */
class PayloadsTest {
    static final int FD = 1000; // never used as a descriptor: the decoders only count them

    static ByteBuffer le(int size) {
        return ByteBuffer.allocate(size).order(ByteOrder.LITTLE_ENDIAN);
    }

    static Message msg(int request, ByteBuffer b, int... fds) {
        return Message.of(request, b.array(), fds);
    }

    static void refused(Message m, ThrowingDecode d, String... mentions) {
        assertThatThrownBy(() -> d.decode(m)).as("%s", m).isInstanceOf(ProtocolException.class)
                .hasMessageContainingAll(mentions);
    }

    @FunctionalInterface
    interface ThrowingDecode {
        Object decode(Message m) throws ProtocolException;
    }

    @Test
    void vringStateIsExactlyTwoU32() throws Exception {
        Payloads.VringState s = Payloads.VringState.decode(msg(VhostUser.SET_VRING_NUM, le(8).putInt(3).putInt(256)));
        assertThat(s).isEqualTo(new Payloads.VringState(3, 256));
        refused(msg(VhostUser.SET_VRING_NUM, le(7)), Payloads.VringState::decode, "SET_VRING_NUM", "7 bytes");
        refused(msg(VhostUser.SET_VRING_NUM, le(9)), Payloads.VringState::decode, "9 bytes");
    }

    @Test
    void vringAddrIsFortyBytesWithOnlyTheLogFlag() throws Exception {
        Payloads.VringAddr a = Payloads.VringAddr.decode(msg(VhostUser.SET_VRING_ADDR,
                le(40).putInt(1).putInt(Payloads.VRING_F_LOG).putLong(0x1000).putLong(0x2000).putLong(0x3000).putLong(0x4000)));
        assertThat(a).isEqualTo(new Payloads.VringAddr(1, 1, 0x1000, 0x2000, 0x3000, 0x4000));
        refused(msg(VhostUser.SET_VRING_ADDR, le(40).putInt(1).putInt(2)), Payloads.VringAddr::decode, "unknown flags 0x2");
        refused(msg(VhostUser.SET_VRING_ADDR, le(39)), Payloads.VringAddr::decode, "39 bytes");
        refused(msg(VhostUser.SET_VRING_ADDR, le(41)), Payloads.VringAddr::decode, "41 bytes");
    }

    @Test
    void vringFdCarriesADescriptorUnlessNofd() throws Exception {
        assertThat(Payloads.VringFd.decode(Message.u64(VhostUser.SET_VRING_KICK, 0xff, FD)))
                .isEqualTo(new Payloads.VringFd(0xff, false));
        assertThat(Payloads.VringFd.decode(Message.u64(VhostUser.SET_VRING_CALL, VhostUser.VRING_NOFD | 2)))
                .isEqualTo(new Payloads.VringFd(2, true));
        refused(Message.u64(VhostUser.SET_VRING_KICK, VhostUser.VRING_NOFD, FD), Payloads.VringFd::decode, "1 descriptors, expected 0");
        refused(Message.u64(VhostUser.SET_VRING_KICK, 0), Payloads.VringFd::decode, "0 descriptors, expected 1");
        refused(Message.u64(VhostUser.SET_VRING_KICK, 1 << 9, FD), Payloads.VringFd::decode, "0x200", "unknown bits");
        refused(msg(VhostUser.SET_VRING_KICK, le(7), FD), Payloads.VringFd::decode, "7 bytes");
    }

    static ByteBuffer table(long[]... regions) {
        ByteBuffer b = le(8 + 32 * regions.length).putInt(regions.length).putInt(0);
        for (long[] r : regions) {
            b.putLong(r[0]).putLong(r[1]).putLong(r[2]).putLong(r[3]);
        }
        return b;
    }

    static int[] fds(int n) {
        int[] f = new int[n];
        java.util.Arrays.fill(f, FD);
        return f;
    }

    @Test
    void memoryTablesHoldOneToEightDisjointPageAlignedRegions() throws Exception {
        long[] one = {0, 4096, 0x7000_0000L, 4096};
        assertThat(Payloads.memTable(msg(VhostUser.SET_MEM_TABLE, table(one), FD)))
                .containsExactly(new Payloads.MemRegion(0, 4096, 0x7000_0000L, 4096));
        long[][] eight = new long[8][];
        for (int i = 0; i < 8; i++) { // adjacent, not overlapping
            eight[i] = new long[] {0x10000L * i, 0x10000, 0x7000_0000L + 0x10000L * i, 0};
        }
        assertThat(Payloads.memTable(msg(VhostUser.SET_MEM_TABLE, table(eight), fds(8)))).hasSize(8);
        long[][] nine = java.util.Arrays.copyOf(eight, 9);
        nine[8] = new long[] {0x100000, 0x1000, 0x8000_0000L, 0};
        refused(msg(VhostUser.SET_MEM_TABLE, table(nine), fds(9)), Payloads::memTable, "9 regions");
        refused(msg(VhostUser.SET_MEM_TABLE, table()), Payloads::memTable, "0 regions");
        refused(msg(VhostUser.SET_MEM_TABLE, le(7)), Payloads::memTable, "shorter than its header");
        ByteBuffer longer = le(41).put(table(one).array());
        refused(msg(VhostUser.SET_MEM_TABLE, longer, FD), Payloads::memTable, "1 regions in 41 bytes");
        refused(msg(VhostUser.SET_MEM_TABLE, le(39).putInt(1)), Payloads::memTable, "1 regions in 39 bytes");
        refused(msg(VhostUser.SET_MEM_TABLE, table(one)), Payloads::memTable, "0 descriptors, expected 1");
        refused(msg(VhostUser.SET_MEM_TABLE, table(one), FD, FD), Payloads::memTable, "2 descriptors, expected 1");

        // each field at its edge
        assertThat(Payloads.memTable(msg(VhostUser.SET_MEM_TABLE, table(new long[] {0, 1, 0x7000_0000L, 0}), FD))).hasSize(1);
        refused(msg(VhostUser.SET_MEM_TABLE, table(new long[] {0, 0, 0x7000_0000L, 0}), FD), Payloads::memTable, "size 0x0");
        refused(msg(VhostUser.SET_MEM_TABLE, table(new long[] {0, 4096, 0x7000_0000L, 4095}), FD), Payloads::memTable, "offset 0xfff");
        refused(msg(VhostUser.SET_MEM_TABLE, table(new long[] {0, 4096, 0x7000_0000L, -4096}), FD), Payloads::memTable, "region 0");
        // the last byte of either space may be the last address there is; one more wraps
        assertThat(Payloads.memTable(msg(VhostUser.SET_MEM_TABLE, table(new long[] {-4096, 4096, -4096, 0}), FD))).hasSize(1);
        refused(msg(VhostUser.SET_MEM_TABLE, table(new long[] {-4095, 4096, 0x7000_0000L, 0}), FD), Payloads::memTable, "guest 0xfffffffffffff001");
        // across 2^63 is no wrap: addresses are unsigned
        assertThat(Payloads.memTable(msg(VhostUser.SET_MEM_TABLE,
                table(new long[] {Long.MAX_VALUE - 4095, 0x2000, Long.MAX_VALUE - 4095, 0}), FD))).hasSize(1);
        refused(msg(VhostUser.SET_MEM_TABLE, table(new long[] {0, 4096, -4095, 0}), FD), Payloads::memTable, "user 0xfffffffffffff001");

        // overlap in the front-end's space, by one byte, either way round
        long[] a = {0, 0x2000, 0x7000_0000L, 0};
        long[] b = {0x10000, 0x2000, 0x7000_1fffL, 0};
        refused(msg(VhostUser.SET_MEM_TABLE, table(a, b), FD, FD), Payloads::memTable, "regions 0 and 1 overlap");
        refused(msg(VhostUser.SET_MEM_TABLE, table(b, a), FD, FD), Payloads::memTable, "regions 0 and 1 overlap");
        long[] c = {0x10000, 0x2000, 0x7000_2000L, 0};
        assertThat(Payloads.memTable(msg(VhostUser.SET_MEM_TABLE, table(a, c), FD, FD))).hasSize(2);
        assertThat(Payloads.memTable(msg(VhostUser.SET_MEM_TABLE, table(c, a), FD, FD))).hasSize(2);
    }

    static Message config(int offset, int size, int flags, int extra) {
        ByteBuffer b = le(12 + size + extra).putInt(offset).putInt(size).putInt(flags);
        for (int i = 0; i < size + extra; i++) {
            b.put((byte) (i + 1));
        }
        return msg(VhostUser.SET_CONFIG, b);
    }

    @Test
    void configRegionsStayInsideTheConfigurationSpace() throws Exception {
        Payloads.ConfigRegion r = Payloads.ConfigRegion.decode(config(4, 3, 7, 0), 8);
        assertThat(r.offset()).isEqualTo(4);
        assertThat(r.size()).isEqualTo(3);
        assertThat(r.flags()).isEqualTo(7);
        assertThat(r.data()).containsExactly(1, 2, 3);
        assertThat(Payloads.ConfigRegion.decode(config(0, 0, 0, 0), 8).data()).isEmpty();
        assertThat(Payloads.ConfigRegion.decode(config(0, VhostUser.MAX_CONFIG, 0, 0), 8).size()).isEqualTo(VhostUser.MAX_CONFIG);
        assertThat(Payloads.ConfigRegion.decode(config(VhostUser.MAX_CONFIG - 4, 4, 0, 0), 8).size()).isEqualTo(4);
        assertThat(Payloads.ConfigRegion.decode(config(300, 4, 0, 0), 304).offset()).isEqualTo(300);
        refused(config(300, 4, 0, 0), m -> Payloads.ConfigRegion.decode(m, 303), "offset 300 size 4");
        refused(config(VhostUser.MAX_CONFIG - 3, 4, 0, 0), m -> Payloads.ConfigRegion.decode(m, 8), "offset 253");
        refused(config(0, VhostUser.MAX_CONFIG + 1, 0, 0), m -> Payloads.ConfigRegion.decode(m, 8), "size 257");
        refused(config(-1, 4, 0, 0), m -> Payloads.ConfigRegion.decode(m, 8), "offset -1");
        refused(config(0, 4, 0, 1), m -> Payloads.ConfigRegion.decode(m, 8), "in a message of 17 bytes");
        refused(config(0, 4, 0, -1), m -> Payloads.ConfigRegion.decode(m, 8), "in a message of 15 bytes");
        refused(msg(VhostUser.GET_CONFIG, le(11)), m -> Payloads.ConfigRegion.decode(m, 8), "GET_CONFIG shorter than its header");
        ByteBuffer negative = le(12).putInt(0).putInt(-12).putInt(0);
        refused(msg(VhostUser.SET_CONFIG, negative), m -> Payloads.ConfigRegion.decode(m, 8), "size -12");
    }

    static Message logBase(long size, long offset, int... fds) {
        return msg(VhostUser.SET_LOG_BASE, le(16).putLong(size).putLong(offset), fds);
    }

    @Test
    void logBasesAreWholeWordsAtPageOffsetsWithTheirDescriptor() throws Exception {
        assertThat(Payloads.LogBase.decode(logBase(8, 4096, FD))).isEqualTo(new Payloads.LogBase(8, 4096));
        assertThat(Payloads.LogBase.decode(logBase(Payloads.LogBase.MAX_SIZE, 0, FD)).size()).isEqualTo(Payloads.LogBase.MAX_SIZE);
        refused(logBase(Payloads.LogBase.MAX_SIZE + 8, 0, FD), Payloads.LogBase::decode, "34359738376 bytes");
        refused(logBase(0, 0, FD), Payloads.LogBase::decode, "SET_LOG_BASE: 0 bytes");
        refused(logBase(-8, 0, FD), Payloads.LogBase::decode, "-8 bytes");
        refused(logBase(12, 0, FD), Payloads.LogBase::decode, "12 bytes");
        refused(logBase(8, 4095, FD), Payloads.LogBase::decode, "offset 4095");
        refused(logBase(8, -4096, FD), Payloads.LogBase::decode, "offset -4096");
        refused(logBase(8, 0), Payloads.LogBase::decode, "0 descriptors, expected 1");
        refused(msg(VhostUser.SET_LOG_BASE, le(15), FD), Payloads.LogBase::decode, "15 bytes");
        refused(msg(VhostUser.SET_LOG_BASE, le(17), FD), Payloads.LogBase::decode, "17 bytes");
    }

    static Message inflight(int size, int queues, int queueSize) {
        return msg(VhostUser.GET_INFLIGHT_FD, le(size).putLong(0).putLong(0).putShort((short) queues).putShort((short) queueSize));
    }

    @Test
    void inflightRequestsNameExistingRingsOfAPowerOfTwoSize() throws Exception {
        assertThat(Payloads.Inflight.decode(inflight(24, 2, 256), 2)).isEqualTo(new Payloads.Inflight(0, 0, 2, 256));
        assertThat(Payloads.Inflight.decode(inflight(20, 1, 1), 2).queueSize()).isEqualTo(1);
        assertThat(Payloads.Inflight.decode(inflight(24, 1, 32768), 2).queueSize()).isEqualTo(32768);
        refused(inflight(24, 3, 256), m -> Payloads.Inflight.decode(m, 2), "for 3 queues of 256");
        refused(inflight(24, 0, 256), m -> Payloads.Inflight.decode(m, 2), "for 0 queues");
        refused(inflight(24, 1, 0), m -> Payloads.Inflight.decode(m, 2), "queues of 0");
        refused(inflight(24, 1, 3), m -> Payloads.Inflight.decode(m, 2), "queues of 3");
        refused(inflight(24, 1, 0xffff), m -> Payloads.Inflight.decode(m, 2), "queues of 65535");
        refused(msg(VhostUser.GET_INFLIGHT_FD, le(16)), m -> Payloads.Inflight.decode(m, 2), "16 bytes, expected 24");
        refused(msg(VhostUser.GET_INFLIGHT_FD, le(28)), m -> Payloads.Inflight.decode(m, 2), "28 bytes");
    }

    @Test
    void aU64PayloadIsEightBytes() throws Exception {
        assertThat(Message.u64(VhostUser.SET_FEATURES, 42).u64()).isEqualTo(42);
        refused(msg(VhostUser.SET_FEATURES, le(7)), Message::u64, "SET_FEATURES carries 7 bytes, expected 8");
        refused(msg(VhostUser.SET_FEATURES, le(9)), Message::u64, "9 bytes");
    }
}
