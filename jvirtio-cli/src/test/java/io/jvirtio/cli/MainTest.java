package io.jvirtio.cli;

import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

class MainTest {
    final ByteArrayOutputStream out = new ByteArrayOutputStream();
    final ByteArrayOutputStream err = new ByteArrayOutputStream();

    int run(String... args) {
        return Main.run(List.of(args), new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8));
    }

    String out() {
        return out.toString(StandardCharsets.UTF_8);
    }

    String err() {
        return err.toString(StandardCharsets.UTF_8);
    }

    @Test
    void helpListsEveryCommand() {
        assertThat(run("--help")).isZero();
        assertThat(out()).contains("Usage: jvirtio <command>", "ring", "demo", "serve");
    }

    @Test
    void demoEnumeratesProbesAndVerifiesTheDisk() {
        assertThat(run("demo", "--disk-mb", "4", "--request-kb", "64", "--depth", "8", "--frames", "3000")).isZero();
        assertThat(out()).contains("0000:00:03.0 Red Hat, Inc. Virtio block device [1af4:1042]",
                "virtio0: device 2 (block)", "driver virtio_blk", "DRIVER_OK", "VIRTIO_BLK_F_FLUSH",
                "device 1 (net)", "driver virtio_net", "device 3 (console)", "driver virtio_console",
                "device 4 (entropy)", "read-back CRC32C matches written   yes",
                "frames arrived intact, in order    yes (all 3000)", "console echo matches               yes",
                "image file bytes match             yes");
    }

    @Test
    void everySubcommandHasHelp() {
        assertThat(run("demo", "--help")).isZero();
        assertThat(out()).contains("Usage: jvirtio demo", "--disk-mb", "Example:");
        out.reset();
        assertThat(run("ring", "--help")).isZero();
        assertThat(out()).contains("Usage: jvirtio ring", "--queue-size", "Example:");
        out.reset();
        assertThat(run("help", "ring")).isZero();
        assertThat(out()).contains("Usage: jvirtio ring");
    }

    @Test
    void serveHelpAndErrors() {
        assertThat(run("serve", "--help")).isZero();
        assertThat(out()).contains("jvirtio serve blk", "vhost-user-blk-pci", "--readonly", "Example:");
        assertThat(run("serve", "blk", "--socket", "/tmp/jvirtio-test.sock")).isEqualTo(2);
        assertThat(err()).contains("serve blk needs --image FILE");
        err.reset();
        assertThat(run("serve", "blk", "--socket", "/tmp/jvirtio-test.sock", "--image", "/nonexistent.img")).isEqualTo(2);
        assertThat(err()).contains("image /nonexistent.img: no such file");
        err.reset();
        assertThat(run("serve", "scsi", "--socket", "/tmp/jvirtio-test.sock")).isEqualTo(2);
        assertThat(err()).contains("unknown device type 'scsi'");
        err.reset();
        assertThat(run("serve", "net", "--socket", "/tmp/s", "--ip", "300.1.1.1")).isEqualTo(2);
        assertThat(err()).contains("ip '300.1.1.1' is not an IPv4 address");
        err.reset();
        assertThat(run("serve", "net", "--socket", "/tmp/s", "--tap-per-connection", "jv%d", "--ip", "10.0.0.1")).isEqualTo(2);
        assertThat(err()).contains("tap-per-connection gives each guest its own TAP device");
        err.reset();
        assertThat(run("serve", "blk", "--socket", "/tmp/s", "--image", "/etc/hostname", "--tap", "jv0")).isEqualTo(2);
        assertThat(err()).contains("blk export: unknown key 'tap'");
        err.reset();
        assertThat(run("serve", "net", "--socket", "/tmp/s", "--tap", "a-name-longer-than-15")).isEqualTo(2);
        assertThat(err()).contains("interface name 'a-name-longer-than-15' must be 1..15 characters");
        err.reset();
        assertThat(run("serve", "rng")).isEqualTo(2);
        assertThat(err()).contains("give --socket PATH (listen) or --connect PATH");
        err.reset();
        assertThat(run("serve", "rng", "--socket", "/tmp/a", "--connect", "/tmp/b")).isEqualTo(2);
        assertThat(err()).contains("one of them");
    }

    @Test
    void errorsNameTheBadValue() {
        assertThat(run("ring", "--queue-size", "100")).isEqualTo(2);
        assertThat(err()).contains("--queue-size 100 is not a power of two");
        err.reset();
        assertThat(run("ring", "--buffers", "lots")).isEqualTo(2);
        assertThat(err()).contains("--buffers 'lots' is not a number");
        err.reset();
        assertThat(run("ring", "--frobnicate")).isEqualTo(2);
        assertThat(err()).contains("unknown option '--frobnicate'");
        err.reset();
        assertThat(run("explode")).isEqualTo(2);
        assertThat(err()).contains("unknown command 'explode'");
    }

    @Test
    void ringMovesAndVerifiesEveryBuffer() {
        for (String[] flags : new String[][] {{"--event-idx", "--indirect"}, {"--no-event-idx", "--no-indirect"}}) {
            out.reset();
            assertThat(run("ring", "--buffers", "20000", "--queue-size", "16", "--payload", "100", flags[0], flags[1]))
                    .isZero();
            assertThat(out()).contains("20,000 (all replies verified: yes)", "kicks", "interrupts");
        }
    }
}
