package io.jvirtio.interop;

import io.jvirtio.vhostuser.VhostUserFrontend;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.drivers.blk.BlkDriver;
import io.jvirtio.drivers.blk.VirtioBlock;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * jvirtio's vhost-user frontend and virtio-blk driver against QEMU's own back-end,
 * {@code qemu-storage-daemon --export type=vhost-user-blk}; afterwards {@code qemu-io} reads the image
 * and must see what our driver wrote.
 */
class QemuStorageDaemonTest {
    static final long BASE = 0x1_0000_0000L;
    static final long RAM = 64L << 20;

    /** qemu-storage-daemon exporting {@code image} as vhost-user-blk on {@code sock}, once it listens. */
    static Process start(Path image, Path sock, Path log) throws Exception {
        Process qsd = new ProcessBuilder("qemu-storage-daemon",
                "--blockdev", "driver=file,node-name=file0,filename=" + image,
                "--export", "type=vhost-user-blk,id=exp0,node-name=file0,writable=on,addr.type=unix,addr.path=" + sock)
                .redirectErrorStream(true).redirectOutput(log.toFile()).start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!Files.exists(sock) && System.nanoTime() < deadline) {
            assertThat(qsd.isAlive()).as("qemu-storage-daemon running").isTrue();
            Thread.sleep(50);
        }
        return qsd;
    }

    @Test
    void ourDriverWritesThroughQemuStorageDaemon(@TempDir Path dir) throws Exception {
        QemuInteropTest.requireTools();
        Path image = dir.resolve("disk.raw");
        QemuInteropTest.run(List.of("qemu-img", "create", "-f", "raw", image.toString(), "32M"), 60);
        Path sock = dir.resolve("qsd.sock");
        Process qsd = start(image, sock, dir.resolve("qsd.log"));
        byte[] data = new byte[2 << 20];
        new Random(11).nextBytes(data);
        try {
            try (GuestMemory mem = GuestMemory.memfd(BASE, RAM);
                 VhostUserFrontend fe = VhostUserFrontend.connect(sock, mem, new GuestAllocator(mem, BASE, RAM))) {
                VirtioBus bus = new VirtioBus();
                BlkDriver blk = new BlkDriver();
                bus.registerDriver(blk);
                bus.registerDevice(DeviceType.BLOCK.id(), fe);
                assertThat(bus.events()).anyMatch(e -> e.contains("probed by virtio_blk"));
                VirtioBlock disk = blk.disks().getFirst();
                assertThat(disk.capacitySectors()).isEqualTo((32L << 20) / 512);
                List<CompletableFuture<Void>> fs = new ArrayList<>();
                for (int i = 0; i < 32; i++) {
                    fs.add(disk.write(2048 + i * 128L, MemorySegment.ofArray(data).asSlice(i * 65536L, 65536)));
                }
                CompletableFuture.allOf(fs.toArray(CompletableFuture[]::new)).get(30, TimeUnit.SECONDS);
                disk.flush().get(10, TimeUnit.SECONDS);
                MemorySegment back = MemorySegment.ofArray(new byte[data.length]);
                disk.read(2048, back).get(10, TimeUnit.SECONDS);
                assertThat(back.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE)).isEqualTo(data);
            }
        } finally {
            qsd.destroy();
            qsd.waitFor(10, TimeUnit.SECONDS);
        }
        // QEMU's own tools read the image: qemu-img finds it identical to a reference with our bytes at
        // 1 MiB, and qemu-io reads the untouched first MiB as zeroes.
        Path reference = dir.resolve("reference.raw");
        byte[] ref = new byte[32 << 20];
        System.arraycopy(data, 0, ref, 1 << 20, data.length);
        Files.write(reference, ref);
        String cmp = QemuInteropTest.run(List.of("qemu-img", "compare", "-f", "raw", "-F", "raw",
                reference.toString(), image.toString()), 60);
        assertThat(cmp).contains("Images are identical");
        String io = QemuInteropTest.run(List.of("qemu-io", "-f", "raw", "-c", "read -P 0 0 1M", image.toString()), 60);
        assertThat(io).contains("read 1048576/1048576");
    }
}
