package io.jvirtio.vhostuser;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.os.Posix;
import io.jvirtio.core.os.UnixSockets;
import io.jvirtio.core.spec.DeviceStatus;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.FileBackend;
import io.jvirtio.devices.rng.RngDevice;
import io.jvirtio.drivers.blk.BlkDriver;
import io.jvirtio.drivers.blk.VirtioBlock;
import io.jvirtio.drivers.rng.RngDriver;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/** jvirtio's vhost-user frontend and drivers against jvirtio's vhost-user backend, over a real socket. */
class VhostUserTest {
    static final long RAM = 64L << 20;
    static final long BASE = 0x1_0000_0000L;

    @Test
    void blkDriverOverVhostUserWritesTheBackendsFile(@TempDir Path dir) throws Exception {
        Path image = dir.resolve("disk.img");
        FileBackend file = FileBackend.create(image, 16 << 20);
        try (VhostUserBackend backend = new VhostUserBackend(dir.resolve("blk.sock"), () -> new BlkDevice(file, 2));
             GuestMemory mem = GuestMemory.memfd(BASE, RAM);
             VhostUserFrontend fe = VhostUserFrontend.connect(backend.socket(), mem, new GuestAllocator(mem, BASE, RAM))) {
            VirtioBus bus = new VirtioBus();
            BlkDriver blk = new BlkDriver();
            bus.registerDriver(blk);
            var dev = bus.registerDevice(DeviceType.BLOCK.id(), fe);
            assertThat(dev.status() & DeviceStatus.DRIVER_OK).isNotZero();
            VirtioBlock disk = blk.disks().getFirst();
            assertThat(disk.capacitySectors()).isEqualTo((16 << 20) / 512);
            assertThat(disk.queueCount()).isEqualTo(2);

            byte[] data = new byte[4 << 20];
            new Random(7).nextBytes(data);
            List<CompletableFuture<Void>> fs = new ArrayList<>();
            for (int i = 0; i < 64; i++) {
                fs.add(disk.write(i * 128L, MemorySegment.ofArray(data).asSlice(i * 65536L, 65536)));
            }
            CompletableFuture.allOf(fs.toArray(CompletableFuture[]::new)).get(30, TimeUnit.SECONDS);
            disk.flush().get(10, TimeUnit.SECONDS);
            assertThat(java.util.Arrays.copyOf(Files.readAllBytes(image), data.length)).isEqualTo(data);

            MemorySegment back = MemorySegment.ofArray(new byte[data.length]);
            fs.clear();
            for (int i = 0; i < 64; i++) {
                fs.add(disk.read(i * 128L, back.asSlice(i * 65536L, 65536)));
            }
            CompletableFuture.allOf(fs.toArray(CompletableFuture[]::new)).get(30, TimeUnit.SECONDS);
            assertThat(back.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE)).isEqualTo(data);
            assertThat(disk.id().get(5, TimeUnit.SECONDS)).isEqualTo("disk.img");

            bus.unregisterDevice(dev);
            assertThat(blk.disks()).isEmpty();
        }
        file.close();
    }

    @Test
    void rngOverVhostUser(@TempDir Path dir) throws Exception {
        try (VhostUserBackend backend = new VhostUserBackend(dir.resolve("rng.sock"), RngDevice::new);
             GuestMemory mem = GuestMemory.memfd(BASE, RAM);
             VhostUserFrontend fe = VhostUserFrontend.connect(backend.socket(), mem, new GuestAllocator(mem, BASE, RAM))) {
            VirtioBus bus = new VirtioBus();
            RngDriver rng = new RngDriver();
            bus.registerDriver(rng);
            bus.registerDevice(DeviceType.ENTROPY.id(), fe);
            byte[] b = new byte[20000];
            rng.devices().getFirst().read(b);
            assertThat(new java.util.HashSet<>(java.util.Arrays.asList(box(b))).size()).isGreaterThan(200);
        }
    }

    private static Byte[] box(byte[] b) {
        Byte[] o = new Byte[b.length];
        for (int i = 0; i < b.length; i++) {
            o[i] = b[i];
        }
        return o;
    }

    // ---- hostile frontends ------------------------------------------------------------------------

    /** Sends raw bytes, then checks that the backend hung up on us. */
    private static boolean backendHangsUp(Path socket, byte[] raw, int... fds) throws Exception {
        int fd = UnixSockets.connect(socket.toString());
        try (Channel ch = new Channel(fd)) {
            UnixSockets.sendWithFds(fd, raw, fds);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            try (var a = java.lang.foreign.Arena.ofConfined()) {
                var pollfd = a.allocate(8);
                var st = Posix.callState(a);
                while (System.nanoTime() < deadline) {
                    if (Posix.pollIn(fd, 100, pollfd, st)) {
                        return ch.read() == null;
                    }
                }
            }
            return false;
        }
    }

    private static byte[] header(int request, int flags, int size, byte[] payload) {
        ByteBuffer b = ByteBuffer.allocate(12 + payload.length).order(ByteOrder.LITTLE_ENDIAN);
        return b.putInt(request).putInt(flags).putInt(size).put(payload).array();
    }

    @Test
    void malformedMessagesCloseThatConnectionAndTheServerKeepsServing(@TempDir Path dir) throws Exception {
        try (VhostUserBackend backend = new VhostUserBackend(dir.resolve("x.sock"), RngDevice::new)) {
            Path s = backend.socket();
            // a payload size far beyond any message
            assertThat(backendHangsUp(s, header(VhostUser.GET_FEATURES, 1, 0x7fff_ffff, new byte[0]))).isTrue();
            // wrong protocol version
            assertThat(backendHangsUp(s, header(VhostUser.GET_FEATURES, 2, 0, new byte[0]))).isTrue();
            // unknown request
            assertThat(backendHangsUp(s, header(999, 1, 0, new byte[0]))).isTrue();
            // ring index the device does not have
            assertThat(backendHangsUp(s, header(VhostUser.SET_VRING_NUM, 1, 8, Message.vringState(7, 256)))).isTrue();
            // SET_VRING_NUM with a size that is no power of two
            assertThat(backendHangsUp(s, header(VhostUser.SET_VRING_NUM, 1, 8, Message.vringState(0, 100)))).isTrue();
            // SET_MEM_TABLE announcing a region but carrying no descriptor
            ByteBuffer mt = ByteBuffer.allocate(40).order(ByteOrder.LITTLE_ENDIAN).putInt(1).putInt(0)
                    .putLong(0).putLong(1 << 20).putLong(0x7f0000000000L).putLong(0);
            assertThat(backendHangsUp(s, header(VhostUser.SET_MEM_TABLE, 1, 40, mt.array()))).isTrue();
            // SET_MEM_TABLE claiming 9 regions
            ByteBuffer nine = ByteBuffer.allocate(8 + 32 * 9).order(ByteOrder.LITTLE_ENDIAN).putInt(9);
            assertThat(backendHangsUp(s, header(VhostUser.SET_MEM_TABLE, 1, nine.capacity(), nine.array()))).isTrue();
            // two regions overlapping in the frontend's address space, each with its descriptor
            try (GuestMemory two = GuestMemory.builder().memfd(0, 1 << 20).memfd(1 << 20, 1 << 20).build()) {
                ByteBuffer ov = ByteBuffer.allocate(72).order(ByteOrder.LITTLE_ENDIAN).putInt(2).putInt(0)
                        .putLong(0).putLong(1 << 20).putLong(0x7f00_0000_0000L).putLong(0)
                        .putLong(1 << 20).putLong(1 << 20).putLong(0x7f00_0008_0000L).putLong(0);
                assertThat(backendHangsUp(s, header(VhostUser.SET_MEM_TABLE, 1, 72, ov.array()),
                        two.region(0).fd(), two.region(1).fd())).isTrue();
            }
            // SET_VRING_KICK without its descriptor
            assertThat(backendHangsUp(s, header(VhostUser.SET_VRING_KICK, 1, 8,
                    ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0).array()))).isTrue();
            // a message cut short: header promises 8 bytes, 3 arrive, then the frontend hangs up
            int fd = UnixSockets.connect(s.toString());
            UnixSockets.sendWithFds(fd, header(VhostUser.SET_FEATURES, 1, 8, new byte[3]), new int[0]);
            Channel.closeQuietly(fd);

            // ... and a well-behaved frontend still gets served
            try (GuestMemory mem = GuestMemory.memfd(BASE, RAM);
                 VhostUserFrontend fe = VhostUserFrontend.connect(s, mem, new GuestAllocator(mem, BASE, RAM))) {
                VirtioBus bus = new VirtioBus();
                RngDriver rng = new RngDriver();
                bus.registerDriver(rng);
                bus.registerDevice(DeviceType.ENTROPY.id(), fe);
                rng.devices().getFirst().read(new byte[64]);
            }
            assertThat(backend.connections()).isEqualTo(11);
        }
    }

    /** A raw front-end that sets up ring 0 of an rng back-end by hand, with a descriptor it chooses. */
    private static final class RawRing implements AutoCloseable {
        final GuestMemory mem;
        final Channel ch;
        final long user;

        RawRing(VhostUserBackend backend) throws Exception {
            mem = GuestMemory.memfd(0, 1 << 20);
            ch = new Channel(UnixSockets.connect(backend.socket().toString()));
            var region = mem.region(0);
            user = region.segment().address();
            ByteBuffer mt = ByteBuffer.allocate(40).order(ByteOrder.LITTLE_ENDIAN).putInt(1).putInt(0)
                    .putLong(0).putLong(1 << 20).putLong(user).putLong(0);
            ch.write(Message.of(VhostUser.SET_MEM_TABLE, mt.array(), region.fd()));
            ch.write(Message.u64(VhostUser.SET_FEATURES, io.jvirtio.core.spec.Feature.VERSION_1.mask()));
            ch.write(Message.of(VhostUser.SET_VRING_NUM, Message.vringState(0, 8)));
            // ring at 0x1000: descriptor table, avail at 0x1080, used at 0x1100
            ByteBuffer addr = ByteBuffer.allocate(40).order(ByteOrder.LITTLE_ENDIAN).putInt(0).putInt(0)
                    .putLong(user + 0x1000).putLong(user + 0x1100).putLong(user + 0x1080).putLong(0);
            ch.write(Message.of(VhostUser.SET_VRING_ADDR, addr.array()));
        }

        void desc(int i, long addr, int len, int flags, int next) throws Exception {
            long d = 0x1000 + 16L * i;
            mem.writeU64(d, addr);
            mem.writeU32(d + 8, len);
            mem.writeU16(d + 12, (short) flags);
            mem.writeU16(d + 14, (short) next);
        }

        void offerHead0() throws Exception {
            mem.writeU16(0x1080 + 4, (short) 0);
            mem.writeU16(0x1080 + 2, (short) 1);
        }

        int usedIdx() throws Exception {
            return mem.readU16(0x1100 + 2) & 0xffff;
        }

        private boolean closed;

        @Override
        public void close() {
            if (!closed) {
                closed = true;
                ch.close();
                mem.close();
            }
        }
    }

    private static boolean readable(int fd, int seconds) throws Exception {
        try (var a = java.lang.foreign.Arena.ofConfined()) {
            var pollfd = a.allocate(8);
            var st = Posix.callState(a);
            for (int i = 0; i < seconds * 10; i++) {
                if (Posix.pollIn(fd, 100, pollfd, st)) {
                    return true;
                }
            }
        }
        return false;
    }

    @org.junit.jupiter.params.ParameterizedTest(name = "{0}")
    @org.junit.jupiter.params.provider.ValueSource(strings = {"descriptor loop", "buffer outside the memory table",
            "length wrapping the address space"})
    void maliciousRingSignalsTheErrorEventfdAndTouchesNothing(String attack, @TempDir Path dir) throws Exception {
        try (VhostUserBackend backend = new VhostUserBackend(dir.resolve("r.sock"), RngDevice::new);
             RawRing ring = new RawRing(backend)) {
            switch (attack) {
                case "descriptor loop" -> {
                    ring.desc(0, 0x8000, 64, 3, 1);
                    ring.desc(1, 0x8000, 64, 3, 0);
                }
                case "buffer outside the memory table" -> ring.desc(0, 2L << 20, 64, 2, 0);
                default -> ring.desc(0, 0x8000, -1, 2, 0);
            }
            ring.offerHead0();
            int err = Posix.eventfd();
            int kick = Posix.eventfd();
            ring.ch.write(Message.u64(VhostUser.SET_VRING_ERR, 0, err));
            ring.ch.write(Message.u64(VhostUser.SET_VRING_CALL, VhostUser.VRING_NOFD));
            ring.ch.write(Message.u64(VhostUser.SET_VRING_KICK, 0, kick));
            assertThat(readable(err, 5)).as("the back-end reported the broken ring on the error eventfd").isTrue();
            assertThat(ring.usedIdx()).as("nothing was marked used").isZero();
            Channel.closeQuietly(err);
            Channel.closeQuietly(kick);
            ring.close();
            // ... and the back-end still serves a well-behaved front-end
            runRngSession(backend);
        }
    }

    /**
     * A back-end killed after publishing used buffers and before writing the call fd: the driver was never
     * told, and nothing the new back-end uses later need cross its used_event again. The ring's start says so —
     * at once, or, when the call fd comes after the kick (QEMU's order), as soon as it does.
     */
    @io.jvirtio.core.spec.Conformance("vu-be-11")
    @org.junit.jupiter.params.ParameterizedTest(name = "call fd before the kick: {0}")
    @org.junit.jupiter.params.provider.ValueSource(booleans = {true, false})
    void aStartingRingNotifiesForWhatThePreviousBackEndUsedWithoutSaying(boolean callFirst, @TempDir Path dir)
            throws Exception {
        try (VhostUserBackend backend = new VhostUserBackend(dir.resolve("s.sock"), RngDevice::new);
             RawRing ring = new RawRing(backend)) {
            ring.desc(0, 0x8000, 64, 2, 0);
            ring.desc(1, 0x8100, 64, 2, 0);
            ring.mem.writeU16(0x1080 + 4, (short) 0);
            ring.mem.writeU16(0x1080 + 6, (short) 1);
            ring.mem.writeU16(0x1080 + 2, (short) 2);
            ring.mem.writeU32(0x1100 + 4, 0);       // both used by the back-end before: ids and lengths
            ring.mem.writeU32(0x1100 + 8, 64);
            ring.mem.writeU32(0x1100 + 12, 1);
            ring.mem.writeU32(0x1100 + 16, 64);
            ring.mem.writeU16(0x1100 + 2, (short) 2);
            ring.ch.write(Message.of(VhostUser.SET_VRING_BASE, Message.vringState(0, 2)));
            int call = Posix.eventfd();
            int kick = Posix.eventfd();
            try {
                if (callFirst) {
                    ring.ch.write(Message.u64(VhostUser.SET_VRING_CALL, 0, call));
                }
                ring.ch.write(Message.u64(VhostUser.SET_VRING_KICK, 0, kick));
                if (!callFirst) {
                    // QEMU's order: the kick, then the call fd; the notification waits for it, never lost
                    ring.ch.write(Message.u64(VhostUser.SET_VRING_CALL, 0, call));
                }
                assertThat(readable(call, 5)).as("the driver is told when the ring starts").isTrue();
                assertThat(ring.usedIdx()).as("with nothing new used").isEqualTo(2);
            } finally {
                Channel.closeQuietly(call);
                Channel.closeQuietly(kick);
            }
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("vu-be-5")
    void kickWithoutDescriptorMeansTheBackendPolls(@TempDir Path dir) throws Exception {
        try (VhostUserBackend backend = new VhostUserBackend(dir.resolve("p.sock"), RngDevice::new);
             RawRing ring = new RawRing(backend)) {
            ring.desc(0, 0x8000, 64, 2, 0);
            ring.ch.write(Message.u64(VhostUser.SET_VRING_CALL, VhostUser.VRING_NOFD));
            ring.ch.write(Message.u64(VhostUser.SET_VRING_KICK, VhostUser.VRING_NOFD));
            Thread.sleep(50);
            ring.offerHead0(); // offered after the ring started, and never kicked
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while (ring.usedIdx() == 0 && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            assertThat(ring.usedIdx()).as("a polling back-end found the buffer without a kick").isEqualTo(1);
            assertThat(ring.mem.readU32(0x1100 + 8)).as("used length").isEqualTo(64);
        }
    }

    private static long openFds() throws Exception {
        try (var s = Files.list(Path.of("/proc/self/fd"))) {
            return s.count();
        }
    }

    private static long guestRamMappings() throws Exception {
        return Files.readAllLines(Path.of("/proc/self/maps")).stream().filter(l -> l.contains("jvirtio-guest-ram")).count();
    }

    @Test
    void aSessionLeavesNoDescriptorAndNoMappingBehind(@TempDir Path dir) throws Exception {
        try (VhostUserBackend backend = new VhostUserBackend(dir.resolve("leak.sock"), RngDevice::new)) {
            // warm up class loading and the JIT's own descriptors
            runRngSession(backend);
            long fds = openFds();
            long maps = guestRamMappings();
            for (int i = 0; i < 5; i++) {
                runRngSession(backend);
            }
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while (backend.activeSessions() > 0 && System.nanoTime() < deadline) {
                Thread.sleep(10);
            }
            assertThat(openFds()).as("descriptors after 5 sessions").isEqualTo(fds);
            assertThat(guestRamMappings()).as("guest memory mappings after 5 sessions").isEqualTo(maps);
        }
    }

    /** A whole entropy session through jvirtio's front-end and driver; waits until the back-end ended it. */
    static void runRngSession(VhostUserBackend backend) throws Exception {
        try (GuestMemory mem = GuestMemory.memfd(BASE, 8 << 20);
             VhostUserFrontend fe = VhostUserFrontend.connect(backend.socket(), mem, new GuestAllocator(mem, BASE, 8 << 20))) {
            VirtioBus bus = new VirtioBus();
            RngDriver rng = new RngDriver();
            bus.registerDriver(rng);
            var dev = bus.registerDevice(DeviceType.ENTROPY.id(), fe);
            byte[] b = new byte[256];
            rng.devices().getFirst().read(b);
            assertThat(b).as("entropy arrived").isNotEqualTo(new byte[256]);
            bus.unregisterDevice(dev);
        }
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (backend.activeSessions() > 0 && System.nanoTime() < deadline) {
            Thread.sleep(10);
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("vu-be-4")
    void getVringBaseStopsTheRingAndReportsWhereItGot(@TempDir Path dir) throws Exception {
        try (VhostUserBackend backend = new VhostUserBackend(dir.resolve("base.sock"), RngDevice::new);
             RawRing ring = new RawRing(backend)) {
            // three one-descriptor requests at heads 0..2, offered before the ring starts
            for (int i = 0; i < 3; i++) {
                ring.desc(i, 0x8000 + 64L * i, 64, 2, 0);
                ring.mem.writeU16(0x1080 + 4 + 2L * i, (short) i);
            }
            ring.mem.writeU16(0x1080 + 2, (short) 3);
            int kick = Posix.eventfd();
            ring.ch.write(Message.u64(VhostUser.SET_VRING_CALL, VhostUser.VRING_NOFD));
            ring.ch.write(Message.u64(VhostUser.SET_VRING_KICK, 0, kick));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while (ring.usedIdx() < 3 && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            assertThat(ring.usedIdx()).isEqualTo(3);
            ring.ch.write(Message.of(VhostUser.GET_VRING_BASE, Message.vringState(0, 0)));
            Message reply = ring.ch.read();
            assertThat(reply.request()).isEqualTo(VhostUser.GET_VRING_BASE);
            assertThat(reply.body().getInt(0)).isEqualTo(0);
            assertThat(reply.body().getInt(4)).as("last_avail_idx: three chains taken").isEqualTo(3);
            // stopped: a buffer offered now is not used, even when kicked
            ring.desc(3, 0x9000, 64, 2, 0);
            ring.mem.writeU16(0x1080 + 4 + 6, (short) 3);
            ring.mem.writeU16(0x1080 + 2, (short) 4);
            try (var a = java.lang.foreign.Arena.ofConfined()) {
                Posix.eventfdSignal(kick, a.allocate(8), Posix.callState(a));
            }
            Thread.sleep(200);
            assertThat(ring.usedIdx()).as("a stopped ring is left alone").isEqualTo(3);
            Channel.closeQuietly(kick);
        }
    }
}
