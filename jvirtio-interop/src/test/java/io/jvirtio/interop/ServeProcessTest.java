package io.jvirtio.interop;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.drivers.blk.BlkDriver;
import io.jvirtio.drivers.blk.VirtioBlock;
import io.jvirtio.vhostuser.VhostUserFrontend;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/** {@code jvirtio serve blk} as a process: serves, prints statistics, and stops cleanly on SIGTERM. */
class ServeProcessTest {

    @Test
    void sigtermStopsCleanlyWithEveryAcknowledgedWriteInTheFile(@TempDir Path dir) throws Exception {
        Path image = dir.resolve("disk.img");
        try (var f = new java.io.RandomAccessFile(image.toFile(), "rw")) {
            f.setLength(16L << 20);
        }
        Path socket = dir.resolve("blk.sock");
        Path log = dir.resolve("serve.log");
        String javaBin = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process serve = new ProcessBuilder(javaBin, "--enable-native-access=ALL-UNNAMED", "-cp",
                System.getProperty("java.class.path"), "io.jvirtio.cli.Main", "serve", "blk",
                "--socket", socket.toString(), "--image", image.toString(), "--stats", "1")
                .redirectErrorStream(true).redirectOutput(log.toFile()).start();
        byte[] data = new byte[1 << 20];
        new Random(3).nextBytes(data);
        try {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (!Files.exists(socket) && System.nanoTime() < deadline) {
                Thread.sleep(20);
            }
            try (GuestMemory mem = GuestMemory.memfd(0x1_0000_0000L, 32L << 20);
                 VhostUserFrontend fe = VhostUserFrontend.connect(socket, mem,
                         new GuestAllocator(mem, 0x1_0000_0000L, 32L << 20))) {
                VirtioBus bus = new VirtioBus();
                BlkDriver blk = new BlkDriver();
                bus.registerDriver(blk);
                bus.registerDevice(DeviceType.BLOCK.id(), fe);
                VirtioBlock disk = blk.disks().getFirst();
                disk.write(100, MemorySegment.ofArray(data)).get(10, TimeUnit.SECONDS); // acknowledged
                Thread.sleep(1500); // one statistics line
                serve.destroy(); // SIGTERM while the front-end is still connected
                assertThat(serve.waitFor(20, TimeUnit.SECONDS)).isTrue();
            }
        } finally {
            serve.destroyForcibly();
        }
        String out = Files.readString(log);
        assertThat(out).contains("serving " + image).contains("blk: 0 reads").contains("1 writes (1 MiB)")
                .contains("jvirtio serve: stopped after 1 connection(s)");
        assertThat(out).as("one line per log record: time, level, message")
                .containsPattern("\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\.\\d{3} INFO    vhost-user backend listening on ")
                .doesNotContain("io.jvirtio.vhostuser.VhostUserBackend <init>");
        assertThat(Files.exists(socket)).as("socket removed").isFalse();
        byte[] onDisk = Files.readAllBytes(image);
        assertThat(java.util.Arrays.copyOfRange(onDisk, 100 * 512, 100 * 512 + data.length)).isEqualTo(data);
    }
}
