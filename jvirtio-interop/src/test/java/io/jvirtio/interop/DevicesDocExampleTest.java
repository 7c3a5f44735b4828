package io.jvirtio.interop;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The storage example of docs/devices.md: the document shows exactly {@link MapStore}'s code, and that code
 * serves a disk a Linux guest (its own virtio_blk driver, in QEMU) writes and reads back.
 */
class DevicesDocExampleTest {
    static final Path ROOT = Path.of(System.getProperty("user.dir")).getParent();

    @Test
    void theDocumentShowsTheExampleVerbatim() throws Exception {
        String source = Files.readString(ROOT.resolve("jvirtio-interop/src/test/java/io/jvirtio/interop/MapStore.java"));
        String example = source.substring(source.indexOf("import io.jvirtio.devices.blk.BlkDevice;"));
        String doc = Files.readString(ROOT.resolve("docs/devices.md"));
        assertThat(doc).as("docs/devices.md holds MapStore.java from its first import on").contains(example.strip());
    }

    @Test
    void aLinuxGuestWritesAndReadsTheExampleStore(@TempDir Path dir) throws Exception {
        QemuInteropTest.requireTools();
        Path guest = dir.resolve("test.sh");
        Files.writeString(guest, """
                set -e
                dd if=/dev/urandom of=/tmp/pat bs=1M count=4 2>/dev/null
                echo "PAT $(md5sum < /tmp/pat)"
                dd if=/tmp/pat of=/dev/vda bs=1M seek=8 count=4 oflag=direct 2>/dev/null
                echo 3 > /proc/sys/vm/drop_caches
                dd if=/dev/vda of=/tmp/back bs=1M skip=8 count=4 iflag=direct 2>/dev/null
                echo "BACK $(md5sum < /tmp/back)"
                echo "SERIAL $(cat /sys/block/vda/serial)"
                """);
        Path initrd = dir.resolve("initrd.cpio.gz");
        QemuInteropTest.run(List.of("bash", QemuInteropTest.SCRIPTS.resolve("mkinitramfs.sh").toString(),
                guest.toString(), initrd.toString()), 120);
        String console;
        try (var server = MapStore.serve(dir.resolve("store.sock"))) {
            console = QemuInteropTest.run(QemuInteropTest.qemu(initrd, "-chardev", "socket,id=vblk,path=" + server.socket(),
                    "-device", "vhost-user-blk-pci,chardev=vblk,num-queues=1"), 300);
        }
        assertThat(console).as(console).contains("JVIRTIO-GUEST-END rc=0");
        assertThat(QemuInteropTest.field(console, "BACK")).as("read back what it wrote")
                .isEqualTo(QemuInteropTest.field(console, "PAT"));
        assertThat(console).contains("SERIAL map-store");
    }
}
