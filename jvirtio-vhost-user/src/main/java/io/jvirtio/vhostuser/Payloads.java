package io.jvirtio.vhostuser;

import java.nio.ByteBuffer;

/**
 * The payloads of vhost-user.rst, decoded and checked in one place: each decoder takes a message, verifies its
 * size (and what the fields may hold) and returns a record, or throws a {@link ProtocolException} naming the
 * message and the bad value. Handlers never read raw payload bytes.
 */
final class Payloads {
    private Payloads() {
    }

    /** {@code struct vhost_vring_state}: u32 index, u32 num (SET_VRING_NUM, SET/GET_VRING_BASE, SET_VRING_ENABLE). */
    record VringState(int index, int value) {
        static VringState decode(Message m) throws ProtocolException {
            m.expectSize(8);
            ByteBuffer b = m.body();
            return new VringState(b.getInt(0), b.getInt(4));
        }
    }

    /** The flag SET_VRING_ADDR may carry: log the used ring's writes (VHOST_VRING_F_LOG). */
    static final int VRING_F_LOG = 1;

    /** {@code struct vhost_vring_addr}: u32 index, u32 flags, u64 desc, used, avail (user addresses), log. */
    record VringAddr(int index, int flags, long desc, long used, long avail, long log) {
        static VringAddr decode(Message m) throws ProtocolException {
            m.expectSize(40);
            ByteBuffer b = m.body();
            VringAddr a = new VringAddr(b.getInt(0), b.getInt(4), b.getLong(8), b.getLong(16), b.getLong(24), b.getLong(32));
            if ((a.flags & ~VRING_F_LOG) != 0) {
                throw new ProtocolException(String.format("SET_VRING_ADDR for ring %d has unknown flags 0x%x", a.index, a.flags));
            }
            return a;
        }
    }

    /** A u64 ring descriptor message (SET_VRING_KICK/CALL/ERR): ring index and NOFD. */
    record VringFd(int index, boolean nofd) {
        static VringFd decode(Message m) throws ProtocolException {
            long v = m.u64();
            if ((v & ~(VhostUser.VRING_IDX_MASK | VhostUser.VRING_NOFD)) != 0) {
                throw new ProtocolException(String.format("%s payload 0x%x has unknown bits", VhostUser.name(m.request()), v));
            }
            boolean nofd = (v & VhostUser.VRING_NOFD) != 0;
            m.expectFds(nofd ? 0 : 1);
            return new VringFd((int) (v & VhostUser.VRING_IDX_MASK), nofd);
        }
    }

    /** One region of {@code struct VhostUserMemory}: guest address, size, front-end address, offset in its fd. */
    record MemRegion(long guest, long size, long user, long offset) {
    }

    /** SET_MEM_TABLE: u32 nregions, u32 padding, regions; one descriptor per region; no overlap in either space. */
    static MemRegion[] memTable(Message m) throws ProtocolException {
        if (m.size() < 8) {
            throw new ProtocolException("SET_MEM_TABLE shorter than its header");
        }
        ByteBuffer b = m.body();
        int n = b.getInt(0);
        if (n < 1 || n > VhostUser.MAX_REGIONS || m.size() != 8 + 32 * n) {
            throw new ProtocolException("SET_MEM_TABLE with " + n + " regions in " + m.size() + " bytes");
        }
        m.expectFds(n);
        MemRegion[] r = new MemRegion[n];
        for (int i = 0; i < n; i++) {
            int at = 8 + 32 * i;
            r[i] = new MemRegion(b.getLong(at), b.getLong(at + 8), b.getLong(at + 16), b.getLong(at + 24));
            // addresses are unsigned 64-bit: a region may end at 2^64 - 1 but not wrap past it
            if (r[i].size <= 0 || r[i].offset < 0 || (r[i].offset & 4095) != 0
                    || Long.compareUnsigned(r[i].user + r[i].size - 1, r[i].user) < 0
                    || Long.compareUnsigned(r[i].guest + r[i].size - 1, r[i].guest) < 0) {
                throw new ProtocolException(String.format("region %d: guest 0x%x size 0x%x user 0x%x offset 0x%x", i,
                        r[i].guest, r[i].size, r[i].user, r[i].offset));
            }
            for (int j = 0; j < i; j++) {
                if (Long.compareUnsigned(r[i].user, r[j].user + r[j].size) < 0
                        && Long.compareUnsigned(r[j].user, r[i].user + r[i].size) < 0) {
                    throw new ProtocolException("regions " + j + " and " + i + " overlap in the frontend's address space");
                }
            }
        }
        return r;
    }

    /** {@code struct VhostUserConfig}: u32 offset, u32 size, u32 flags, u8 payload[size]. */
    record ConfigRegion(int offset, int size, int flags, byte[] data) {
        static ConfigRegion decode(Message m, int configSize) throws ProtocolException {
            if (m.size() < 12) {
                throw new ProtocolException(VhostUser.name(m.request()) + " shorter than its header");
            }
            ByteBuffer b = m.body();
            int offset = b.getInt(0);
            int size = b.getInt(4);
            if (size < 0 || size > VhostUser.MAX_CONFIG || m.size() != 12 + size || offset < 0
                    || offset + size > Math.max(configSize, VhostUser.MAX_CONFIG)) {
                throw new ProtocolException(VhostUser.name(m.request()) + " offset " + offset + " size " + size
                        + " in a message of " + m.size() + " bytes");
            }
            byte[] data = new byte[size];
            System.arraycopy(m.payload(), 12, data, 0, size);
            return new ConfigRegion(offset, size, b.getInt(8), data);
        }
    }

    /** SET_LOG_BASE with LOG_SHMFD: u64 mmap_size, u64 mmap_offset, and the log's descriptor. */
    record LogBase(long size, long offset) {
        /** The largest log taken: one bit per 4 KiB page of 1 PiB of guest memory. */
        static final long MAX_SIZE = 1L << 35;

        static LogBase decode(Message m) throws ProtocolException {
            m.expectSize(16);
            m.expectFds(1);
            ByteBuffer b = m.body();
            LogBase l = new LogBase(b.getLong(0), b.getLong(8));
            if (l.size <= 0 || l.size > MAX_SIZE || (l.size & 7) != 0 || l.offset < 0 || (l.offset & 4095) != 0) {
                throw new ProtocolException("SET_LOG_BASE: " + l.size + " bytes at offset " + l.offset);
            }
            return l;
        }
    }

    /** {@code struct VhostUserInflight}: u64 mmap_size, u64 mmap_offset, u16 num_queues, u16 queue_size. */
    record Inflight(long mmapSize, long mmapOffset, int queues, int queueSize) {
        static Inflight decode(Message m, int rings) throws ProtocolException {
            if (m.size() != 20 && m.size() != 24) {
                throw new ProtocolException(VhostUser.name(m.request()) + " carries " + m.size() + " bytes, expected 24");
            }
            ByteBuffer b = m.body();
            Inflight f = new Inflight(b.getLong(0), b.getLong(8), Short.toUnsignedInt(b.getShort(16)),
                    Short.toUnsignedInt(b.getShort(18)));
            if (f.queues < 1 || f.queues > rings || f.queueSize < 1 || f.queueSize > 32768
                    || Integer.bitCount(f.queueSize) != 1) {
                throw new ProtocolException(VhostUser.name(m.request()) + " for " + f.queues + " queues of " + f.queueSize);
            }
            return f;
        }
    }
}
