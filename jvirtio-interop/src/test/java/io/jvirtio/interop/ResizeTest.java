package io.jvirtio.interop;

import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.FileBackend;
import io.jvirtio.vhostuser.VhostUserBackend;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Online resize reaches a running Linux guest: the disk grows under it, the back-end tells QEMU over the
 * back-end channel (CONFIG_CHANGE_MSG), QEMU raises the configuration interrupt, Linux reads the new capacity
 * ("new size") and the guest writes its new last block, which lands at the end of the grown image.
 */
@Timeout(300)
class ResizeTest {
    @Test
    @io.jvirtio.core.spec.Conformance("blk-dev-5")
    void aDiskGrownUnderARunningGuestIsSeenAtOnceAndItsNewLastBlockWritten(@TempDir Path dir) throws Exception {
        QemuInteropTest.requireTools();
        Path image = dir.resolve("disk.img");
        FileBackend.create(image, 64L << 20).close();
        Path guest = dir.resolve("test.sh");
        Files.writeString(guest, """
                echo "SIZE $(cat /sys/block/vda/size)"
                echo READY
                i=0
                while [ "$(cat /sys/block/vda/size)" = "131072" ] && [ $i -lt 60 ]; do sleep 1; i=$((i + 1)); done
                n=$(cat /sys/block/vda/size)
                echo "NEWSIZE $n"
                yes LASTBLOCK | head -c 512 > /tmp/b
                dd if=/tmp/b of=/dev/vda bs=512 seek=$((n - 1)) count=1 oflag=direct 2>/dev/null
                echo "WROTE rc=$?"
                dmesg | grep -i "new size" | tail -1
                """);
        Path initrd = dir.resolve("initrd.cpio.gz");
        QemuInteropTest.run(List.of("bash", QemuInteropTest.SCRIPTS.resolve("mkinitramfs.sh").toString(),
                guest.toString(), initrd.toString()), 120);
        BlkDevice[] device = new BlkDevice[1];
        StringBuffer console = new StringBuffer();
        try (FileBackend file = new FileBackend(image, false);
             VhostUserBackend backend = new VhostUserBackend(dir.resolve("blk.sock"), () -> device[0] = new BlkDevice(file))) {
            Process qemu = new ProcessBuilder(QemuInteropTest.qemu(initrd, "-chardev", "socket,id=vblk,path="
                    + backend.socket(), "-device", "vhost-user-blk-pci,chardev=vblk,num-queues=1"))
                    .redirectErrorStream(true).start();
            Thread reader = Thread.ofPlatform().daemon().start(() -> {
                try (BufferedReader in = new BufferedReader(new InputStreamReader(qemu.getInputStream(), StandardCharsets.UTF_8))) {
                    for (String line; (line = in.readLine()) != null; ) {
                        console.append(line).append('\n');
                    }
                } catch (Exception e) {
                    console.append(e);
                }
            });
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
            while (!console.toString().contains("READY") && System.nanoTime() < deadline) {
                Thread.sleep(50);
            }
            assertThat(console.toString()).as(console.toString()).contains("READY");
            assertThat(device[0].resize(128L << 20, false)).isEqualTo(128L << 20);
            assertThat(qemu.waitFor(120, TimeUnit.SECONDS)).as(console.toString()).isTrue();
            reader.join(5000);
        }
        String out = console.toString();
        assertThat(out).as(out).contains("SIZE 131072").contains("NEWSIZE 262144").contains("WROTE rc=0")
                .containsIgnoringCase("new size");
        byte[] disk = Files.readAllBytes(image);
        assertThat(disk.length).isEqualTo(128 << 20);
        assertThat(new String(disk, disk.length - 512, 512, StandardCharsets.US_ASCII))
                .isEqualTo("LASTBLOCK\n".repeat(52).substring(0, 512));
    }
}
