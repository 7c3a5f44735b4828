package io.jvirtio.vhostuser;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.os.Posix;
import io.jvirtio.core.os.UnixSockets;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.MemoryBackend;
import io.jvirtio.devices.net.NetDevice;
import io.jvirtio.devices.net.VirtualSwitch;
import io.jvirtio.devices.rng.RngDevice;
import io.jvirtio.drivers.rng.RngDriver;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * What a fuzzer found against {@code serve blk|net}: nothing a front-end does may leak memory, mappings,
 * descriptors or threads of the back-end, wedge a session, or stop the server from accepting.
 */
@org.junit.jupiter.api.Timeout(60)
class BackendRobustnessTest {
    static final long BASE = 0x1_0000_0000L;

    private static long guestRamMappings() throws Exception {
        return Files.readAllLines(Path.of("/proc/self/maps")).stream().filter(l -> l.contains("jvirtio-guest-ram")).count();
    }

    /** True when the back-end hung up: end of stream, or a reset because it closed with our data unread. */
    private static boolean closedByPeer(Channel ch) throws Exception {
        try {
            return ch.read() == null;
        } catch (io.jvirtio.core.os.NativeException e) {
            return e.errno() == 104; // ECONNRESET
        }
    }

    private static void awaitNoSessions(VhostUserBackend backend) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (backend.activeSessions() > 0 && System.nanoTime() < deadline) {
            Thread.sleep(5);
        }
    }

    private static void rngSession(VhostUserBackend backend) throws Exception {
        VhostUserTest.runRngSession(backend);
    }

    @Test
    void netConnectionsReleaseTheirSwitchPortWhenTheyEnd(@TempDir Path dir) throws Exception {
        VirtualSwitch sw = new VirtualSwitch();
        int[] n = {0};
        try (VhostUserBackend backend = new VhostUserBackend(dir.resolve("net.sock"),
                () -> new NetDevice(sw.port(), new byte[] {0x52, 0x54, 1, 0, 0, (byte) ++n[0]}, 1))) {
            for (int i = 0; i < 40; i++) {
                try (Channel ch = new Channel(UnixSockets.connect(backend.socket().toString()))) {
                    ch.write(Message.of(VhostUser.GET_FEATURES, new byte[0]));
                    assertThat(ch.read().u64() & Feature.NET_MAC.mask()).isNotZero();
                }
            }
            awaitNoSessions(backend);
            assertThat(sw.portCount()).as("switch ports left by 40 finished connections").isZero();
        }
    }

    @Test
    void aConnectionWhoseDeviceCannotBeMadeDoesNotStopTheServer(@TempDir Path dir) throws Exception {
        AtomicBoolean first = new AtomicBoolean(true);
        try (VhostUserBackend backend = new VhostUserBackend(dir.resolve("oom.sock"), () -> {
            if (first.getAndSet(false)) {
                throw new OutOfMemoryError("Cannot reserve 4718592 bytes of direct buffer memory (test)");
            }
            return new RngDevice();
        })) {
            try (Channel ch = new Channel(UnixSockets.connect(backend.socket().toString()))) {
                boolean closed;
                try {
                    ch.write(Message.of(VhostUser.GET_FEATURES, new byte[0]));
                    closed = closedByPeer(ch);
                } catch (io.jvirtio.core.os.NativeException e) {
                    closed = e.errno() == 32; // EPIPE: it was closed before our request got there
                }
                assertThat(closed).as("that connection is closed").isTrue();
            }
            rngSession(backend);
            assertThat(backend.connections()).isEqualTo(2);
        }
    }

    /** SET_MEM_TABLE of two good memfd regions and a third that {@code bad} describes. */
    private static boolean memTableRefusedLeavingNoMapping(VhostUserBackend backend, long guest3, long offset3,
                                                           int fd3) throws Exception {
        try (GuestMemory mem = GuestMemory.builder().memfd(0, 1 << 20).memfd(1 << 20, 1 << 20).build()) {
            long before = guestRamMappings();
            ByteBuffer mt = ByteBuffer.allocate(8 + 32 * 3).order(ByteOrder.LITTLE_ENDIAN).putInt(3).putInt(0);
            mt.putLong(0).putLong(1 << 20).putLong(0x7f00_0000_0000L).putLong(0);
            mt.putLong(1 << 20).putLong(1 << 20).putLong(0x7f00_0010_0000L).putLong(0);
            mt.putLong(guest3).putLong(1 << 20).putLong(0x7f00_0020_0000L).putLong(offset3);
            boolean closed;
            try (Channel ch = new Channel(UnixSockets.connect(backend.socket().toString()))) {
                ch.write(Message.of(VhostUser.SET_MEM_TABLE, mt.array(), mem.region(0).fd(), mem.region(1).fd(), fd3));
                closed = closedByPeer(ch);
            }
            awaitNoSessions(backend);
            return closed && guestRamMappings() == before;
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("vu-be-6")
    void aRefusedMemoryTableLeavesNothingMapped(@TempDir Path dir) throws Exception {
        try (VhostUserBackend backend = new VhostUserBackend(dir.resolve("mt.sock"), RngDevice::new);
             GuestMemory third = GuestMemory.memfd(0, 1 << 20)) {
            int fd = third.region(0).fd();
            int eventfd = Posix.eventfd();
            try {
                assertThat(memTableRefusedLeavingNoMapping(backend, 2 << 20, 0, eventfd))
                        .as("third region's descriptor cannot be mapped").isTrue();
                assertThat(memTableRefusedLeavingNoMapping(backend, -4096, 0, fd))
                        .as("third region wraps the guest address space").isTrue();
                assertThat(memTableRefusedLeavingNoMapping(backend, 2 << 20, 2 << 20, fd))
                        .as("third region lies beyond the end of its memfd (would fault on access)").isTrue();
            } finally {
                Channel.closeQuietly(eventfd);
            }
            rngSession(backend);
        }
    }

    @Test
    void aCallDescriptorThatWouldBlockNeitherWedgesTheSessionNorTheDisconnect(@TempDir Path dir) throws Exception {
        try (VhostUserBackend backend = new VhostUserBackend(dir.resolve("call.sock"), RngDevice::new)) {
            GuestMemory mem = GuestMemory.memfd(0, 1 << 20);
            Channel ch = new Channel(UnixSockets.connect(backend.socket().toString()));
            int call = Posix.eventfd();
            int kick = Posix.eventfd();
            try (Arena a = Arena.ofConfined()) {
                // an eventfd one short of its maximum: a blocking write of 1 would wait forever
                MemorySegment max = a.allocate(8);
                max.set(ValueLayout.JAVA_LONG, 0, 0xffff_ffff_ffff_fffeL);
                Posix.write(call, max, Posix.callState(a));
                long user = mem.region(0).segment().address();
                ch.write(Message.of(VhostUser.SET_MEM_TABLE, ByteBuffer.allocate(40).order(ByteOrder.LITTLE_ENDIAN)
                        .putInt(1).putInt(0).putLong(0).putLong(1 << 20).putLong(user).putLong(0).array(), mem.region(0).fd()));
                ch.write(Message.u64(VhostUser.SET_FEATURES, Feature.VERSION_1.mask()));
                ch.write(Message.of(VhostUser.SET_VRING_NUM, Message.vringState(0, 8)));
                ch.write(Message.of(VhostUser.SET_VRING_ADDR, ByteBuffer.allocate(40).order(ByteOrder.LITTLE_ENDIAN)
                        .putInt(0).putInt(0).putLong(user + 0x1000).putLong(user + 0x1100).putLong(user + 0x1080)
                        .putLong(0).array()));
                mem.writeU64(0x1000, 0x8000);
                mem.writeU32(0x1008, 64);
                mem.writeU16(0x100c, (short) 2); // WRITE
                mem.writeU16(0x1080 + 4, (short) 0);
                mem.writeU16(0x1080 + 2, (short) 1);
                ch.write(Message.u64(VhostUser.SET_VRING_CALL, 0, call));
                ch.write(Message.u64(VhostUser.SET_VRING_KICK, 0, kick));
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
                while ((mem.readU16(0x1100 + 2) & 0xffff) == 0 && System.nanoTime() < deadline) {
                    Thread.sleep(5);
                }
                assertThat(mem.readU16(0x1100 + 2)).as("the request completed").isEqualTo((short) 1);
            } finally {
                ch.close();
                Channel.closeQuietly(call);
                Channel.closeQuietly(kick);
            }
            long start = System.nanoTime();
            awaitNoSessions(backend);
            assertThat(backend.activeSessions()).as("the session ended after the disconnect").isZero();
            assertThat(System.nanoTime() - start).isLessThan(TimeUnit.SECONDS.toNanos(5));
            mem.close();
            rngSession(backend);
        }
    }

    private static Message ask(Channel ch, int request, byte[] payload) throws Exception {
        ch.write(new Message(request, VhostUser.VERSION | VhostUser.FLAG_NEED_REPLY, payload, new int[0]));
        return ch.read();
    }

    @Test
    @io.jvirtio.core.spec.Conformance("vu-be-2")
    void aFailedRequestWithReplyAckGetsANonZeroAckAndTheSessionGoesOn(@TempDir Path dir) throws Exception {
        try (VhostUserBackend backend = new VhostUserBackend(dir.resolve("ack.sock"), RngDevice::new);
             Channel ch = new Channel(UnixSockets.connect(backend.socket().toString()))) {
            ch.write(Message.u64(VhostUser.SET_FEATURES, VhostUser.F_PROTOCOL_FEATURES | Feature.VERSION_1.mask()));
            ch.write(Message.u64(VhostUser.SET_PROTOCOL_FEATURES, 1L << VhostUser.PROTOCOL_F_REPLY_ACK));
            Message bad = ask(ch, VhostUser.SET_VRING_NUM, Message.vringState(0, 100));
            assertThat(bad.request()).isEqualTo(VhostUser.SET_VRING_NUM);
            assertThat(bad.u64()).as("ack of a queue size that is no power of two").isNotZero();
            Message good = ask(ch, VhostUser.SET_VRING_NUM, Message.vringState(0, 64));
            assertThat(good.u64()).as("the session went on").isZero();
        }
    }

    /** GET/SET_INFLIGHT_FD's payload: mmap_size, mmap_offset, num_queues, queue_size (padded to 24 bytes). */
    private static byte[] inflight(int queues, int queueSize) {
        return ByteBuffer.allocate(24).order(ByteOrder.LITTLE_ENDIAN).putLong(0).putLong(0).putShort((short) queues)
                .putShort((short) queueSize).array();
    }

    @Test
    @io.jvirtio.core.spec.Conformance("vu-inflight-4")
    void inflightTrackingIsOfferedOnlyWhereTheDeviceResumesAndUsedOnlyOnceNegotiated(@TempDir Path dir)
            throws Exception {
        long inflightShmfd = 1L << VhostUser.PROTOCOL_F_INFLIGHT_SHMFD;
        VirtualSwitch sw = new VirtualSwitch();
        try (VhostUserBackend net = new VhostUserBackend(dir.resolve("net.sock"),
                () -> new NetDevice(sw.port(), new byte[] {0x52, 0x54, 1, 0, 0, 1}, 1))) {
            try (Channel ch = new Channel(UnixSockets.connect(net.socket().toString()))) {
                assertThat(ask(ch, VhostUser.GET_PROTOCOL_FEATURES, new byte[0]).u64() & inflightShmfd)
                        .as("a NIC gives receive buffers back unused: no in-flight log offered").isZero();
                ch.write(Message.u64(VhostUser.SET_PROTOCOL_FEATURES, inflightShmfd));
                assertThat(closedByPeer(ch)).as("SET_PROTOCOL_FEATURES with the bit never offered").isTrue();
            }
            try (Channel ch = new Channel(UnixSockets.connect(net.socket().toString()))) {
                ch.write(Message.of(VhostUser.GET_INFLIGHT_FD, inflight(2, 256)));
                assertThat(closedByPeer(ch)).as("GET_INFLIGHT_FD without INFLIGHT_SHMFD negotiated").isTrue();
            }
        }
        MemoryBackend disk = new MemoryBackend(1 << 20, false);
        try (VhostUserBackend blk = new VhostUserBackend(dir.resolve("blk.sock"), () -> new BlkDevice(disk))) {
            try (Channel ch = new Channel(UnixSockets.connect(blk.socket().toString()))) {
                assertThat(ask(ch, VhostUser.GET_PROTOCOL_FEATURES, new byte[0]).u64() & inflightShmfd)
                        .as("a block device resubmits what a dead back-end left in flight").isNotZero();
                ch.write(Message.u64(VhostUser.SET_FEATURES, VhostUser.F_PROTOCOL_FEATURES | Feature.VERSION_1.mask()));
                ch.write(Message.u64(VhostUser.SET_PROTOCOL_FEATURES, 1L << VhostUser.PROTOCOL_F_REPLY_ACK));
                Message refused = ask(ch, VhostUser.SET_INFLIGHT_FD, inflight(1, 256));
                assertThat(refused.request()).isEqualTo(VhostUser.SET_INFLIGHT_FD);
                assertThat(refused.u64()).as("ack of SET_INFLIGHT_FD before INFLIGHT_SHMFD was negotiated").isNotZero();
                ch.write(Message.u64(VhostUser.SET_PROTOCOL_FEATURES,
                        (1L << VhostUser.PROTOCOL_F_REPLY_ACK) | inflightShmfd));
                ch.write(Message.of(VhostUser.GET_INFLIGHT_FD, inflight(1, 256)));
                Message given = ch.read();
                assertThat(given.request()).isEqualTo(VhostUser.GET_INFLIGHT_FD);
                assertThat(given.fds()).as("the log's descriptor").hasSize(1);
                assertThat(given.body().getLong(0)).as("mmap_size").isPositive();
                Channel.closeQuietly(given.fds()[0]);
            }
            try (Channel ch = new Channel(UnixSockets.connect(blk.socket().toString()))) {
                ch.write(Message.of(VhostUser.GET_INFLIGHT_FD, inflight(1, 256)));
                assertThat(closedByPeer(ch)).as("GET_INFLIGHT_FD without INFLIGHT_SHMFD negotiated").isTrue();
            }
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("vu-be-3")
    void getConfigOutOfRangeAnswersAnEmptyPayloadAndTheSessionGoesOn(@TempDir Path dir) throws Exception {
        try (VhostUserBackend backend = new VhostUserBackend(dir.resolve("cfg.sock"),
                () -> new io.jvirtio.devices.console.ConsoleDevice(new io.jvirtio.devices.console.EchoBackend(), 80, 25));
             Channel ch = new Channel(UnixSockets.connect(backend.socket().toString()))) {
            ByteBuffer early = ByteBuffer.allocate(12 + 4).order(ByteOrder.LITTLE_ENDIAN).putInt(0).putInt(4).putInt(0);
            ch.write(Message.of(VhostUser.GET_CONFIG, early.array()));
            assertThat(ch.read().size()).as("GET_CONFIG before PROTOCOL_F_CONFIG was negotiated: failed").isZero();
            ch.write(Message.u64(VhostUser.SET_PROTOCOL_FEATURES, 1L << VhostUser.PROTOCOL_F_CONFIG));
            ByteBuffer out = ByteBuffer.allocate(12 + 8).order(ByteOrder.LITTLE_ENDIAN).putInt(0x2000).putInt(8).putInt(0);
            ch.write(Message.of(VhostUser.GET_CONFIG, out.array()));
            Message refused = ch.read();
            assertThat(refused.request()).isEqualTo(VhostUser.GET_CONFIG);
            assertThat(refused.size()).as("zero-length payload: failed").isZero();
            ByteBuffer in = ByteBuffer.allocate(12 + 4).order(ByteOrder.LITTLE_ENDIAN).putInt(0).putInt(4).putInt(0);
            ch.write(Message.of(VhostUser.GET_CONFIG, in.array()));
            Message cfg = ch.read();
            assertThat(cfg.size()).isEqualTo(16);
            assertThat(cfg.body().getShort(12)).as("cols").isEqualTo((short) 80);
            assertThat(cfg.body().getShort(14)).as("rows").isEqualTo((short) 25);
        }
    }

    @org.junit.jupiter.params.ParameterizedTest(name = "after RESET_OWNER: {0}")
    @org.junit.jupiter.params.provider.ValueSource(booleans = {false, true})
    @io.jvirtio.core.spec.Conformance({"vu-be-1", "vu-be-8"})
    void aStartedButDisabledTransmitRingIsConsumedAndItsFramesDiscarded(boolean afterReset, @TempDir Path dir)
            throws Exception {
        VirtualSwitch sw = new VirtualSwitch();
        java.util.concurrent.atomic.AtomicInteger seen = new java.util.concurrent.atomic.AtomicInteger();
        var wire = sw.port();
        wire.connect((frame, at, length) -> seen.incrementAndGet());
        try (VhostUserBackend backend = new VhostUserBackend(dir.resolve("tx.sock"),
                () -> new NetDevice(sw.port(), new byte[] {0x52, 0x54, 1, 0, 0, 1}, 1));
             GuestMemory mem = GuestMemory.memfd(0, 1 << 20);
             Channel ch = new Channel(UnixSockets.connect(backend.socket().toString()))) {
            long user = mem.region(0).segment().address();
            ch.write(Message.of(VhostUser.SET_MEM_TABLE, ByteBuffer.allocate(40).order(ByteOrder.LITTLE_ENDIAN)
                    .putInt(1).putInt(0).putLong(0).putLong(1 << 20).putLong(user).putLong(0).array(), mem.region(0).fd()));
            ch.write(Message.u64(VhostUser.SET_FEATURES, VhostUser.F_PROTOCOL_FEATURES | Feature.VERSION_1.mask()));
            if (afterReset) {
                // vu-be-8: the reset keeps the acknowledged features, so the ring still starts disabled
                ch.write(Message.of(VhostUser.RESET_OWNER, new byte[0]));
            }
            ch.write(Message.of(VhostUser.SET_VRING_NUM, Message.vringState(1, 8)));
            ch.write(Message.of(VhostUser.SET_VRING_ADDR, ByteBuffer.allocate(40).order(ByteOrder.LITTLE_ENDIAN)
                    .putInt(1).putInt(0).putLong(user + 0x1000).putLong(user + 0x1200).putLong(user + 0x1100)
                    .putLong(0).array()));
            int kick = Posix.eventfd();
            try (var a = java.lang.foreign.Arena.ofConfined()) {
                ch.write(Message.u64(VhostUser.SET_VRING_CALL, 1 | VhostUser.VRING_NOFD));
                ch.write(Message.u64(VhostUser.SET_VRING_KICK, 1, kick)); // started; with PROTOCOL_FEATURES: disabled
                for (int i = 0; i < 2; i++) {
                    long buf = 0x8000 + 0x100L * i;
                    mem.writeU64(buf + 12, 0xffff_ffff_ffffL); // broadcast destination, after the 12-byte header
                    mem.writeU64(0x1000 + 16L * i, buf);
                    mem.writeU32(0x1000 + 16L * i + 8, 12 + 60);
                    mem.writeU16(0x1100 + 4 + 2L * i, (short) i);
                }
                mem.writeU16(0x1102, (short) 1);
                Posix.eventfdSignal(kick, a.allocate(8), Posix.callState(a));
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
                while ((mem.readU16(0x1202) & 0xffff) < 1 && System.nanoTime() < deadline) {
                    Thread.sleep(2);
                }
                assertThat(mem.readU16(0x1202)).as("the disabled ring was processed").isEqualTo((short) 1);
                assertThat(seen.get()).as("its frame was discarded, not sent to the switch").isZero();

                ch.write(Message.of(VhostUser.SET_VRING_ENABLE, Message.vringState(1, 1)));
                ch.write(Message.of(VhostUser.GET_FEATURES, new byte[0]));
                assertThat(ch.read().request()).as("messages are handled in order: the ring is enabled now")
                        .isEqualTo(VhostUser.GET_FEATURES);
                mem.writeU16(0x1102, (short) 2);
                Posix.eventfdSignal(kick, a.allocate(8), Posix.callState(a));
                deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
                while (seen.get() == 0 && System.nanoTime() < deadline) {
                    Thread.sleep(2);
                }
                assertThat(seen.get()).as("once enabled, frames go out").isEqualTo(1);
            } finally {
                Channel.closeQuietly(kick);
            }
        }
    }
}
