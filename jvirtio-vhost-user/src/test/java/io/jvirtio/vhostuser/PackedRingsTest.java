package io.jvirtio.vhostuser;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.MemoryBackend;
import io.jvirtio.drivers.blk.BlkDriver;
import io.jvirtio.drivers.blk.VirtioBlock;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Packed rings over vhost-user: the back-end offers VIRTIO_F_RING_PACKED, and the ring base messages carry
 * both positions with their wrap counters ("Vring descriptor indices for packed virtqueues").
 */
@Timeout(60)
class PackedRingsTest {

    @Test
    @io.jvirtio.core.spec.Conformance("vu-packed-1")
    void getVringBaseCarriesBothPositionsWithWrapCountersAndTheRingResumesFromThem(@TempDir Path dir) throws Exception {
        MemoryBackend disk = new MemoryBackend(1 << 20, false);
        try (VhostUserBackend backend = new VhostUserBackend(dir.resolve("blk.sock"), () -> new BlkDevice(disk));
             GuestMemory mem = GuestMemory.memfd(0x1_0000_0000L, 16 << 20);
             VhostUserFrontend fe = VhostUserFrontend.connect(backend.socket(), mem,
                     new GuestAllocator(mem, 0x1_0000_0000L, 16 << 20))) {
            assertThat(Feature.RING_PACKED.isSet(fe.getFeatures())).as("offered").isTrue();
            VirtioBus bus = new VirtioBus();
            BlkDriver driver = new BlkDriver();
            bus.registerDriver(driver);
            bus.registerDevice(DeviceType.BLOCK.id(), fe);
            VirtioBlock blk = driver.disks().getFirst();
            assertThat(blk.device().hasFeature(Feature.RING_PACKED)).as("negotiated").isTrue();
            MemorySegment buf = blk.allocateBuffer(4096);
            for (int i = 0; i < 5; i++) {
                buf.fill((byte) (i + 1));
                blk.write(8L * i, buf).get(10, TimeUnit.SECONDS);
            }
            int slots = 5; // each request one slot: its three buffers in an indirect table
            int num = fe.call(Message.of(VhostUser.GET_VRING_BASE, Message.vringState(0, 0))).body().getInt(4);
            assertThat(num & 0x7fff).as("avail slot").isEqualTo(slots);
            assertThat(num & 0x8000).as("avail wrap counter still 1").isNotZero();
            assertThat((num >>> 16) & 0x7fff).as("used slot").isEqualTo(slots);
            assertThat(num >>> 31).as("used wrap counter").isEqualTo(1);
            // the ring resumes from there
            fe.request(Message.of(VhostUser.SET_VRING_BASE, Message.vringState(0, num)));
            fe.restartRing(0);
            buf.fill((byte) 0x77);
            blk.write(64, buf).get(10, TimeUnit.SECONDS);
            MemorySegment back = blk.allocateBuffer(4096);
            blk.read(64, back).get(10, TimeUnit.SECONDS);
            assertThat(back.toArray(ValueLayout.JAVA_BYTE)).containsOnly(0x77);
            blk.read(8, back).get(10, TimeUnit.SECONDS);
            assertThat(back.toArray(ValueLayout.JAVA_BYTE)).containsOnly(2);
        }
    }

    /**
     * DPDK's virtio_user sends SET_VRING_BASE for a packed ring with the available position alone (bit 15 its
     * wrap counter, bits 16–31 zero), and DPDK's own back-end reads it as both positions: a ring stopped and
     * started is drained, so the used side stands where the available one does. Taken as used slot 0 with
     * wrap counter 0 instead, every used descriptor would carry the wrong flags and the driver would wait forever.
     */
    @Test
    @io.jvirtio.core.spec.Conformance("vu-packed-2")
    void aBaseWithoutItsUsedHalfPutsTheUsedPositionWithTheAvailableOne(@TempDir Path dir) throws Exception {
        MemoryBackend disk = new MemoryBackend(1 << 20, false);
        try (VhostUserBackend backend = new VhostUserBackend(dir.resolve("blk.sock"), () -> new BlkDevice(disk));
             GuestMemory mem = GuestMemory.memfd(0x1_0000_0000L, 16 << 20);
             VhostUserFrontend fe = VhostUserFrontend.connect(backend.socket(), mem,
                     new GuestAllocator(mem, 0x1_0000_0000L, 16 << 20))) {
            VirtioBus bus = new VirtioBus();
            BlkDriver driver = new BlkDriver();
            bus.registerDriver(driver);
            bus.registerDevice(DeviceType.BLOCK.id(), fe);
            VirtioBlock blk = driver.disks().getFirst();
            MemorySegment buf = blk.allocateBuffer(4096);
            for (int i = 0; i < 3; i++) {
                buf.fill((byte) (i + 1));
                blk.write(8L * i, buf).get(10, TimeUnit.SECONDS);
            }
            int num = fe.call(Message.of(VhostUser.GET_VRING_BASE, Message.vringState(0, 0))).body().getInt(4);
            assertThat(num).as("slot 3 on both sides, wrap counters 1").isEqualTo(0x8003_8003);
            fe.request(Message.of(VhostUser.SET_VRING_BASE, Message.vringState(0, num & 0xffff)));
            fe.restartRing(0);
            buf.fill((byte) 0x55);
            blk.write(64, buf).get(10, TimeUnit.SECONDS);
            MemorySegment back = blk.allocateBuffer(4096);
            blk.read(64, back).get(10, TimeUnit.SECONDS);
            assertThat(back.toArray(ValueLayout.JAVA_BYTE)).containsOnly(0x55);
            int after = fe.call(Message.of(VhostUser.GET_VRING_BASE, Message.vringState(0, 0))).body().getInt(4);
            assertThat(after).as("two more requests on both sides").isEqualTo(0x8005_8005);
        }
    }
}
