package io.jvirtio.interop;

import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.BlockCompletion;
import io.jvirtio.devices.blk.BlockQueue;
import io.jvirtio.devices.blk.BlockRequest;
import io.jvirtio.devices.blk.nbd.NbdBackend;
import io.jvirtio.devices.blk.nbd.NbdUri;
import io.jvirtio.vhostuser.VhostUserBackend;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The NBD client back-end against Debian's {@code qemu-nbd} exporting a qcow2 image on a Unix socket: requests
 * through the queue land in the qcow2 (checked with {@code qemu-img convert} afterwards); a Linux guest writes
 * and reads through {@code vhost-user-blk} → jvirtio → NBD → qcow2; and the server killed and restarted under
 * the guest's I/O costs the guest a pause, not an error.
 */
@Timeout(600)
class NbdTest {
    @TempDir
    Path dir;
    volatile Process nbd;

    @AfterEach
    void stop() throws Exception {
        if (nbd != null) {
            nbd.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
        }
    }

    Path qcow2(long bytes) throws Exception {
        Path img = dir.resolve("disk.qcow2");
        QemuInteropTest.run(List.of("qemu-img", "create", "-q", "-f", "qcow2", img.toString(), Long.toString(bytes)), 60);
        return img;
    }

    /** qemu-nbd exporting {@code img} (persistent: it outlives each client) on {@code sock}, once it listens. */
    Process startNbd(Path img, Path sock) throws Exception {
        return startNbd(img, sock, "writeback");
    }

