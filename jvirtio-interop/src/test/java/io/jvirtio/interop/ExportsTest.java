package io.jvirtio.interop;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * One `jvirtio serve` process, many exports: a Linux guest works on one export while the operator adds a
 * second through the control socket, uses it, and removes it again; the guest never notices, and `drain`
 * ends the process cleanly.
 */
@Timeout(300)
class ExportsTest {
    static List<String> jvirtio(String... args) {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"), "io.jvirtio.cli.Main"));
        cmd.addAll(List.of(args));
        return cmd;
    }

    static String run(List<String> cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.waitFor(60, TimeUnit.SECONDS)).isTrue();
        return "rc=" + p.exitValue() + "\n" + out;
    }

    @Test
    void exportsComeAndGoWhileALinuxGuestWorksOnAnother(@TempDir Path dir) throws Exception {
        QemuInteropTest.requireTools();
        for (String n : new String[] {"a.img", "b.img"}) {
            try (RandomAccessFile f = new RandomAccessFile(dir.resolve(n).toFile(), "rw")) {
                f.setLength(64L << 20);
            }
        }
        Path guest = dir.resolve("test.sh");
        Files.writeString(guest, """
                dd if=/dev/urandom of=/tmp/pat bs=1M count=16 2>/dev/null
                echo "PAT $(md5sum < /tmp/pat)"
                echo WORKING
                i=0
                while [ $i -lt 40 ]; do
                  dd if=/tmp/pat of=/dev/vda bs=64k oflag=direct 2>/dev/null
                  dd if=/dev/vda of=/tmp/back bs=64k count=256 iflag=direct 2>/dev/null
                  echo "ROUND $i $(md5sum < /tmp/back)"
                  i=$((i + 1))
                done
                """);
        Path initrd = dir.resolve("initrd.cpio.gz");
        QemuInteropTest.run(List.of("bash", QemuInteropTest.SCRIPTS.resolve("mkinitramfs.sh").toString(),
                guest.toString(), initrd.toString()), 120);
        Path a = dir.resolve("a.sock");
        Path b = dir.resolve("b.sock");
        Path ctl = dir.resolve("serve.ctl");
        Process serve = new ProcessBuilder(jvirtio("serve", "--export", "blk,socket=" + a + ",image=" + dir.resolve("a.img"),
                "--control", ctl.toString(), "--stats", "0")).redirectErrorStream(true)
                .redirectOutput(dir.resolve("serve.log").toFile()).start();
        StringBuffer console = new StringBuffer();
        try {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (!(Files.exists(ctl) && Files.exists(a)) && System.nanoTime() < deadline) {
                Thread.sleep(20);
            }
            Process qemu = new ProcessBuilder(QemuInteropTest.qemu(initrd, "-chardev", "socket,id=vblk,path=" + a,
                    "-device", "vhost-user-blk-pci,chardev=vblk,num-queues=1")).redirectErrorStream(true).start();
            Thread reader = Thread.ofPlatform().daemon().start(() -> {
                try (BufferedReader in = new BufferedReader(new InputStreamReader(qemu.getInputStream(), StandardCharsets.UTF_8))) {
                    for (String line; (line = in.readLine()) != null; ) {
                        console.append(line).append('\n');
                    }
                } catch (Exception e) {
                    console.append(e);
                }
            });
            deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
            while (!console.toString().contains("WORKING") && System.nanoTime() < deadline) {
                Thread.sleep(20);
            }
            assertThat(console.toString()).contains("WORKING");
            String add = run(jvirtio("ctl", ctl.toString(), "export-add", "spec=blk,socket=" + b + ",image=" + dir.resolve("b.img")));
            assertThat(add).startsWith("rc=0").contains("socket: " + b);
            String bench = run(jvirtio("bench", "blk", "--socket", b.toString(), "--rw", "randwrite", "--runtime", "1"));
            assertThat(bench).startsWith("rc=0").contains("randwrite bs=4096 iodepth=1:");
            String stats = run(jvirtio("ctl", ctl.toString(), "stats"));
            assertThat(stats).contains("socket: " + a).contains("socket: " + b);
            String del = run(jvirtio("ctl", ctl.toString(), "export-del", "socket=" + b));
            assertThat(del).startsWith("rc=0").contains("removed: " + b);
            assertThat(console.toString()).as("the guest was still at work on a meanwhile").doesNotContain("ROUND 39");
            assertThat(qemu.waitFor(180, TimeUnit.SECONDS)).as(console.toString()).isTrue();
            reader.join(5000);
            String drain = run(jvirtio("ctl", ctl.toString(), "drain"));
            assertThat(drain).contains("draining: true");
            assertThat(serve.waitFor(30, TimeUnit.SECONDS)).isTrue();
        } finally {
            serve.destroyForcibly();
        }
        String out = console.toString();
        String pat = QemuInteropTest.field(out, "PAT");
        assertThat(out).as(out).contains("JVIRTIO-GUEST-END rc=0");
        for (int i = 0; i < 40; i++) {
            assertThat(out).as("round %d read back what was written", i).contains("ROUND " + i + " " + pat);
        }
        String log = Files.readString(dir.resolve("serve.log"));
        assertThat(log).contains("jvirtio serve: stopped after");
        assertThat(Files.exists(b)).isFalse();
    }
}
