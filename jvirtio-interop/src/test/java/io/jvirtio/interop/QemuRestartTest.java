package io.jvirtio.interop;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The back-end dies under guest I/O and comes back: {@code jvirtio serve blk} runs as its own process,
 * the test SIGKILLs it while a Linux guest in QEMU writes with O_DIRECT, and starts a new one on the same
 * socket. QEMU reconnects and hands the new back-end the in-flight buffer (INFLIGHT_SHMFD); requests the
 * old one took but never completed are redone. The guest's read-back and the host file must both equal
 * what the guest wrote: no acknowledged write is lost.
 */
class QemuRestartTest {

    static Process serve(Path socket, Path image, Path log) throws Exception {
        String javaBin = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process p = new ProcessBuilder(javaBin, "--enable-native-access=ALL-UNNAMED", "-cp",
                System.getProperty("java.class.path"), "io.jvirtio.cli.Main", "serve", "blk",
                "--socket", socket.toString(), "--image", image.toString(), "--stats", "0")
                .redirectErrorStream(true).redirectOutput(log.toFile()).start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!Files.exists(socket) && System.nanoTime() < deadline) {
            assertThat(p.isAlive()).as("jvirtio serve started").isTrue();
            Thread.sleep(20);
        }
        assertThat(Files.exists(socket)).isTrue();
        return p;
    }

    /** {@code jvirtio serve blk --connect socket}: the back-end connects to QEMU, which listens. */
    static Process serveConnecting(Path socket, Path image, Path log) throws Exception {
        String javaBin = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        return new ProcessBuilder(javaBin, "--enable-native-access=ALL-UNNAMED", "-cp",
                System.getProperty("java.class.path"), "io.jvirtio.cli.Main", "serve", "blk",
                "--connect", socket.toString(), "--image", image.toString(), "--stats", "0")
                .redirectErrorStream(true).redirectOutput(log.toFile()).start();
    }

    /**
     * Whether the back-end listens (QEMU connects, {@code reconnect=1}) or connects ({@code serve --connect},
     * QEMU listens with {@code server=on}), over a split or a packed ring (whose in-flight log keeps copies of
     * the lists taken, and whose position after the crash comes from it, not from QEMU's stale base): either
     * way a back-end killed under I/O and started again loses nothing.
     */
    @org.junit.jupiter.params.ParameterizedTest(name = "back-end connects: {0}, packed: {1}")
    @org.junit.jupiter.params.provider.CsvSource({"false,false", "true,false", "false,true"})
    @io.jvirtio.core.spec.Conformance({"vu-inflight-1", "vu-inflight-2"})
    void backendKilledUnderGuestIoLosesNoAcknowledgedWrite(boolean connecting, boolean packed, @TempDir Path dir)
            throws Exception {
        QemuInteropTest.requireTools();
        Path image = dir.resolve("disk.img");
        try (var f = new java.io.RandomAccessFile(image.toFile(), "rw")) {
            f.setLength(64L << 20);
        }
        Path guest = dir.resolve("test.sh");
        Files.writeString(guest, """
                echo "FEATURES $(cat /sys/block/vda/device/features)"
                dd if=/dev/urandom of=/tmp/pat bs=1M count=32 2>/dev/null
                echo "PAT $(md5sum < /tmp/pat)"
                echo WRITING
                dd if=/tmp/pat of=/dev/vda bs=4k oflag=direct conv=fsync 2>/dev/null
                echo "WROTE rc=$?"
                echo 3 > /proc/sys/vm/drop_caches
                dd if=/dev/vda of=/tmp/back bs=1M count=32 iflag=direct 2>/dev/null
                echo "BACK $(md5sum < /tmp/back)"
                """);
        Path initrd = dir.resolve("initrd.cpio.gz");
        QemuInteropTest.run(List.of("bash", QemuInteropTest.SCRIPTS.resolve("mkinitramfs.sh").toString(),
                guest.toString(), initrd.toString()), 120);
        Path socket = dir.resolve("blk.sock");
        Path firstLog = dir.resolve("first.log");
        Path secondLog = dir.resolve("second.log");
        Process first = connecting ? null : serve(socket, image, firstLog);
        Process second = null;
        Process qemu = new ProcessBuilder(QemuInteropTest.qemu(initrd, "-chardev",
                "socket,id=vblk,path=" + socket + (connecting ? ",server=on,wait=off" : ",reconnect=1"),
                "-device", "vhost-user-blk-pci,chardev=vblk,num-queues=1,packed=" + (packed ? "on" : "off")))
                .redirectErrorStream(true).start();
        if (connecting) {
            first = serveConnecting(socket, image, firstLog); // QEMU's realize waits for it
        }
        StringBuilder console = new StringBuilder();
        CountDownLatch writing = new CountDownLatch(1);
        Thread reader = Thread.ofPlatform().daemon().start(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(qemu.getInputStream(), StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null) {
                    synchronized (console) {
                        console.append(line).append('\n');
                    }
                    if (line.contains("WRITING")) {
                        writing.countDown();
                    }
                }
            } catch (Exception e) {
                // QEMU went away
            }
        });
        try {
            assertThat(writing.await(120, TimeUnit.SECONDS)).as("guest started writing:\n%s", console).isTrue();
            Thread.sleep(150);
            first.destroyForcibly().waitFor(10, TimeUnit.SECONDS);   // SIGKILL under guest I/O
            Thread.sleep(300);
            if (connecting) {
                second = serveConnecting(socket, image, secondLog);
            } else {
                Files.deleteIfExists(socket);
                second = serve(socket, image, secondLog);
            }
            assertThat(qemu.waitFor(240, TimeUnit.SECONDS)).as("guest finished:\n%s\nfirst back-end:\n%s\nsecond back-end:\n%s",
                    console, Files.readString(firstLog), Files.readString(secondLog)).isTrue();
            reader.join(5000);
        } finally {
            qemu.destroyForcibly();
            first.destroyForcibly();
            if (second != null) {
                second.destroy();
                second.waitFor(10, TimeUnit.SECONDS);
            }
        }
        String out;
        synchronized (console) {
            out = console.toString();
        }
        assertThat(out).as(out).contains("WROTE rc=0");
        assertThat(QemuInteropTest.guestFeature(out, 34)).as("VIRTIO_F_RING_PACKED negotiated").isEqualTo(packed);
        String pat = QemuInteropTest.field(out, "PAT");
        assertThat(QemuInteropTest.field(out, "BACK")).as("guest read back what it wrote").isEqualTo(pat);
        byte[] onDisk = java.util.Arrays.copyOf(Files.readAllBytes(image), 32 << 20);
        assertThat(HexFormat.of().formatHex(MessageDigest.getInstance("MD5").digest(onDisk)))
                .as("the host file holds every acknowledged write").isEqualTo(pat);
    }

}
