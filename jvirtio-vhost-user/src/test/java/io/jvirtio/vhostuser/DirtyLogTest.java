package io.jvirtio.vhostuser;

import io.jvirtio.core.memory.DirtyLog;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.os.Posix;
import io.jvirtio.core.os.UnixSockets;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.rng.RngDevice;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Dirty logging for live migration (LOG_SHMFD, VHOST_F_LOG_ALL): while logging, every page the back-end
 * writes — the data of the buffers it fills and, with VHOST_VRING_F_LOG, the used ring — is marked in the
 * front-end's bitmap; with logging off, nothing is.
 */
@Timeout(30)
class DirtyLogTest {
    static void acked(Channel ch, Message m) throws Exception {
        ch.write(new Message(m.request(), m.flags() | VhostUser.FLAG_NEED_REPLY, m.payload(), m.fds()));
        assertThat(ch.read().u64()).as("%s acked", VhostUser.name(m.request())).isZero();
    }

    /**
     * An entropy device that serves its ring the moment it starts (and at each notification) on the caller's
     * thread: whatever the back-end sets up after starting a queue is too late for its first request.
     */
    static final class EagerRng implements io.jvirtio.core.device.VirtioDeviceModel {
        private final io.jvirtio.core.device.ConfigSpace config = new io.jvirtio.core.device.ConfigSpace(0);
        private final io.jvirtio.core.queue.DescriptorChain chain = new io.jvirtio.core.queue.DescriptorChain();
        private io.jvirtio.core.queue.DeviceQueue queue;

        public io.jvirtio.core.spec.DeviceType type() { return io.jvirtio.core.spec.DeviceType.ENTROPY; }
        public long deviceFeatures() { return Feature.VERSION_1.mask(); }
        public int numQueues() { return 1; }
        public int maxQueueSize(int index) { return 256; }
        public io.jvirtio.core.device.ConfigSpace config() { return config; }
        public void activate(io.jvirtio.core.device.DeviceContext c) {
            startQueue(0, c.queues().get(0), c.interrupts().get(0));
        }
        public synchronized void startQueue(int i, io.jvirtio.core.queue.DeviceQueue q, io.jvirtio.core.queue.Interrupt irq) {
            queue = q;
            serve();
        }
        public synchronized io.jvirtio.core.queue.QueueState stopQueue(int i) {
            io.jvirtio.core.queue.DeviceQueue q = queue;
            queue = null;
            return q == null ? null : q.state();
        }
        public synchronized void queueNotify(int i) { serve(); }
        public synchronized void reset() { queue = null; }

        private void serve() {
            if (queue == null) {
                return;
            }
            try {
                while (queue.pop(chain)) {
                    chain.writeWritable(0, MemorySegment.ofArray(new byte[64]));
                    queue.addUsed(chain, 64);
                }
            } catch (io.jvirtio.core.queue.VirtqueueException e) {
                throw new AssertionError(e);
            }
            queue.publishUsed();
        }
    }

