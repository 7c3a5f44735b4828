package io.jvirtio.vhostuser;

import io.jvirtio.core.device.VirtioDeviceModel;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.os.Posix;
import io.jvirtio.core.os.UnixSockets;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.net.NetDevice;
import io.jvirtio.devices.net.VirtualSwitch;
import io.jvirtio.devices.rng.RngDevice;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * What the session does with each message of a hostile front-end, message by message over a real socket: sizes,
 * protocol features that were never negotiated, ring sizes and indices, ring areas at and past the end of guest
 * memory, and where a split ring resumes. Each refusal is a non-zero REPLY_ACK where one was asked for and the
 * request has no reply of its own, else the end of the connection.
 */
@Timeout(60)
class SessionRulesTest {
    static final int MIB = 1 << 20;
    static final long REPLY_ACK = 1L << VhostUser.PROTOCOL_F_REPLY_ACK;

    /** A back-end on {@code dir} and one connection to it, over a MiB of memfd guest memory at guest-physical 0. */
    static final class Session implements AutoCloseable {
        final VhostUserBackend backend;
        final GuestMemory mem;
        final Channel ch;
        final long user;

        Session(Path dir, Supplier<VirtioDeviceModel> device) throws Exception {
            backend = new VhostUserBackend(java.nio.file.Files.createDirectories(dir).resolve("s.sock"), device);
            mem = GuestMemory.memfd(0, MIB);
            ch = new Channel(UnixSockets.connect(backend.socket().toString()));
            user = mem.region(0).segment().address();
        }

        /** {@code m} with need_reply; returns the ack's value (REPLY_ACK must be negotiated). */
        long ack(Message m) throws Exception {
            ch.write(new Message(m.request(), m.flags() | VhostUser.FLAG_NEED_REPLY, m.payload(), m.fds()));
            Message r = ch.read();
            assertThat(r).as("%s answered", VhostUser.name(m.request())).isNotNull();
            assertThat(r.request()).isEqualTo(m.request());
            return r.u64();
        }

        void acked(Message m) throws Exception {
            assertThat(ack(m)).as("%s acked", VhostUser.name(m.request())).isZero();
        }

        void protocolFeatures(long pf) throws Exception {
            ch.write(Message.u64(VhostUser.SET_PROTOCOL_FEATURES, pf));
        }

        void memTable() throws Exception {
            acked(Message.of(VhostUser.SET_MEM_TABLE, ByteBuffer.allocate(40).order(ByteOrder.LITTLE_ENDIAN)
                    .putInt(1).putInt(0).putLong(0).putLong(MIB).putLong(user).putLong(0).array(), mem.region(0).fd()));
        }

        /** Ring 0 of {@code num} entries at these guest-physical addresses (the front-end names them by its own). */
        void ring(int num, long desc, long avail, long used) throws Exception {
            acked(Message.of(VhostUser.SET_VRING_NUM, Message.vringState(0, num)));
            acked(Message.of(VhostUser.SET_VRING_ADDR, ByteBuffer.allocate(40).order(ByteOrder.LITTLE_ENDIAN)
                    .putInt(0).putInt(0).putLong(user + desc).putLong(user + used).putLong(user + avail)
                    .putLong(0).array()));
        }

        /** Descriptor {@code head} of a split ring 0 at 0x1000: a 64-byte device-writable buffer at {@code buffer}. */
        void writableDescriptor(int head, long buffer) throws Exception {
            mem.writeU64(0x1000 + 16L * head, buffer);
            mem.writeU32(0x1000 + 16L * head + 8, 64);
            mem.writeU16(0x1000 + 16L * head + 12, (short) 2); // VIRTQ_DESC_F_WRITE
        }

        /** Starts ring 0, polled and without a call descriptor, and enables it. */
        void startPolled() throws Exception {
            acked(Message.u64(VhostUser.SET_VRING_CALL, VhostUser.VRING_NOFD));
            acked(Message.u64(VhostUser.SET_VRING_KICK, VhostUser.VRING_NOFD));
            acked(Message.of(VhostUser.SET_VRING_ENABLE, Message.vringState(0, 1)));
        }

        /** Ring 0's {@code used.idx} (its used ring at 0x1200) once it reaches {@code idx}, or after 5 s. */
        short awaitUsedIdx(int idx) throws Exception {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while (mem.readU16(0x1202) != (short) idx && System.nanoTime() < deadline) {
                Thread.sleep(2);
            }
            return mem.readU16(0x1202);
        }

        /** True when the back-end hung up. */
        boolean closedByPeer() throws Exception {
            try {
                return ch.read() == null;
            } catch (io.jvirtio.core.os.NativeException e) {
                return e.errno() == 104; // ECONNRESET
            }
        }

        @Override
        public void close() {
            ch.close();
            mem.close();
            backend.close();
        }
    }

    static Session rng(Path dir) throws Exception {
        return new Session(dir, RngDevice::new);
    }

