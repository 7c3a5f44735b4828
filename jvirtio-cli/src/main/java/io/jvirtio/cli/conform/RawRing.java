package io.jvirtio.cli.conform;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.os.NativeException;
import io.jvirtio.core.os.Posix;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.vhostuser.Message;
import io.jvirtio.vhostuser.VhostUser;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Ring 0 of a back-end set up by hand in 1 MiB of shared memory, so a check can write any descriptor —
 * a loop, a buffer outside the table, a short block header — and read what the back-end did: the used
 * ring, the err eventfd. Layout: descriptor table at 0x1000, available ring at 0x1100, used ring at 0x1200.
 */
final class RawRing implements AutoCloseable {
    static final int SIZE = 16;
    static final long DESC = 0x1000, AVAIL = 0x1100, USED = 0x1200;
    static final int F_NEXT = 1, F_WRITE = 2;

    final Session session;
    final GuestMemory mem;
    final int kick;
    final int call;
    final int err;
    private int availIdx;

    RawRing(Target t) throws Exception {
        session = ProtocolChecks.negotiated(t);
        mem = GuestMemory.memfd(0, 1 << 20);
        kick = Posix.eventfd();
        call = Posix.eventfd();
        err = Posix.eventfd();
        long user = session.memTable(mem);
        session.sendU64(VhostUser.SET_FEATURES, (t.features() & Feature.VERSION_1.mask()) | VhostUser.F_PROTOCOL_FEATURES);
        session.send(VhostUser.SET_VRING_NUM, Message.vringState(0, SIZE));
        session.send(VhostUser.SET_VRING_ADDR, ByteBuffer.allocate(40).order(ByteOrder.LITTLE_ENDIAN).putInt(0).putInt(0)
                .putLong(user + DESC).putLong(user + USED).putLong(user + AVAIL).putLong(0).array());
        session.send(VhostUser.SET_VRING_BASE, Message.vringState(0, 0));
        session.sendU64(VhostUser.SET_VRING_ERR, 0, err);
        session.sendU64(VhostUser.SET_VRING_CALL, 0, call);
    }

    void desc(int i, long addr, int len, int flags, int next) throws Exception {
        long d = DESC + 16L * i;
        mem.writeU64(d, addr);
        mem.writeU32(d + 8, len);
        mem.writeU16(d + 12, (short) flags);
        mem.writeU16(d + 14, (short) next);
    }

    /** Offers {@code head} (before or after the ring started). */
    void offer(int head) throws Exception {
        mem.writeU16(AVAIL + 4 + 2L * (availIdx % SIZE), (short) head);
        availIdx++;
        mem.writeU16(AVAIL + 2, (short) availIdx);
    }

    /** Starts (and enables) the ring and kicks it. */
    void start() throws Exception {
        session.sendU64(VhostUser.SET_VRING_KICK, 0, kick);
        session.send(VhostUser.SET_VRING_ENABLE, Message.vringState(0, 1));
        signal(kick);
    }

    static void signal(int fd) throws NativeException {
        try (Arena a = Arena.ofConfined()) {
            Posix.eventfdSignal(fd, a.allocate(8), Posix.callState(a));
        }
    }

    int usedIdx() throws Exception {
        return mem.readU16(USED + 2) & 0xffff;
    }

    /** Waits until {@code n} buffers are used (true) or the timeout passes (false). */
    boolean awaitUsed(int n, long timeoutMs) throws Exception {
        long deadline = System.nanoTime() + timeoutMs * 1_000_000L;
        while (usedIdx() < n && System.nanoTime() < deadline) {
            Thread.sleep(2);
        }
        return usedIdx() >= n;
    }

    boolean errSignalled(int timeoutMs) throws Exception {
        try (Arena a = Arena.ofConfined()) {
            return Posix.pollIn(err, timeoutMs, a.allocate(8), Posix.callState(a));
        }
    }

    MemorySegment bytes(long at, long len) throws Exception {
        return mem.slice(at, len);
    }

    @Override
    public void close() throws Exception {
        session.close();
        mem.close();
        Posix.close(kick);
        Posix.close(call);
        Posix.close(err);
    }
}