    @org.junit.jupiter.params.ParameterizedTest
    @org.junit.jupiter.params.provider.ValueSource(booleans = {false, true})
    @io.jvirtio.core.spec.Conformance("vu-be-7")
    void whileLoggingTheDataAndTheUsedRingAreMarkedAndOtherwiseNothing(boolean eager, @TempDir Path dir) throws Exception {
        java.util.function.Supplier<io.jvirtio.core.device.VirtioDeviceModel> model = eager ? EagerRng::new : RngDevice::new;
        try (VhostUserBackend rng = new VhostUserBackend(dir.resolve("rng.sock"), model);
             GuestMemory mem = GuestMemory.memfd(0, 1 << 20);
             Channel ch = new Channel(UnixSockets.connect(rng.socket().toString()));
             Arena a = Arena.ofShared()) {
            acked(ch, Message.u64(VhostUser.SET_PROTOCOL_FEATURES,
                    (1L << VhostUser.PROTOCOL_F_LOG_SHMFD) | (1L << VhostUser.PROTOCOL_F_REPLY_ACK)));
            ch.write(Message.of(VhostUser.GET_FEATURES, new byte[0]));
            assertThat(ch.read().u64() & VhostUser.F_LOG_ALL).as("VHOST_F_LOG_ALL offered").isNotZero();
            long user = mem.region(0).segment().address();
            acked(ch, Message.of(VhostUser.SET_MEM_TABLE, ByteBuffer.allocate(40).order(ByteOrder.LITTLE_ENDIAN)
                    .putInt(1).putInt(0).putLong(0).putLong(1 << 20).putLong(user).putLong(0).array(), mem.region(0).fd()));
            int logFd = Posix.memfdCreate("log");
            Posix.ftruncate(logFd, 4096);
            MemorySegment bitmap = Posix.mmapShared(logFd, 0, 4096, a);
            ch.write(Message.of(VhostUser.SET_LOG_BASE, ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN)
                    .putLong(4096).putLong(0).array(), logFd));
            assertThat(ch.read().u64()).as("SET_LOG_BASE answered once mapped").isZero();
            Channel.closeQuietly(logFd);
            DirtyLog view = new DirtyLog(bitmap);
            acked(ch, Message.u64(VhostUser.SET_FEATURES, Feature.VERSION_1.mask() | VhostUser.F_LOG_ALL));
            acked(ch, Message.of(VhostUser.SET_VRING_NUM, Message.vringState(0, 8)));
            acked(ch, Message.of(VhostUser.SET_VRING_ADDR, ByteBuffer.allocate(40).order(ByteOrder.LITTLE_ENDIAN)
                    .putInt(0).putInt(Payloads.VRING_F_LOG).putLong(user + 0x1000).putLong(user + 0x3000)
                    .putLong(user + 0x2000).putLong(0x3000).array()));
            // request 0 fills a buffer in page 8; request 1 (after logging stops) one in page 9
            for (int i = 0; i < 2; i++) {
                mem.writeU64(0x1000 + 16L * i, 0x8000 + 0x1000L * i);
                mem.writeU32(0x1000 + 16L * i + 8, 64);
                mem.writeU16(0x1000 + 16L * i + 12, (short) 2);
                mem.writeU16(0x2000 + 4 + 2L * i, (short) i);
            }
            mem.writeU16(0x2002, (short) 1);
            acked(ch, Message.u64(VhostUser.SET_VRING_CALL, VhostUser.VRING_NOFD));
            acked(ch, Message.u64(VhostUser.SET_VRING_KICK, VhostUser.VRING_NOFD));
            acked(ch, Message.of(VhostUser.SET_VRING_ENABLE, Message.vringState(0, 1)));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while ((mem.readU16(0x3002) & 0xffff) < 1 && System.nanoTime() < deadline) {
                Thread.sleep(2);
            }
            assertThat(mem.readU16(0x3002)).isEqualTo((short) 1);
            assertThat(view.isDirty(8)).as("the filled buffer's page").isTrue();
            assertThat(view.isDirty(3)).as("the used ring's page").isTrue();
            assertThat(view.isDirty(1)).as("the descriptor table: the device only reads it").isFalse();
            assertThat(view.isDirty(2)).as("the available ring: read only").isFalse();

            acked(ch, Message.u64(VhostUser.SET_FEATURES, Feature.VERSION_1.mask())); // logging ends
            bitmap.fill((byte) 0); // the front-end synced the log
            mem.writeU16(0x2002, (short) 2);
            deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while ((mem.readU16(0x3002) & 0xffff) < 2 && System.nanoTime() < deadline) {
                Thread.sleep(2);
            }
            assertThat(mem.readU16(0x3002)).isEqualTo((short) 2);
            for (int p = 0; p < 16; p++) {
                assertThat(view.isDirty(p)).as("page %d with logging off", p).isFalse();
            }
        }
    }
}