    /** Whether {@code fd} (an eventfd) was signalled within {@code ms}. */
    static boolean signalled(int fd, int ms) throws Exception {
        try (Arena a = Arena.ofConfined()) {
            return Posix.pollIn(fd, ms, a.allocate(8), Posix.callState(a));
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("vu-be-12")
    void aRequestWithoutPayloadThatCarriesOneIsRefused(@TempDir Path dir) throws Exception {
        byte[] eight = new byte[8];
        // requests with a reply of their own: the connection ends
        for (int request : new int[] {VhostUser.GET_FEATURES, VhostUser.GET_PROTOCOL_FEATURES, VhostUser.GET_QUEUE_NUM}) {
            try (Session s = rng(dir.resolve("r" + request))) {
                s.ch.write(Message.of(request, eight));
                assertThat(s.closedByPeer()).as("%s with 8 bytes", VhostUser.name(request)).isTrue();
            }
        }
        try (Session s = rng(dir.resolve("status"))) {
            s.protocolFeatures(1L << VhostUser.PROTOCOL_F_STATUS);
            s.ch.write(Message.of(VhostUser.GET_STATUS, eight));
            assertThat(s.closedByPeer()).as("GET_STATUS with 8 bytes").isTrue();
        }
        // without a reply of their own: a non-zero ack, and the session goes on
        try (Session s = rng(dir.resolve("acked"))) {
            s.protocolFeatures(REPLY_ACK);
            for (int request : new int[] {VhostUser.SET_OWNER, VhostUser.SET_LOG_FD}) {
                assertThat(s.ack(Message.of(request, eight))).as("%s with 8 bytes", VhostUser.name(request)).isNotZero();
                s.acked(Message.of(request, new byte[0]));
            }
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("vu-be-13")
    void aRequestOfAProtocolFeatureNeverNegotiatedIsRefused(@TempDir Path dir) throws Exception {
        VirtualSwitch sw = new VirtualSwitch();
        int fd = Posix.memfdCreate("session-rules");
        try (Session s = new Session(dir.resolve("net"), () -> new NetDevice(sw.port(), new byte[] {0x52, 0x54, 0, 0, 0, 1}, 1))) {
            s.protocolFeatures(REPLY_ACK);
            Posix.ftruncate(fd, 4096);
            byte[] inflight = ByteBuffer.allocate(24).order(ByteOrder.LITTLE_ENDIAN).putLong(4096).putLong(0)
                    .putShort((short) 2).putShort((short) 8).array();
            assertThat(s.ack(Message.of(VhostUser.SET_INFLIGHT_FD, inflight, fd))).as("SET_INFLIGHT_FD").isNotZero();
            assertThat(s.ack(Message.of(VhostUser.SET_BACKEND_REQ_FD, new byte[0], fd))).as("SET_BACKEND_REQ_FD")
                    .isNotZero();
            assertThat(s.ack(Message.of(VhostUser.SEND_RARP, new byte[8]))).as("SEND_RARP").isNotZero();
            assertThat(s.ack(Message.u64(VhostUser.SET_STATUS, 1))).as("SET_STATUS").isNotZero();
            assertThat(s.ack(Message.of(VhostUser.SET_CONFIG, ByteBuffer.allocate(18).order(ByteOrder.LITTLE_ENDIAN)
                    .putInt(0).putInt(6).putInt(0).put(new byte[6]).array()))).as("SET_CONFIG").isNotZero();
            // negotiated, the same requests are taken
            s.protocolFeatures(REPLY_ACK | (1L << VhostUser.PROTOCOL_F_BACKEND_REQ) | (1L << VhostUser.PROTOCOL_F_RARP)
                    | (1L << VhostUser.PROTOCOL_F_STATUS) | (1L << VhostUser.PROTOCOL_F_CONFIG));
            s.acked(Message.of(VhostUser.SET_CONFIG, ByteBuffer.allocate(18).order(ByteOrder.LITTLE_ENDIAN)
                    .putInt(0).putInt(6).putInt(0).put(new byte[6]).array()));
            s.acked(Message.of(VhostUser.SET_BACKEND_REQ_FD, new byte[0], fd));
            s.acked(Message.of(VhostUser.SEND_RARP, new byte[8]));
            s.acked(Message.u64(VhostUser.SET_STATUS, 1));
        } finally {
            Channel.closeQuietly(fd);
        }
        // a request with a reply of its own ends the connection
        for (int request : new int[] {VhostUser.GET_STATUS, VhostUser.GET_INFLIGHT_FD, VhostUser.SET_LOG_BASE}) {
            try (Session s = rng(dir.resolve("r" + request))) {
                s.protocolFeatures(REPLY_ACK);
                int log = Posix.memfdCreate("session-rules-log");
                try {
                    Posix.ftruncate(log, 4096);
                    byte[] payload = switch (request) {
                        case VhostUser.GET_STATUS -> new byte[0];
                        case VhostUser.GET_INFLIGHT_FD -> ByteBuffer.allocate(24).order(ByteOrder.LITTLE_ENDIAN)
                                .putLong(0).putLong(0).putShort((short) 1).putShort((short) 8).array();
                        default -> ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(4096).putLong(0).array();
                    };
                    s.ch.write(Message.of(request, payload, request == VhostUser.SET_LOG_BASE ? new int[] {log} : new int[0]));
                    assertThat(s.closedByPeer()).as("%s without its protocol feature", VhostUser.name(request)).isTrue();
                } finally {
                    Channel.closeQuietly(log);
                }
            }
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("vu-be-14")
    void ringSizesAndIndicesOutsideTheProtocolsBoundsAreRefused(@TempDir Path dir) throws Exception {
        try (Session s = rng(dir.resolve("split"))) {
            s.protocolFeatures(REPLY_ACK);
            for (int num : new int[] {0, 100, 65536, -1}) {
                assertThat(s.ack(Message.of(VhostUser.SET_VRING_NUM, Message.vringState(0, num))))
                        .as("split SET_VRING_NUM %d", num).isNotZero();
            }
            for (int num : new int[] {1, 256, 32768}) {
                s.acked(Message.of(VhostUser.SET_VRING_NUM, Message.vringState(0, num)));
            }
            assertThat(s.ack(Message.of(VhostUser.SET_VRING_NUM, Message.vringState(1, 8))))
                    .as("ring 1 of a device with one").isNotZero();
            assertThat(s.ack(Message.of(VhostUser.SET_VRING_BASE, Message.vringState(0, 0x10000))))
                    .as("a split base beyond 16 bits").isNotZero();
            s.acked(Message.of(VhostUser.SET_VRING_BASE, Message.vringState(0, 0xffff)));
            assertThat(s.ack(Message.of(VhostUser.SET_VRING_ENABLE, Message.vringState(0, 2)))).as("enable 2").isNotZero();
        }
        try (Session s = rng(dir.resolve("packed"))) {
            s.protocolFeatures(REPLY_ACK);
            s.acked(Message.u64(VhostUser.SET_FEATURES, Feature.maskOf(Feature.VERSION_1, Feature.RING_PACKED)));
            for (int num : new int[] {0, 32769}) {
                assertThat(s.ack(Message.of(VhostUser.SET_VRING_NUM, Message.vringState(0, num))))
                        .as("packed SET_VRING_NUM %d", num).isNotZero();
            }
            for (int num : new int[] {3, 100, 32768}) {
                s.acked(Message.of(VhostUser.SET_VRING_NUM, Message.vringState(0, num)));
            }
            s.acked(Message.of(VhostUser.SET_VRING_BASE, Message.vringState(0, 0x8005_8003)));
        }
    }

    /**
     * A ring whose descriptor table, available ring or used ring is placed {@code past} bytes beyond the last place
     * it fits in guest memory (aligned as it must be): in place it runs (an entropy request is served); beyond, even
     * by a few bytes, the ring fails to start and the front-end hears it on the ring's error descriptor.
     */
    void ringEndingAt(Path dir, boolean packed, String area, int past) throws Exception {
        int num = 8;
        long descBytes = 16L * num;
        long availBytes = packed ? 4 : 6 + 2L * num;
        long usedBytes = packed ? 4 : 6 + 8L * num;
        long desc = 0x1000;
        long avail = 0x2000;
        long used = 0x3000;
        // each area where it must lie (§2.7.2, §2.8.10.1: descriptors 16, split available 2, used and event areas 4)
        switch (area) {
            case "desc" -> desc = (MIB - descBytes + past) & -16;
            case "avail" -> avail = (MIB - availBytes + past) & (packed ? -4 : -2);
            default -> used = (MIB - usedBytes + past) & -4;
        }
        boolean inside = desc + descBytes <= MIB && avail + availBytes <= MIB && used + usedBytes <= MIB;
        int err = Posix.eventfd();
        try (Session s = rng(dir)) {
            s.protocolFeatures(REPLY_ACK);
            s.memTable();
            s.acked(Message.u64(VhostUser.SET_FEATURES, packed ? Feature.maskOf(Feature.VERSION_1, Feature.RING_PACKED)
                    : Feature.VERSION_1.mask()));
            s.ring(num, desc, avail, used);
            if (packed) {
                s.acked(Message.of(VhostUser.SET_VRING_BASE, Message.vringState(0, 0x8000 | 0x8000 << 16)));
            }
            if (!inside) {
                // nothing to serve: the ring must not start
            } else if (packed) {
                // one available descriptor: a 64-byte device-writable buffer, id 0, AVAIL set and USED clear (wrap 1)
                s.mem.writeU64(desc, 0x8000);
                s.mem.writeU32(desc + 8, 64);
                s.mem.writeU16(desc + 12, (short) 0);
                s.mem.writeU16(desc + 14, (short) (2 | 1 << 7));
            } else {
                s.mem.writeU64(desc, 0x8000);
                s.mem.writeU32(desc + 8, 64);
                s.mem.writeU16(desc + 12, (short) 2); // VIRTQ_DESC_F_WRITE
                s.mem.writeU16(avail + 4, (short) 0);
                s.mem.writeU16(avail + 2, (short) 1);
            }
            s.acked(Message.u64(VhostUser.SET_VRING_ERR, 0, err));
            s.startPolled();
            String what = (packed ? "packed " : "split ") + area + " at " + past + " bytes past the last place it fits";
            if (!inside) {
                assertThat(signalled(err, 5000)).as("%s: the ring's error descriptor signalled", what).isTrue();
                return;
            }
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while (!entropyUsed(s.mem, packed, desc, used) && System.nanoTime() < deadline) {
                Thread.sleep(2);
            }
            assertThat(entropyUsed(s.mem, packed, desc, used)).as("%s: the request served", what).isTrue();
            assertThat(signalled(err, 0)).as("%s: no error", what).isFalse();
        } finally {
            Channel.closeQuietly(err);
        }
    }

    static boolean entropyUsed(GuestMemory mem, boolean packed, long desc, long used) throws Exception {
        if (packed) {
            int flags = mem.readU16(desc + 14) & 0xffff;
            return (flags & 1 << 15) != 0 && mem.readU32(desc + 8) == 64; // USED flag set with the wrap counter
        }
        return mem.readU16(used + 2) == 1 && mem.readU32(used + 4 + 4) == 64;
    }

    @Test
    @io.jvirtio.core.spec.Conformance("vu-be-15")
    void aRingAreaEndingPastGuestMemoryIsRefusedAndOneEndingAtItsEndRuns(@TempDir Path dir) throws Exception {
        int n = 0;
        for (boolean packed : new boolean[] {false, true}) {
            for (String area : new String[] {"desc", "avail", "used"}) {
                for (int past : new int[] {0, 16, 64}) {
                    ringEndingAt(dir.resolve("r" + n++), packed, area, past);
                }
            }
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("vu-be-16")
    void aSplitRingResumesItsUsedIndexFromTheRingAndItsAvailablePositionFromTheBase(@TempDir Path dir)
            throws Exception {
        try (Session s = rng(dir)) {
            s.protocolFeatures(REPLY_ACK);
            s.memTable();
            s.acked(Message.u64(VhostUser.SET_FEATURES, Feature.VERSION_1.mask()));
            s.ring(8, 0x1000, 0x1100, 0x1200);
            // a ring another back-end served five requests of: used.idx 5 in the ring, next available 5 in the base
            s.mem.writeU16(0x1202, (short) 5);
            s.acked(Message.of(VhostUser.SET_VRING_BASE, Message.vringState(0, 5)));
            s.writableDescriptor(3, 0x8000);
            s.mem.writeU16(0x1104 + 2 * 5, (short) 3); // avail slot 5: head 3
            s.mem.writeU16(0x1102, (short) 6);
            s.startPolled();
            assertThat(s.awaitUsedIdx(6)).as("used.idx moved on from the ring's 5").isEqualTo((short) 6);
            assertThat(s.mem.readU32(0x1204 + 8 * 5)).as("used slot 5: head 3").isEqualTo(3);
            assertThat(s.mem.readU32(0x1204 + 8 * 5 + 4)).isEqualTo(64);
            assertThat(s.mem.readU32(0x1204)).as("used slot 0 untouched").isZero();
            MemorySegment data = s.mem.region(0).segment().asSlice(0x8000, 64);
            assertThat(data.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE)).as("entropy written").isNotEqualTo(new byte[64]);
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("vu-be-17")
    void withoutProtocolFeaturesARingIsEnabledWhenItStarts(@TempDir Path dir) throws Exception {
        VirtualSwitch sw = new VirtualSwitch();
        java.util.concurrent.atomic.AtomicInteger seen = new java.util.concurrent.atomic.AtomicInteger();
        sw.port().connect((frame, at, length) -> seen.incrementAndGet());
        try (Session s = new Session(dir, () -> new NetDevice(sw.port(), new byte[] {0x52, 0x54, 1, 0, 0, 1}, 1))) {
            // no F_PROTOCOL_FEATURES: no acks either, so a GET_FEATURES round trip orders the messages
            s.ch.write(Message.of(VhostUser.SET_MEM_TABLE, ByteBuffer.allocate(40).order(ByteOrder.LITTLE_ENDIAN)
                    .putInt(1).putInt(0).putLong(0).putLong(MIB).putLong(s.user).putLong(0).array(), s.mem.region(0).fd()));
            s.ch.write(Message.u64(VhostUser.SET_FEATURES, Feature.VERSION_1.mask()));
            s.ch.write(Message.of(VhostUser.SET_VRING_NUM, Message.vringState(1, 8)));
            s.ch.write(Message.of(VhostUser.SET_VRING_ADDR, ByteBuffer.allocate(40).order(ByteOrder.LITTLE_ENDIAN)
                    .putInt(1).putInt(0).putLong(s.user + 0x1000).putLong(s.user + 0x1200).putLong(s.user + 0x1100)
                    .putLong(0).array()));
            long buf = 0x8000;
            s.mem.writeU64(buf + 12, 0xffff_ffff_ffffL); // broadcast destination, after the 12-byte header
            s.mem.writeU64(0x1000, buf);
            s.mem.writeU32(0x1000 + 8, 12 + 60);
            s.mem.writeU16(0x1104, (short) 0);
            s.mem.writeU16(0x1102, (short) 1);
            s.ch.write(Message.u64(VhostUser.SET_VRING_CALL, 1 | VhostUser.VRING_NOFD));
            s.ch.write(Message.u64(VhostUser.SET_VRING_KICK, 1 | VhostUser.VRING_NOFD)); // started, polled: enabled
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while ((seen.get() == 0 || s.mem.readU16(0x1202) != 1) && System.nanoTime() < deadline) {
                Thread.sleep(2);
            }
            assertThat(s.mem.readU16(0x1202)).as("the frame was used").isEqualTo((short) 1);
            assertThat(seen.get()).as("and sent: no SET_VRING_ENABLE was needed").isEqualTo(1);
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("vu-be-18")
    void resetDeviceForgetsTheRingsWhereStatusZeroKeepsTheirPositions(@TempDir Path dir) throws Exception {
        for (boolean resetDevice : new boolean[] {false, true}) {
            try (Session s = rng(dir.resolve(resetDevice ? "reset" : "status"))) {
                s.protocolFeatures(REPLY_ACK | (1L << VhostUser.PROTOCOL_F_STATUS)
                        | (1L << VhostUser.PROTOCOL_F_RESET_DEVICE));
                s.memTable();
                s.acked(Message.u64(VhostUser.SET_FEATURES, Feature.VERSION_1.mask()));
                s.ring(8, 0x1000, 0x1100, 0x1200);
                for (int i = 0; i < 2; i++) {
                    s.writableDescriptor(i, 0x8000 + 0x100L * i);
                    s.mem.writeU16(0x1104 + 2L * i, (short) i);
                }
                s.mem.writeU16(0x1102, (short) 2);
                s.startPolled();
                assertThat(s.awaitUsedIdx(2)).isEqualTo((short) 2);
                s.acked(resetDevice ? Message.of(VhostUser.RESET_DEVICE, new byte[0]) : Message.u64(VhostUser.SET_STATUS, 0));
                s.ch.write(Message.of(VhostUser.GET_VRING_BASE, Message.vringState(0, 0)));
                assertThat(s.ch.read().body().getInt(4)).as(resetDevice ? "RESET_DEVICE: the ring back to its start"
                        : "status 0: the ring's position, which QEMU reads next").isEqualTo(resetDevice ? 0 : 2);
            }
        }
    }

    static final long INFLIGHT = REPLY_ACK | (1L << VhostUser.PROTOCOL_F_INFLIGHT_SHMFD);

    static byte[] inflight(long size, long offset, int queues, int queueSize) {
        return ByteBuffer.allocate(24).order(ByteOrder.LITTLE_ENDIAN).putLong(size).putLong(offset)
                .putShort((short) queues).putShort((short) queueSize).array();
    }

    /** A two-queue disk with the in-flight feature, its memory table and features set. */
    static Session disk(Path dir) throws Exception {
        Session s = new Session(dir, () -> new io.jvirtio.devices.blk.BlkDevice(
                new io.jvirtio.devices.blk.MemoryBackend(1 << 20, false), 2));
        s.protocolFeatures(INFLIGHT);
        s.memTable();
        s.acked(Message.u64(VhostUser.SET_FEATURES, Feature.VERSION_1.mask()));
        return s;
    }

    /** Starts ring {@code index} of 8 entries, polled, at 4 KiB per ring from 0x10000. */
    static void startRing(Session s, int index) throws Exception {
        long at = 0x10000 + 0x1000L * index;
        s.acked(Message.of(VhostUser.SET_VRING_NUM, Message.vringState(index, 8)));
        s.acked(Message.of(VhostUser.SET_VRING_ADDR, ByteBuffer.allocate(40).order(ByteOrder.LITTLE_ENDIAN)
                .putInt(index).putInt(0).putLong(s.user + at).putLong(s.user + at + 0x200).putLong(s.user + at + 0x100)
                .putLong(0).array()));
        s.acked(Message.u64(VhostUser.SET_VRING_CALL, index | VhostUser.VRING_NOFD));
        s.acked(Message.u64(VhostUser.SET_VRING_KICK, index | VhostUser.VRING_NOFD));
        s.acked(Message.of(VhostUser.SET_VRING_ENABLE, Message.vringState(index, 1)));
    }

    @Test
    @io.jvirtio.core.spec.Conformance("vu-inflight-5")
    void theInflightBufferHasARegionPerQueueAndEachRingFormatsItsOwn(@TempDir Path dir) throws Exception {
        try (Session s = disk(dir); Arena arena = Arena.ofShared()) {
            s.ch.write(Message.of(VhostUser.GET_INFLIGHT_FD, inflight(0, 0, 2, 8)));
            Message r = s.ch.read();
            assertThat(r.fds()).hasSize(1);
            try {
                // QEMU's and libvhost-user's size: per queue 16 bytes a descriptor and a header, on 64-byte boundaries
                assertThat(r.body().getLong(0)).as("mmap_size").isEqualTo(2 * 192);
                assertThat(r.body().getLong(8)).as("mmap_offset").isZero();
                assertThat(r.body().getShort(16)).isEqualTo((short) 2);
                assertThat(r.body().getShort(18)).isEqualTo((short) 8);
                MemorySegment buffer = Posix.mmapShared(r.fds()[0], 0, 2 * 192, arena);
                assertThat(buffer.mismatch(MemorySegment.ofArray(new byte[2 * 192]))).as("fresh: all zero").isEqualTo(-1);
                startRing(s, 1);
                assertThat(buffer.get(java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED, 192 + 8)).as("ring 1's version")
                        .isEqualTo((short) 1);
                assertThat(buffer.get(java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED, 192 + 10)).as("its desc_num")
                        .isEqualTo((short) 8);
                assertThat(buffer.asSlice(0, 192).mismatch(MemorySegment.ofArray(new byte[192])))
                        .as("ring 0's region untouched").isEqualTo(-1);
            } finally {
                Channel.closeQuietly(r.fds()[0]);
            }
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("vu-inflight-5")
    void aSetInflightFdThatCannotHoldItsQueuesIsRefusedAndARingItDoesNotCoverRunsUnlogged(@TempDir Path dir)
            throws Exception {
        int fd = Posix.memfdCreate("session-rules-inflight");
        try (Session s = disk(dir)) {
            Posix.ftruncate(fd, 8192);
            assertThat(s.ack(Message.of(VhostUser.SET_INFLIGHT_FD, inflight(2 * 192 - 1, 0, 2, 8), fd)))
                    .as("a byte short").isNotZero();
            assertThat(s.ack(Message.of(VhostUser.SET_INFLIGHT_FD, inflight(2 * 192, 64, 2, 8), fd)))
                    .as("an offset not on a page").isNotZero();
            assertThat(s.ack(Message.of(VhostUser.SET_INFLIGHT_FD, inflight(2 * 192, -4096, 2, 8), fd)))
                    .as("a negative offset").isNotZero();
            assertThat(s.ack(Message.of(VhostUser.SET_INFLIGHT_FD, inflight(2 * 192, 0, 2, 8))))
                    .as("no descriptor").isNotZero();
            s.acked(Message.of(VhostUser.SET_INFLIGHT_FD, inflight(2 * 192, 4096, 2, 8), fd));
            // a buffer for one queue: ring 1 is not covered, runs, and is not logged
            s.acked(Message.of(VhostUser.SET_INFLIGHT_FD, inflight(192, 0, 1, 8), fd));
            startRing(s, 1);
            startRing(s, 0);
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment buffer = Posix.mmapShared(fd, 0, 4096, arena);
                assertThat(buffer.get(java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED, 8)).as("ring 0 logs in it")
                        .isEqualTo((short) 1);
                assertThat(buffer.asSlice(192, 4096 - 192).mismatch(MemorySegment.ofArray(new byte[4096 - 192])))
                        .as("nothing past the buffer's one region").isEqualTo(-1);
            }
        } finally {
            Channel.closeQuietly(fd);
        }
    }

    static long openFds() throws Exception {
        try (var l = java.nio.file.Files.list(Path.of("/proc/self/fd"))) {
            return l.count();
        }
    }

    static long sharedMappings() throws Exception {
        return java.nio.file.Files.readAllLines(Path.of("/proc/self/maps")).stream().filter(l -> l.contains("memfd:")).count();
    }

    /** Sends {@code m} with a fresh eventfd, closing this side's copy: the back-end holds the only one. */
    static void withEventfd(Session s, int request, int index) throws Exception {
        int fd = Posix.eventfd();
        try {
            s.acked(Message.u64(request, index, fd));
        } finally {
            Channel.closeQuietly(fd);
        }
    }

    /**
     * Everything the front-end hands over — memory table, in-flight buffer, dirty log, back-end channel, each ring's
     * kick, call and error descriptors — handed over a second time replaces the first without a descriptor or a
     * mapping left behind, and the session's end releases the rest: a front-end that reconnects or repeats its
     * set-up for days must not exhaust the back-end's descriptors or address space.
     */
    @Test
    @io.jvirtio.core.spec.Conformance("vu-be-19")
    void whatTheFrontEndHandsOverAgainReplacesTheOldAndTheSessionsEndReleasesAll(@TempDir Path dir) throws Exception {
        try (Session s = new Session(dir, () -> new io.jvirtio.devices.blk.BlkDevice(
                new io.jvirtio.devices.blk.MemoryBackend(1 << 20, false), 2))) {
            s.ch.write(Message.of(VhostUser.GET_FEATURES, new byte[0]));
            assertThat(s.ch.read()).as("the session runs").isNotNull();
            long fds = openFds(); // with both ends of the connection
            long maps = sharedMappings();
            long[] afterRound = new long[4];
            s.protocolFeatures(INFLIGHT | (1L << VhostUser.PROTOCOL_F_LOG_SHMFD) | (1L << VhostUser.PROTOCOL_F_BACKEND_REQ)
                    | (1L << VhostUser.PROTOCOL_F_RESET_DEVICE));
            s.acked(Message.u64(VhostUser.SET_FEATURES, Feature.VERSION_1.mask()));
            for (int round = 0; round < 2; round++) {
                s.memTable();
                s.ch.write(Message.of(VhostUser.GET_INFLIGHT_FD, inflight(0, 0, 2, 8)));
                Channel.closeQuietly(s.ch.read().fds()[0]);
                int log = Posix.memfdCreate("session-rules-log");
                int backendChannel = Posix.eventfd();
                try {
                    Posix.ftruncate(log, 4096);
                    s.ch.write(Message.of(VhostUser.SET_LOG_BASE, ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN)
                            .putLong(4096).putLong(0).array(), log));
                    assertThat(s.ch.read().u64()).isZero();
                    s.acked(Message.of(VhostUser.SET_BACKEND_REQ_FD, new byte[0], backendChannel));
                } finally {
                    Channel.closeQuietly(log);
                    Channel.closeQuietly(backendChannel);
                }
                for (int ring = 0; ring < 2; ring++) {
                    long at = 0x10000 + 0x1000L * ring;
                    s.acked(Message.of(VhostUser.SET_VRING_NUM, Message.vringState(ring, 8)));
                    s.acked(Message.of(VhostUser.SET_VRING_ADDR, ByteBuffer.allocate(40).order(ByteOrder.LITTLE_ENDIAN)
                            .putInt(ring).putInt(0).putLong(s.user + at).putLong(s.user + at + 0x200)
                            .putLong(s.user + at + 0x100).putLong(0).array()));
                    withEventfd(s, VhostUser.SET_VRING_ERR, ring);
                    withEventfd(s, VhostUser.SET_VRING_CALL, ring);
                    withEventfd(s, VhostUser.SET_VRING_KICK, ring);
                }
                afterRound[2 * round] = openFds();
                afterRound[2 * round + 1] = sharedMappings();
            }
            assertThat(afterRound[2]).as("descriptors after everything was handed over again").isEqualTo(afterRound[0]);
            assertThat(afterRound[3]).as("shared mappings after everything was handed over again")
                    .isEqualTo(afterRound[1]);
            assertThat(afterRound[1]).as("the memory table, the in-flight buffer and the log are mapped").isEqualTo(maps + 3);
            s.acked(Message.of(VhostUser.RESET_DEVICE, new byte[0]));
            assertThat(openFds()).as("RESET_DEVICE lets go of both rings' kick, call and error descriptors")
                    .isLessThanOrEqualTo(afterRound[2] - 6);
            s.ch.close();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while ((s.backend.activeSessions() > 0 || openFds() != fds - 2) && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            assertThat(openFds()).as("descriptors once the session ended (both ends of its connection closed too)")
                    .isEqualTo(fds - 2);
            assertThat(sharedMappings()).as("shared mappings once the session ended").isEqualTo(maps);
        }
    }

    /**
     * Posts request {@code k} (0, 1, …) on ring 0 of a disk started by {@link #startRing}: a read of sector 0 into
     * 512 bytes, always the same three descriptors (head 0, given back before the next); waits for it to be used.
     */
    static boolean readOfSectorZeroServed(Session s, int k) throws Exception {
        long ring = 0x10000;
        s.mem.writeU64(ring, 0x8000);                    // header: T_IN, sector 0
        s.mem.writeU32(ring + 8, 16);
        s.mem.writeU16(ring + 12, (short) 1);            // NEXT
        s.mem.writeU16(ring + 14, (short) 1);
        s.mem.writeU64(ring + 16, 0x9000);               // data
        s.mem.writeU32(ring + 24, 512);
        s.mem.writeU16(ring + 28, (short) 3);            // NEXT | WRITE
        s.mem.writeU16(ring + 30, (short) 2);
        s.mem.writeU64(ring + 32, 0xa000);               // status
        s.mem.writeU32(ring + 40, 1);
        s.mem.writeU16(ring + 44, (short) 2);            // WRITE
        s.mem.write(0xa000, new byte[] {(byte) 0xff}, 0, 1);
        s.mem.writeU16(ring + 0x100 + 4 + 2L * (k % 8), (short) 0);
        s.mem.writeU16(ring + 0x102, (short) (k + 1));
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (s.mem.readU16(ring + 0x202) != (short) (k + 1) && System.nanoTime() < deadline) {
            Thread.sleep(1);
        }
        byte[] status = new byte[1];
        s.mem.read(0xa000, status, 0, 1);
        return s.mem.readU16(ring + 0x202) == (short) (k + 1) && status[0] == 0;
    }

    /**
     * A message that replaces what running rings run on — a new memory table (hot-plug), a dirty log (migration
     * starting), an in-flight buffer, new features (renegotiation) — stops them keeping their positions and starts
     * them again on the new one: the next request is served, from where the ring was.
     */
    @org.junit.jupiter.params.ParameterizedTest(name = "{0}")
    @org.junit.jupiter.params.provider.ValueSource(strings = {"SET_MEM_TABLE", "SET_LOG_BASE", "SET_INFLIGHT_FD",
            "SET_FEATURES"})
    @io.jvirtio.core.spec.Conformance("vu-be-9")
    void aRunningRingGoesOnThroughAMessageThatReplacesWhatItRunsOn(String message, @TempDir Path dir) throws Exception {
        try (Session s = disk(dir)) {
            s.protocolFeatures(INFLIGHT | (1L << VhostUser.PROTOCOL_F_LOG_SHMFD));
            startRing(s, 0);
            assertThat(readOfSectorZeroServed(s, 0)).as("before %s", message).isTrue();
            int fd = Posix.memfdCreate("session-rules-replace");
            try (Arena arena = Arena.ofConfined()) {
                Posix.ftruncate(fd, 4096);
                switch (message) {
                    case "SET_MEM_TABLE" -> s.memTable();
                    case "SET_LOG_BASE" -> {
                        s.ch.write(Message.of(VhostUser.SET_LOG_BASE, ByteBuffer.allocate(16)
                                .order(ByteOrder.LITTLE_ENDIAN).putLong(4096).putLong(0).array(), fd));
                        assertThat(s.ch.read().u64()).isZero();
                    }
                    case "SET_INFLIGHT_FD" -> s.acked(Message.of(VhostUser.SET_INFLIGHT_FD, inflight(2 * 192, 0, 2, 8), fd));
                    default -> s.acked(Message.u64(VhostUser.SET_FEATURES,
                            Feature.maskOf(Feature.VERSION_1, Feature.BLK_FLUSH)));
                }
                assertThat(readOfSectorZeroServed(s, 1)).as("after %s", message).isTrue();
                assertThat(readOfSectorZeroServed(s, 2)).as("and on").isTrue();
                if (message.equals("SET_INFLIGHT_FD")) {
                    assertThat(Posix.mmapShared(fd, 0, 4096, arena).get(java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED, 8))
                            .as("the ring restarted on the new buffer").isEqualTo((short) 1);
                }
            } finally {
                Channel.closeQuietly(fd);
            }
        }
    }

    /** The disk's {@code writeback} byte (VIRTIO_BLK_F_CONFIG_WCE), through GET_CONFIG. */
    static int writeback(Session s) throws Exception {
        s.ch.write(Message.of(VhostUser.GET_CONFIG, ByteBuffer.allocate(13).order(ByteOrder.LITTLE_ENDIAN)
                .putInt(io.jvirtio.core.spec.Blk.CFG_WRITEBACK).putInt(1).putInt(0).array()));
        Message r = s.ch.read();
        assertThat(r.size()).as("GET_CONFIG answered").isEqualTo(13);
        return r.payload()[12];
    }

    /**
     * SET_STATUS 0 resets the device itself, not only its rings: a disk whose driver turned its write cache off
     * (CONFIG_WCE) has it as the back-end's mode has it again — as after RESET_DEVICE.
     */
    @org.junit.jupiter.params.ParameterizedTest(name = "{0}")
    @org.junit.jupiter.params.provider.ValueSource(strings = {"SET_STATUS 0", "RESET_DEVICE"})
    @io.jvirtio.core.spec.Conformance("vu-be-10")
    void aResetResetsTheDevicesOwnStateToo(String reset, @TempDir Path dir) throws Exception {
        try (Session s = new Session(dir, () -> new io.jvirtio.devices.blk.BlkDevice(
                new io.jvirtio.devices.blk.MemoryBackend(1 << 20, false), 2))) {
            s.protocolFeatures(REPLY_ACK | (1L << VhostUser.PROTOCOL_F_STATUS) | (1L << VhostUser.PROTOCOL_F_CONFIG)
                    | (1L << VhostUser.PROTOCOL_F_RESET_DEVICE));
            s.memTable();
            s.acked(Message.u64(VhostUser.SET_FEATURES, Feature.maskOf(Feature.VERSION_1, Feature.BLK_FLUSH,
                    Feature.BLK_CONFIG_WCE)));
            s.acked(Message.u64(VhostUser.SET_STATUS, io.jvirtio.core.spec.DeviceStatus.ACKNOWLEDGE
                    | io.jvirtio.core.spec.DeviceStatus.DRIVER | io.jvirtio.core.spec.DeviceStatus.FEATURES_OK));
            startRing(s, 0);
            assertThat(writeback(s)).as("a write-back cache, as the memory back-end has").isEqualTo(1);
            s.acked(Message.of(VhostUser.SET_CONFIG, ByteBuffer.allocate(13).order(ByteOrder.LITTLE_ENDIAN)
                    .putInt(io.jvirtio.core.spec.Blk.CFG_WRITEBACK).putInt(1).putInt(0).put((byte) 0).array()));
            assertThat(writeback(s)).as("the driver turned it off").isZero();
            s.acked(reset.equals("RESET_DEVICE") ? Message.of(VhostUser.RESET_DEVICE, new byte[0])
                    : Message.u64(VhostUser.SET_STATUS, 0));
            assertThat(writeback(s)).as("after %s", reset).isEqualTo(1);
        }
    }
}
