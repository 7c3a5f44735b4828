package io.jvirtio.interop;

import io.jvirtio.cli.conform.Fuzzer;
import io.jvirtio.cli.conform.Grader;
import io.jvirtio.cli.conform.Result;
import io.jvirtio.core.spec.DeviceType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * {@code jvirtio conform} grading somebody else's back-end: QEMU's qemu-storage-daemon exporting a disk as
 * vhost-user-blk. It does real I/O right, but has defects the grader must find and report — without
 * crashing or hanging itself, whatever the back-end does (including dying under the fuzzer).
 */
@Timeout(300)
class ConformQemuStorageDaemonTest {

    @Test
    void theGraderFindsQemuStorageDaemonsDefectsAndFinishes(@TempDir Path dir) throws Exception {
        QemuInteropTest.requireTools();
        Path image = dir.resolve("disk.raw");
        QemuInteropTest.run(List.of("qemu-img", "create", "-f", "raw", image.toString(), "32M"), 60);
        Path sock = dir.resolve("qsd.sock");
        Process qsd = QemuStorageDaemonTest.start(image, sock, dir.resolve("qsd.log"));
        try {
            ByteArrayOutputStream log = new ByteArrayOutputStream();
            List<Result> results = new Grader(sock, DeviceType.BLOCK, new PrintStream(log, true)).run();
            System.out.println("jvirtio conform against qemu-storage-daemon:\n" + log);
            assertThat(results).filteredOn(r -> r.id().equals("blk-io")).extracting(Result::status)
                    .as("real I/O through it works").containsExactly(Result.Status.PASS);
            assertThat(results).filteredOn(r -> r.status() == Result.Status.FAIL).extracting(Result::id)
                    .as("the defects of qemu-storage-daemon 7.2 that the grader knows")
                    .contains("vu-mem-table-beyond-fd", "vu-mem-table-unmappable");

            List<Result> fuzz = new Fuzzer(sock, DeviceType.BLOCK, qsd.pid(), new PrintStream(log, true)).run(40, 1);
            System.out.println(log);
            assertThat(fuzz).as("the fuzzer finds something (qemu-storage-daemon 7.2 even crashes at seed 17)").isNotEmpty();
            assertThat(fuzz).allMatch(r -> r.detail().contains("replay: --fuzz 1 --seed "));
        } finally {
            qsd.destroy();
            qsd.waitFor(10, TimeUnit.SECONDS);
        }
    }
}
