package io.jvirtio.cli.conform;

import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.vhostuser.Message;
import io.jvirtio.vhostuser.VhostUser;

import java.util.List;
import java.util.Set;

/**
 * Rules of rings a back-end serves: hostile rings must stop the queue without touching anything (and say
 * so on the err eventfd), and GET_VRING_BASE must stop a ring and tell where it got to. They use ring 0
 * with device-writable 64-byte buffers, which a block device answers (with an error status) and an
 * entropy device fills; other device types need a peer to use a buffer and are skipped.
 */
final class RingChecks {
    static final Set<DeviceType> ANSWERING = Set.of(DeviceType.BLOCK, DeviceType.ENTROPY);

    private RingChecks() {
    }

    static List<Check> all() {
        return List.of(
                new Check("vu-ring-base", "GET_VRING_BASE stops the ring and returns the next available index", ANSWERING,
                        false, RingChecks::ringBase),
                new Check("vu-ring-loop", "a descriptor loop is used for nothing and stops the queue", ANSWERING, true,
                        (t, id) -> hostile(t, id, "a descriptor loop", r -> {
                            r.desc(0, 0x8000, 64, RawRing.F_NEXT | RawRing.F_WRITE, 1);
                            r.desc(1, 0x8000, 64, RawRing.F_NEXT | RawRing.F_WRITE, 0);
                        })),
                new Check("vu-ring-outside-memory", "a buffer outside the memory table is used for nothing", ANSWERING, true,
                        (t, id) -> hostile(t, id, "a buffer outside the memory table",
                                r -> r.desc(0, 2L << 20, 64, RawRing.F_WRITE, 0))),
                new Check("vu-ring-wrapping-length", "a buffer whose length wraps the address space is used for nothing",
                        ANSWERING, true, (t, id) -> hostile(t, id, "a length wrapping 2^64",
                                r -> r.desc(0, -4096, 8192, RawRing.F_WRITE, 0))));
    }

    private static Result ringBase(Target t, String id) throws Exception {
        try (RawRing r = new RawRing(t)) {
            for (int i = 0; i < 3; i++) {
                request(t, r, i);
            }
            r.start();
            if (!r.awaitUsed(3, 5000)) {
                return Result.fail(id, "3 buffers offered, " + r.usedIdx() + " used after 5 s");
            }
            r.session.send(VhostUser.GET_VRING_BASE, Message.vringState(0, 0));
            Message m = r.session.reply(VhostUser.GET_VRING_BASE);
            if (m == null || m.size() != 8) {
                return Result.fail(id, "GET_VRING_BASE answered " + m);
            }
            int base = m.body().getInt(4);
            return base == 3 ? Result.pass(id, "stopped at 3")
                    : Result.fail(id, "GET_VRING_BASE says " + base + " after 3 buffers were used");
        }
    }

    /**
     * A well-formed request at {@code head}, using descriptors 3·head…3·head+2: a block GET_ID (header,
     * 20 bytes, status), or for entropy one 64-byte writable buffer.
     */
    static void request(Target t, RawRing r, int head) throws Exception {
        long at = 0x8000 + 0x100L * head;
        if (t.device() == DeviceType.BLOCK) {
            r.mem.writeU32(at, 8); // VIRTIO_BLK_T_GET_ID
            r.mem.writeU32(at + 4, 0);
            r.mem.writeU64(at + 8, 0);
            int d = 3 * head;
            r.desc(d, at, 16, RawRing.F_NEXT, d + 1);
            r.desc(d + 1, at + 0x20, 20, RawRing.F_NEXT | RawRing.F_WRITE, d + 2);
            r.desc(d + 2, at + 0x40, 1, RawRing.F_WRITE, 0);
            r.offer(d);
        } else {
            r.desc(3 * head, at, 64, RawRing.F_WRITE, 0);
            r.offer(3 * head);
        }
    }

    interface Attack {
        void build(RawRing ring) throws Exception;
    }

    private static Result hostile(Target t, String id, String what, Attack attack) throws Exception {
        try (RawRing r = new RawRing(t)) {
            attack.build(r);
            r.offer(0);
            r.start();
            boolean err = r.errSignalled(2000);
            int used = r.usedIdx();
            if (used != 0) {
                return Result.fail(id, what + ": the back-end marked " + used + " buffer(s) used");
            }
            return Result.pass(id, what + ": nothing used" + (err ? ", reported on the err eventfd" : ", err eventfd silent"));
        }
    }
}
