package io.jvirtio.cli;

import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.FileBackend;
import io.jvirtio.vhostuser.VhostUserBackend;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** {@code jvirtio bench blk} against jvirtio's own back-end: its lines, its JSON, its errors. */
class BenchCommandTest {
    record Run(int rc, String out, String err) {
    }

    static Run run(String... args) throws Exception {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int rc = Main.run(List.of(args), new PrintStream(out, true), new PrintStream(err, true));
        return new Run(rc, out.toString(), err.toString());
    }

    @Test
    void measuresAndReportsTheLineTheJsonAndProgress(@TempDir Path dir) throws Exception {
        FileBackend file = FileBackend.create(dir.resolve("disk.img"), 8 << 20);
        try (VhostUserBackend backend = new VhostUserBackend(dir.resolve("blk.sock"), () -> new BlkDevice(file, 2))) {
            String sock = backend.socket().toString();
            Run r = run("bench", "blk", "--socket", sock, "--rw", "randrw", "--bs", "8k", "--iodepth", "4",
                    "--runtime", "2", "--queues", "2");
            assertThat(r.rc()).as(r.err()).isZero();
            assertThat(r.out()).contains("2 queue(s) of which 2 used")
                    .containsPattern("randrw bs=8192 iodepth=4: [0-9,]+ IOPS, [0-9.]+ MiB/s, p50 [0-9.]+ µs, "
                            + "p99 [0-9.]+ µs, p99.9 [0-9.]+ µs");
            assertThat(r.err()).as("a progress line per second").containsPattern("\\[  1/2 s\\] [0-9,]+ IOPS");
            Run j = run("bench", "blk", "--socket", sock, "--rw", "write", "--iodepth", "2", "--runtime", "1",
                    "--size", "1m", "--json");
            assertThat(j.rc()).as(j.err()).isZero();
            assertThat(j.out().strip()).startsWith("{\"rw\":\"write\",\"bs\":4096,\"iodepth\":2,").endsWith("}")
                    .contains("\"errors\":0");
            Run bad = run("bench", "blk", "--socket", sock, "--bs", "1000");
            assertThat(bad.rc()).isNotZero();
            assertThat(bad.err()).contains("--bs 1000");
            Run tooBig = run("bench", "blk", "--socket", sock, "--size", "1g", "--runtime", "1");
            assertThat(tooBig.rc()).isNotZero();
            assertThat(tooBig.err()).contains("--size").contains("larger than the disk");
        }
        file.close();
        Run noSocket = run("bench", "blk", "--socket", dir.resolve("nothing.sock").toString());
        assertThat(noSocket.rc()).isNotZero();
        assertThat(noSocket.err()).contains("nothing.sock");
        assertThat(run("bench", "--help").out()).contains("--iodepth");
    }
}