    Process startNbd(Path img, Path sock, String cache) throws Exception {
        Files.deleteIfExists(sock);
        Process p = new ProcessBuilder("qemu-nbd", "--persistent", "--shared=4", "--format=qcow2", "--cache=" + cache,
                "--socket=" + sock, img.toString()).redirectErrorStream(true)
                .redirectOutput(dir.resolve("qemu-nbd.log").toFile()).start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!Files.exists(sock) && System.nanoTime() < deadline && p.isAlive()) {
            Thread.sleep(20);
        }
        assertThat(p.isAlive()).as("qemu-nbd running: %s", Files.exists(dir.resolve("qemu-nbd.log"))
                ? Files.readString(dir.resolve("qemu-nbd.log")) : "").isTrue();
        return p;
    }

    /** The qcow2's guest-visible bytes, through qemu-img. */
    byte[] contents(Path img) throws Exception {
        Path raw = dir.resolve("out.raw");
        QemuInteropTest.run(List.of("qemu-img", "convert", "-f", "qcow2", "-O", "raw", img.toString(), raw.toString()), 120);
        return Files.readAllBytes(raw);
    }

    /** Runs one queue from the test thread, as a device's queue thread would. */
    static final class Driver implements BlockCompletion {
        final BlockQueue queue;
        final int[] results = new int[64];
        int outstanding;

        Driver(NbdBackend b) throws Exception {
            queue = b.open(0, 64, this);
        }

        public void complete(BlockRequest r, int result) {
            results[r.tag()] = result;
            outstanding--;
        }

        int run(BlockRequest... rs) {
            for (BlockRequest r : rs) {
                results[r.tag()] = Integer.MIN_VALUE;
                outstanding++;
                queue.start(r);
            }
            queue.submit();
            while (outstanding > 0) {
                if (!queue.ready()) {
                    queue.await();
                }
                queue.reap();
            }
            int worst = 0;
            for (BlockRequest r : rs) {
                worst = Math.min(worst, results[r.tag()]);
            }
            return worst;
        }
    }

    @Test
    void requestsReachTheQcow2AndComeBack() throws Exception {
        QemuInteropTest.requireTools();
        Path img = qcow2(16 << 20);
        Path sock = dir.resolve("nbd.sock");
        nbd = startNbd(img, sock);
        byte[] expect = new byte[16 << 20];
        try (Arena arena = Arena.ofShared();
             NbdBackend backend = new NbdBackend(NbdUri.parse("nbd+unix:///?socket=" + sock))) {
            assertThat(backend.capacity()).isEqualTo(16 << 20);
            assertThat(backend.describe()).contains("flush", "fua", "trim", "write-zeroes", "structured replies");
            Driver d = new Driver(backend);
            MemorySegment mem = arena.allocate(32 * 8192L, 4096);
            Random rnd = new Random(1);
            BlockRequest[] writes = new BlockRequest[32];
            for (int t = 0; t < 32; t++) {
                MemorySegment buf = mem.asSlice(t * 8192L, 8192);
                byte[] b = new byte[8192];
                rnd.nextBytes(b);
                MemorySegment.copy(b, 0, buf, ValueLayout.JAVA_BYTE, 0, b.length);
                long off = (long) ((t * 37) % 2000) * 8192;
                System.arraycopy(b, 0, expect, (int) off, 8192);
                writes[t] = new BlockRequest(t).set(BlockRequest.Op.WRITE, off, 8192)
                        .addBuffer(buf, 0, 4096).addBuffer(buf, 4096, 4096).durable(t % 4 == 0);
            }
            assertThat(d.run(writes)).as("32 writes in flight").isZero();
            assertThat(d.run(new BlockRequest(0).set(BlockRequest.Op.FLUSH, 0, 0))).isZero();
            // reads, including a hole nobody wrote (a structured reply sends it as a hole, not zeroes)
            mem.fill((byte) 0x77);
            BlockRequest[] reads = new BlockRequest[32];
            for (int t = 0; t < 32; t++) {
                reads[t] = new BlockRequest(t).set(BlockRequest.Op.READ, writes[t].offset(), 8192)
                        .addBuffer(mem.asSlice(t * 8192L, 8192));
            }
            assertThat(d.run(reads)).isZero();
            for (int t = 0; t < 32; t++) {
                int off = (int) writes[t].offset();
                assertThat(mem.asSlice(t * 8192L, 8192).toArray(ValueLayout.JAVA_BYTE)).as("read %d", t)
                        .isEqualTo(java.util.Arrays.copyOfRange(expect, off, off + 8192));
            }
            MemorySegment hole = mem.asSlice(0, 65536);
            assertThat(d.run(new BlockRequest(0).set(BlockRequest.Op.READ, 15L << 20, 65536).addBuffer(hole))).isZero();
            assertThat(hole.toArray(ValueLayout.JAVA_BYTE)).containsOnly(0);
            // write-zeroes over the first write, discard elsewhere
            long z = writes[0].offset();
            java.util.Arrays.fill(expect, (int) z, (int) z + 8192, (byte) 0);
            assertThat(d.run(new BlockRequest(1).set(BlockRequest.Op.WRITE_ZEROES, z, 8192))).isZero();
            assertThat(d.run(new BlockRequest(2).set(BlockRequest.Op.DISCARD, 14L << 20, 1 << 20))).isZero();
            assertThat(d.run(new BlockRequest(3).set(BlockRequest.Op.FLUSH, 0, 0))).isZero();
            d.queue.close();
        }
        nbd.destroy();
        nbd.waitFor(10, TimeUnit.SECONDS);
        nbd = null;
        byte[] got = contents(img);
        assertThat(HexFormat.of().formatHex(MessageDigest.getInstance("MD5").digest(got)))
                .as("the qcow2 holds exactly what was written").isEqualTo(
                        HexFormat.of().formatHex(MessageDigest.getInstance("MD5").digest(expect)));
    }

    @Test
    void aServerThatStaysAwayFailsRequestsAfterTheReconnectTimeout() throws Exception {
        QemuInteropTest.requireTools();
        Path img = qcow2(1 << 20);
        Path sock = dir.resolve("nbd.sock");
        nbd = startNbd(img, sock);
        try (Arena arena = Arena.ofShared();
             NbdBackend backend = new NbdBackend(NbdUri.parse("nbd+unix:///?socket=" + sock), 1500)) {
            Driver d = new Driver(backend);
            MemorySegment buf = arena.allocate(4096, 4096);
            assertThat(d.run(new BlockRequest(0).set(BlockRequest.Op.READ, 0, 4096).addBuffer(buf))).isZero();
            nbd.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
            nbd = null;
            long t0 = System.nanoTime();
            assertThat(d.run(new BlockRequest(1).set(BlockRequest.Op.READ, 4096, 4096).addBuffer(buf)))
                    .as("EIO once the server stayed away past the timeout").isEqualTo(-5);
            assertThat(System.nanoTime() - t0).as("not before the timeout").isGreaterThanOrEqualTo(1_400_000_000L);
            // back again: requests go through once more
            nbd = startNbd(img, sock);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            int r;
            do {
                r = d.run(new BlockRequest(2).set(BlockRequest.Op.READ, 0, 4096).addBuffer(buf));
            } while (r != 0 && System.nanoTime() < deadline && sleep());
            assertThat(r).as("the server is back").isZero();
            d.queue.close();
        }
    }

    static boolean sleep() throws InterruptedException {
        Thread.sleep(100);
        return true;
    }

    Path guestScript(String body) throws Exception {
        Path guest = dir.resolve("test.sh");
        Files.writeString(guest, body);
        Path initrd = dir.resolve("initrd.cpio.gz");
        QemuInteropTest.run(List.of("bash", QemuInteropTest.SCRIPTS.resolve("mkinitramfs.sh").toString(),
                guest.toString(), initrd.toString()), 120);
        return initrd;
    }

    @Test
    void aLinuxGuestWritesAQcow2ThroughJvirtioAndNbdAndSurvivesAServerRestart() throws Exception {
        QemuInteropTest.requireTools();
        Path img = qcow2(64 << 20);
        Path sock = dir.resolve("nbd.sock");
        // The server is killed (SIGKILL, a crash): only what it made stable survives, so it writes through —
        // every write it acknowledged is on disk — and what was in flight is jvirtio's to send again.
        nbd = startNbd(img, sock, "writethrough");
        Path initrd = guestScript("""
                set -e
                dd if=/dev/urandom of=/tmp/pat bs=1M count=32 2>/dev/null
                echo "PAT $(md5sum < /tmp/pat)"
                echo WRITING
                i=0
                while [ $i -lt 32 ]; do
                  dd if=/tmp/pat of=/dev/vda bs=1M skip=$i seek=$((i + 4)) count=1 oflag=direct 2>/dev/null
                  i=$((i + 1))
                done
                echo WRITTEN
                echo 3 > /proc/sys/vm/drop_caches
                dd if=/dev/vda of=/tmp/back bs=1M skip=4 count=32 iflag=direct 2>/dev/null
                echo "BACK $(md5sum < /tmp/back)"
                """);
        StringBuilder console = new StringBuilder();
        try (NbdBackend backend = new NbdBackend(NbdUri.parse("nbd+unix:///?socket=" + sock), 30_000);
             VhostUserBackend server = new VhostUserBackend(dir.resolve("blk.sock"), () -> new BlkDevice(backend))) {
            Process qemu = new ProcessBuilder(QemuInteropTest.qemu(initrd, "-chardev",
                    "socket,id=vblk,path=" + server.socket(), "-device", "vhost-user-blk-pci,chardev=vblk,num-queues=1"))
                    .redirectErrorStream(true).start();
            CompletableFuture<Void> restarted = new CompletableFuture<>();
            Thread watcher = Thread.ofPlatform().start(() -> {
                try (BufferedReader in = new BufferedReader(new InputStreamReader(qemu.getInputStream(),
                        StandardCharsets.UTF_8))) {
                    for (String line; (line = in.readLine()) != null; ) {
                        console.append(line).append('\n');
                        if (line.contains("WRITTEN") && !restarted.isDone()) {
                            restarted.completeExceptionally(new AssertionError(
                                    "the guest finished writing before the server was killed: the test proved nothing"));
                        }
                        if (line.contains("WRITING") && !restarted.isDone()) {
                            // the guest is writing: kill the server, keep it away a moment, start it again
                            Thread.sleep(100);
                            nbd.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
                            Thread.sleep(1000);
                            nbd = startNbd(img, sock, "writethrough");
                            restarted.complete(null);
                        }
                    }
                } catch (Exception e) {
                    restarted.completeExceptionally(e);
                }
            });
            boolean exited = qemu.waitFor(300, TimeUnit.SECONDS);
            if (!exited) {
                qemu.destroyForcibly();
            }
            watcher.join(10_000);
            restarted.get(1, TimeUnit.SECONDS); // killed and restarted while the guest was writing
            assertThat(backend.describe()).isNotEmpty();
        }
        String out = console.toString();
        assertThat(out).as(out).contains("JVIRTIO-GUEST-END rc=0").contains("WRITTEN");
        String pat = QemuInteropTest.field(out, "PAT");
        assertThat(QemuInteropTest.field(out, "BACK")).as("the guest read back what it wrote").isEqualTo(pat);
        nbd.destroy();
        nbd.waitFor(10, TimeUnit.SECONDS);
        nbd = null;
        byte[] got = java.util.Arrays.copyOfRange(contents(img), 4 << 20, 36 << 20);
        assertThat(HexFormat.of().formatHex(MessageDigest.getInstance("MD5").digest(got)))
                .as("the qcow2 holds the guest's bytes").isEqualTo(pat);
    }
}
