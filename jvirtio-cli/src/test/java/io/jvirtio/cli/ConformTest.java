package io.jvirtio.cli;

import io.jvirtio.cli.conform.Fuzzer;
import io.jvirtio.cli.conform.Grader;
import io.jvirtio.cli.conform.Result;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.FileBackend;
import io.jvirtio.devices.net.NetDevice;
import io.jvirtio.devices.net.VirtualSwitch;
import io.jvirtio.devices.rng.RngDevice;
import io.jvirtio.vhostuser.VhostUserBackend;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** {@code jvirtio conform} against jvirtio's own back-end: every check passes, and a fuzz campaign finds nothing. */
@Timeout(600)
class ConformTest {

    static List<Result> grade(Path socket, DeviceType type, ByteArrayOutputStream log) throws Exception {
        return new Grader(socket, type, new PrintStream(log, true)).run();
    }

    @Test
    void jvirtiosBlockBackEndPassesEveryCheck(@TempDir Path dir) throws Exception {
        FileBackend file = FileBackend.create(dir.resolve("disk.img"), 8 << 20);
        try (VhostUserBackend backend = new VhostUserBackend(dir.resolve("blk.sock"), () -> new BlkDevice(file))) {
            ByteArrayOutputStream log = new ByteArrayOutputStream();
            List<Result> results = grade(backend.socket(), DeviceType.BLOCK, log);
            assertThat(results).as(log.toString()).noneMatch(r -> r.status() == Result.Status.FAIL);
            assertThat(results).filteredOn(r -> r.status() == Result.Status.PASS).extracting(Result::id)
                    .contains("vu-reply-ack-failure", "vu-mem-table-beyond-fd", "vu-ring-loop", "vu-ring-base", "blk-io",
                            "blk-beyond-capacity", "blk-short-header");
        }
        file.close();
    }

    @Test
    void theCommandLineWritesJsonAndExitsZero(@TempDir Path dir) throws Exception {
        try (VhostUserBackend backend = new VhostUserBackend(dir.resolve("rng.sock"), RngDevice::new)) {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            ByteArrayOutputStream err = new ByteArrayOutputStream();
            Path json = dir.resolve("r.json");
            int rc = Main.run(List.of("conform", "--socket", backend.socket().toString(), "--device", "rng", "--json",
                    json.toString()), new PrintStream(out, true), new PrintStream(err, true));
            assertThat(rc).as(out + "\n" + err).isZero();
            assertThat(out.toString()).contains("PASS rng-read").contains("SKIP blk-io").containsPattern(
                    "conform: \\d+ passed, 0 failed, \\d+ skipped");
            assertThat(Files.readString(json)).contains("\"id\": \"vu-ring-loop\", \"status\": \"PASS\"").contains("\"failed\": 0");
            assertThat(Main.run(List.of("conform", "--socket", backend.socket().toString(), "--device", "toaster"),
                    new PrintStream(out, true), new PrintStream(err, true))).isEqualTo(2);
            assertThat(err.toString()).contains("--device toaster");
        }
    }

    @Test
    void aBackEndThatIsGoneIsReportedNotWaitedFor(@TempDir Path dir) throws Exception {
        // a back-end whose accept loop is gone after the first connection: every hostile check fails its
        // liveness probe, and the run still ends with a verdict instead of hanging
        try (VhostUserBackend backend = new VhostUserBackend(dir.resolve("rng.sock"), RngDevice::new)) {
            Path socket = backend.socket();
            backend.close();
            Files.createFile(socket);
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            int rc = Main.run(List.of("conform", "--socket", socket.toString(), "--device", "rng"),
                    new PrintStream(out, true), new PrintStream(out, true));
            assertThat(rc).isEqualTo(1);
            assertThat(out.toString()).contains("Connection refused");
        }
    }

    @Test
    void aSeededFuzzCampaignLeavesTheBackEndServingWithNothingLeaked(@TempDir Path dir) throws Exception {
        FileBackend file = FileBackend.create(dir.resolve("disk.img"), 4 << 20);
        VirtualSwitch sw = new VirtualSwitch();
        try (VhostUserBackend blk = new VhostUserBackend(dir.resolve("blk.sock"), () -> new BlkDevice(file));
             VhostUserBackend net = new VhostUserBackend(dir.resolve("net.sock"),
                     () -> new NetDevice(sw.port(), new byte[] {0x52, 0x54, 1, 0, 0, 1}, 1))) {
            long self = ProcessHandle.current().pid();
            ByteArrayOutputStream log = new ByteArrayOutputStream();
            List<Result> blkFailures = new Fuzzer(blk.socket(), DeviceType.BLOCK, self, new PrintStream(log, true)).run(150, 1);
            List<Result> netFailures = new Fuzzer(net.socket(), DeviceType.NET, self, new PrintStream(log, true)).run(150, 1001);
            assertThat(blkFailures).as(log.toString()).isEmpty();
            assertThat(netFailures).as(log.toString()).isEmpty();
            assertThat(sw.portCount()).as("every fuzzed net session gave its port back").isZero();
        }
        file.close();
    }
}
