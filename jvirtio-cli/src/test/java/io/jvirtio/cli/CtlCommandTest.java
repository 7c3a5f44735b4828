package io.jvirtio.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.io.RandomAccessFile;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** {@code serve --control} and {@code jvirtio ctl}: stats, resize (and its refusals), bad requests, drain. */
@Timeout(60)
class CtlCommandTest {
    record Run(int rc, String out, String err) {
    }

    /** Long-running commands each on a thread of their own (the common pool may have a single thread here). */
    static final java.util.concurrent.Executor THREADS = r -> Thread.ofPlatform().daemon().start(r);

    static Run run(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int rc = Main.run(List.of(args), new PrintStream(out, true), new PrintStream(err, true));
        return new Run(rc, out.toString(), err.toString());
    }

    @Test
    void anOperatorReadsStatsResizesAndDrainsARunningServe(@TempDir Path dir) throws Exception {
        Path image = dir.resolve("disk.img");
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "rw")) {
            f.setLength(64L << 20);
        }
        Path ctl = dir.resolve("blk.ctl");
        CompletableFuture<Run> serve = CompletableFuture.supplyAsync(() -> run("serve", "blk", "--socket",
                dir.resolve("blk.sock").toString(), "--image", image.toString(), "--control", ctl.toString(),
                "--stats", "0"), THREADS);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (!Files.exists(ctl) && System.nanoTime() < deadline) {
            Thread.sleep(20);
        }
        Run bench = run("bench", "blk", "--socket", dir.resolve("blk.sock").toString(), "--rw", "write",
                "--runtime", "1", "--size", "1m");
        assertThat(bench.rc()).as(bench.err()).isZero();

        Run stats = run("ctl", ctl.toString(), "stats");
        assertThat(stats.rc()).isZero();
        assertThat(stats.out()).contains("ok: true").contains("type: blk").contains("connections: 1")
                .contains("capacity: " + (64L << 20));
        Run json = run("ctl", ctl.toString(), "stats", "--json");
        assertThat(json.out().strip()).startsWith("{\"ok\":true,\"exports\":[{\"type\":\"blk\"").endsWith("}");

        Run grow = run("ctl", ctl.toString(), "resize", "size=128m");
        assertThat(grow.rc()).as(grow.out()).isZero();
        assertThat(grow.out()).contains("capacity: " + (128L << 20)).contains("previous: " + (64L << 20));
        assertThat(Files.size(image)).isEqualTo(128L << 20);
        Run shrink = run("ctl", ctl.toString(), "resize", "size=32m");
        assertThat(shrink.rc()).isEqualTo(1);
        assertThat(shrink.out()).contains("ok: false").contains("shrink=true");
        assertThat(Files.size(image)).as("nothing cut off").isEqualTo(128L << 20);
        Run odd = run("ctl", ctl.toString(), "resize", "size=1000");
        assertThat(odd.out()).contains("not a positive multiple of 512");
        assertThat(run("ctl", ctl.toString(), "frobnicate").out()).contains("unknown command 'frobnicate'");
        assertThat(run("ctl", ctl.toString(), "log-level", "level=loud").out()).contains("log level 'loud'");

        // hostile requests: not JSON, and longer than the limit
        try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            ch.connect(UnixDomainSocketAddress.of(ctl));
            ch.write(ByteBuffer.wrap("{command:stats}\n".getBytes()));
            ByteBuffer b = ByteBuffer.allocate(4096);
            ch.read(b);
            assertThat(new String(b.array(), 0, b.position())).startsWith("{\"ok\":false,\"error\":");
            ch.write(ByteBuffer.wrap(("{\"command\":\"" + "x".repeat(8000) + "\"}\n").getBytes()));
            b.clear();
            assertThat(ch.read(b)).as("an oversized request ends the connection").isEqualTo(-1);
        }

        Run drain = run("ctl", ctl.toString(), "drain");
        assertThat(drain.out()).contains("draining: true");
        Run served = serve.get(30, TimeUnit.SECONDS);
        assertThat(served.rc()).isZero();
        assertThat(served.err()).contains("stopped after 1 connection(s)");
        assertThat(Files.exists(ctl)).as("the control socket is removed").isFalse();
        assertThat(run("ctl", ctl.toString(), "stats").err()).contains("blk.ctl");
    }

    @Test
    void exportsAreAddedAndRemovedWhileAGuestWorksOnAnother(@TempDir Path dir) throws Exception {
        for (String name : new String[] {"a.img", "c.img"}) {
            try (RandomAccessFile f = new RandomAccessFile(dir.resolve(name).toFile(), "rw")) {
                f.setLength(16L << 20);
            }
        }
        Path ctl = dir.resolve("serve.ctl");
        String a = dir.resolve("a.sock").toString();
        String c = dir.resolve("c.sock").toString();
        CompletableFuture<Run> serve = CompletableFuture.supplyAsync(() -> run("serve",
                "--export", "blk,socket=" + a + ",image=" + dir.resolve("a.img") + ",cache=none",
                "--export", "rng,socket=" + dir.resolve("r.sock"),
                "--control", ctl.toString(), "--stats", "0"), THREADS);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (!Files.exists(ctl) && System.nanoTime() < deadline) {
            Thread.sleep(20);
        }
        // a guest on export a, writing and reading the whole time
        CompletableFuture<Run> guest = CompletableFuture.supplyAsync(() -> run("bench", "blk", "--socket", a, "--rw",
                "randrw", "--iodepth", "4", "--runtime", "4"), THREADS);
        Thread.sleep(500);
        Run add = run("ctl", ctl.toString(), "export-add", "spec=blk,socket=" + c + ",image=" + dir.resolve("c.img"));
        assertThat(add.rc()).as(add.out()).isZero();
        assertThat(add.out()).contains("socket: " + c);
        assertThat(run("ctl", ctl.toString(), "export-add", "spec=blk,socket=" + c + ",image=" + dir.resolve("c.img")).out())
                .contains("exists already");
        assertThat(run("ctl", ctl.toString(), "export-add", "spec=blk,socket=" + dir.resolve("x.sock")).out())
                .contains("needs image=FILE");
        Run onC = run("bench", "blk", "--socket", c, "--rw", "write", "--runtime", "1", "--size", "1m");
        assertThat(onC.rc()).as("the added export serves: %s", onC.err()).isZero();
        assertThat(run("ctl", ctl.toString(), "export-del", "socket=" + dir.resolve("r.sock")).out())
                .contains("removed: " + dir.resolve("r.sock"));
        assertThat(run("ctl", ctl.toString(), "export-del", "socket=" + c).rc()).isZero();
        assertThat(Files.exists(Path.of(c))).as("its socket is gone").isFalse();
        assertThat(run("ctl", ctl.toString(), "resize", "size=32m").out()).as("the only blk export left is a")
                .contains("capacity: " + (32L << 20));
        Run g = guest.get(30, TimeUnit.SECONDS);
        assertThat(g.rc()).as("the guest on a never noticed: %s", g.err()).isZero();
        assertThat(g.out()).contains("randrw bs=4096 iodepth=4");
        Run stats = run("ctl", ctl.toString(), "stats");
        assertThat(stats.out()).contains("socket: " + a).doesNotContain("socket: " + c).doesNotContain("r.sock");
        run("ctl", ctl.toString(), "drain");
        assertThat(serve.get(30, TimeUnit.SECONDS).rc()).isZero();
    }

    @Test
    void jsonRequestsAreParsedStrictly() {
        assertThat(Json.parseFlat("{\"command\":\"resize\",\"size\":\"1g\",\"shrink\":true}"))
                .containsEntry("command", "resize").containsEntry("size", "1g").containsEntry("shrink", "true");
        assertThat(Json.parseFlat(" { } ")).isEmpty();
        assertThatThrownBy(() -> Json.parseFlat("{\"a\":nope}")).hasMessageContaining("bad value 'nope'");
        assertThatThrownBy(() -> Json.parseFlat("{\"a\":\"b\"")).hasMessageContaining("unexpected end");
        assertThat(Json.write(java.util.Map.of("s", "a\"b\n"))).isEqualTo("{\"s\":\"a\\\"b\\n\"}");
    }
}
