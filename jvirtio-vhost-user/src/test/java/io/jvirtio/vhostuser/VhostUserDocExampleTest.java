package io.jvirtio.vhostuser;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.MemoryBackend;
import io.jvirtio.drivers.blk.BlkDriver;
import io.jvirtio.drivers.blk.VirtioBlock;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;

/** The front-end example of docs/vhost-user.md, against jvirtio's own back-end. */
class VhostUserDocExampleTest {

    @Test
    void frontendExampleRuns(@TempDir Path dir) throws Exception {
        MemoryBackend store = new MemoryBackend(1 << 20, false);
        try (VhostUserBackend backend = new VhostUserBackend(dir.resolve("blk.sock"), () -> new BlkDevice(store))) {
            Path socket = backend.socket();
            try (GuestMemory mem = GuestMemory.memfd(0x1_0000_0000L, 64L << 20);
                 VhostUserFrontend fe = VhostUserFrontend.connect(socket, mem,
                         new GuestAllocator(mem, 0x1_0000_0000L, 64L << 20))) {
                VirtioBus bus = new VirtioBus();
                BlkDriver blk = new BlkDriver();
                bus.registerDriver(blk);
                bus.registerDevice(DeviceType.BLOCK.id(), fe);
                VirtioBlock disk = blk.disks().getFirst();
                byte[] data = new byte[4096];
                java.util.Arrays.fill(data, (byte) 0x42);
                disk.write(0, MemorySegment.ofArray(data)).join();
            }
        }
        assertThat(store.contents().asSlice(0, 4096).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE)).containsOnly(0x42);
    }
}
