package io.jvirtio.interop;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A Linux guest on the real network through {@code jvirtio serve net}: the back-end runs in a network namespace
 * the test makes (so nothing leaves it) with a host TAP device — plugged into its switch ({@code --tap}) or the
 * guest's own ({@code --tap-per-connection}) — addressed 10.0.2.1 there. The guest, in QEMU over vhost-user,
 * pings the namespace's Linux stack and moves 4 MiB over TCP each way; both ends checksum what they got. On
 * its own TAP device the guest's NIC carries the virtio-net header: checksum and segmentation offloads are
 * negotiated and used both ways (few, large segments cross the ring); on the switch they are not offered.
 */
class ServeTapTest {
    static final int BYTES = 4 << 20;

    static String sh(List<String> cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes());
        int rc = p.waitFor();
        assertThat(rc).as("%s:%n%s", String.join(" ", cmd), out).isZero();
        return out;
    }

    static List<String> inNs(String ns, String... cmd) {
        List<String> c = new ArrayList<>(List.of("ip", "netns", "exec", ns));
        c.addAll(List.of(cmd));
        return c;
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"--tap", "--tap-per-connection", "--tap-per-connection --queues 2",
            "--tap-per-connection --poll-us 100", "--tap --poll-us 100",
            "--tap-per-connection --queues 2 --poll-us 100 --pollers 2"})
    @io.jvirtio.core.spec.Conformance("net-dev-5")
    void aGuestPingsAndMovesDataOverTcpThroughAHostTap(String how, @TempDir Path dir) throws Exception {
        List<String> args = List.of(how.split(" "));
        String mode = args.get(0);
        int queues = args.contains("--queues") ? Integer.parseInt(args.get(args.indexOf("--queues") + 1)) : 1;
        String pollUs = args.contains("--poll-us") ? args.get(args.indexOf("--poll-us") + 1) : "0";
        String pollers = args.contains("--pollers") ? args.get(args.indexOf("--pollers") + 1) : "1";
        QemuInteropTest.requireTools();
        boolean usable = Files.exists(Path.of("/dev/net/tun")) && Files.isExecutable(Path.of("/usr/sbin/ip"))
                && "root".equals(System.getProperty("user.name")) && Files.isExecutable(Path.of("/usr/bin/python3"));
        if (!usable) {
            System.err.println("ServeTapTest SKIPPED: needs /dev/net/tun, /usr/sbin/ip, python3 and root");
        }
        Assumptions.assumeTrue(usable, "needs /dev/net/tun, /usr/sbin/ip, python3 and root");
        long pid = ProcessHandle.current().pid() % 100000;
        String ns = "jvtap" + pid + (mode.equals("--tap") ? "s" : "c") + queues + (pollUs.equals("0") ? "" : "p" + pollers);
        String tapArg = mode.equals("--tap") ? "jvs" + pid : "jvc" + pid + "x%d";
        String tapName = mode.equals("--tap") ? tapArg : "jvc" + pid + "x0";

        byte[] down = new byte[BYTES];
        new Random(42).nextBytes(down);
        Path downFile = dir.resolve("down.bin");
        Files.write(downFile, down);
        Path server = dir.resolve("server.py");
        Files.writeString(server, """
                import hashlib, socket, sys, threading
                N = %d
                def listen(port):
                    s = socket.socket()
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind(("0.0.0.0", port))
                    s.listen(1)
                    return s
                up, dn = listen(5001), listen(5002)
                def receive():
                    c, _ = up.accept()
                    h, got = hashlib.md5(), 0
                    while got < N:
                        b = c.recv(65536)
                        if not b:
                            break
                        h.update(b)
                        got += len(b)
                    c.sendall((h.hexdigest() + "\\n").encode())
                    c.close()
                    print("SERVER-UP", got, h.hexdigest(), flush=True)
                def send():
                    c, _ = dn.accept()
                    c.sendall(open(sys.argv[1], "rb").read())
                    c.close()
                    print("SERVER-DOWN sent", flush=True)
                t = [threading.Thread(target=receive), threading.Thread(target=send)]
                [x.start() for x in t]
                print("SERVER-READY", flush=True)
                [x.join() for x in t]
                """.formatted(BYTES));
        Path guest = dir.resolve("test.sh");
        Files.writeString(guest, """
                ip link set lo up
                ip link set eth0 up
                ip addr add 10.0.2.15/24 dev eth0
                i=0
                until ping -c 1 -W 1 10.0.2.1 >/dev/null 2>&1; do i=$((i+1)); [ $i -ge 90 ] && break; done
                ping -c 3 -W 3 10.0.2.1
                echo "PING rc=$?"
                dd if=/dev/urandom of=/tmp/up bs=1M count=4 2>/dev/null
                echo "UPMD5 $(md5sum < /tmp/up)"
                echo "UPACK $(nc 10.0.2.1 5001 < /tmp/up)"
                nc 10.0.2.1 5002 > /tmp/down
                echo "DOWNLEN $(wc -c < /tmp/down)"
                echo "DOWNMD5 $(md5sum < /tmp/down)"
                echo "FEATURES $(cat /sys/class/net/eth0/device/features)"
                echo "TXPACKETS $(cat /sys/class/net/eth0/statistics/tx_packets)"
                echo "RXPACKETS $(cat /sys/class/net/eth0/statistics/rx_packets)"
                echo "RXQUEUES $(ls -d /sys/class/net/eth0/queues/rx-* | wc -l)"
                """);
        Path initrd = dir.resolve("initrd.cpio.gz");
        QemuInteropTest.run(List.of("bash", QemuInteropTest.SCRIPTS.resolve("mkinitramfs.sh").toString(),
                guest.toString(), initrd.toString()), 120);

        sh(List.of("ip", "netns", "add", ns));
        Process serve = null;
        Process py = null;
        Path serveLog = dir.resolve("serve.log");
        Path pyLog = dir.resolve("server.log");
        try {
            Path socket = dir.resolve("net.sock");
            String javaBin = Path.of(System.getProperty("java.home"), "bin", "java").toString();
            // the back-end lives in the namespace (its TAP devices with it); QEMU reaches it by the socket's path
            List<String> cmd = new ArrayList<>(inNs(ns, javaBin, "--enable-native-access=ALL-UNNAMED", "-cp",
                    System.getProperty("java.class.path"), "io.jvirtio.cli.Main", "serve", "net", "--socket",
                    socket.toString(), mode, tapArg, "--queues", Integer.toString(queues), "--stats", "1"));
            if (!pollUs.equals("0")) {
                cmd.addAll(List.of("--poll-us", pollUs, "--pollers", pollers));
            }
            serve = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(serveLog.toFile()).start();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (!Files.exists(socket) && System.nanoTime() < deadline) {
                assertThat(serve.isAlive()).as("serve started: %s", Files.readString(serveLog)).isTrue();
                Thread.sleep(20);
            }
            assertThat(Files.exists(socket)).as("serve listens: %s", Files.readString(serveLog)).isTrue();
            py = new ProcessBuilder(inNs(ns, "python3", server.toString(), downFile.toString()))
                    .redirectErrorStream(true).redirectOutput(pyLog.toFile()).start();
            // with two queue pairs, two vCPUs: Linux uses as many pairs as it has CPUs
            Process qemu = new ProcessBuilder(QemuInteropTest.qemu(initrd, "-smp", Integer.toString(queues),
                    "-chardev", "socket,id=vnet,path=" + socket,
                    "-netdev", "vhost-user,id=net0,chardev=vnet,queues=" + queues,
                    // vectors=0: see QemuInteropTest (QEMU 7.2's vhost-user NIC with MSI-X and a control queue)
                    "-device", "virtio-net-pci,netdev=net0,mac=52:54:00:4a:56:02,romfile=,vectors=0,mq="
                            + (queues > 1 ? "on" : "off")))
                    .redirectErrorStream(true).start();
            StringBuilder console = new StringBuilder();
            Thread reader = Thread.ofPlatform().daemon().start(() -> {
                try (var in = qemu.getInputStream()) {
                    byte[] b = new byte[4096];
                    int n;
                    while ((n = in.read(b)) > 0) {
                        synchronized (console) {
                            console.append(new String(b, 0, n));
                        }
                    }
                } catch (Exception e) {
                    // QEMU went away
                }
            });
            try {
                // the TAP device exists once serve started (--tap) or the guest connected (per connection)
                deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
                while (System.nanoTime() < deadline && !new String(new ProcessBuilder(inNs(ns, "ip", "-o", "link"))
                        .start().getInputStream().readAllBytes()).contains(" " + tapName + ":")) {
                    Thread.sleep(100);
                }
                sh(inNs(ns, "ip", "addr", "add", "10.0.2.1/24", "dev", tapName));
                sh(inNs(ns, "ip", "link", "set", tapName, "up"));
                assertThat(qemu.waitFor(300, TimeUnit.SECONDS)).as("guest finished:%n%s%nserve:%n%s", console,
                        Files.readString(serveLog)).isTrue();
                reader.join(5000);
            } finally {
                qemu.destroyForcibly();
            }
            String out;
            synchronized (console) {
                out = console.toString();
            }
            String what = out + "\nserve:\n" + Files.readString(serveLog) + "\nserver:\n" + Files.readString(pyLog);
            assertThat(out).as(what).contains("3 packets transmitted, 3 packets received").contains("PING rc=0");
            String upMd5 = QemuInteropTest.field(out, "UPMD5");
            assertThat(QemuInteropTest.field(out, "UPACK")).as("the host got the guest's 4 MiB: %s", what).isEqualTo(upMd5);
            assertThat(QemuInteropTest.field(out, "DOWNLEN")).as(what).isEqualTo(Integer.toString(BYTES));
            assertThat(QemuInteropTest.field(out, "DOWNMD5")).as("the guest got the host's 4 MiB: %s", what)
                    .isEqualTo(HexFormat.of().formatHex(MessageDigest.getInstance("MD5").digest(down)));
            // 4 MiB each way is about 2,900 frames of 1,500 bytes; with segmentation offloads a few hundred
            // segments of up to 64 KiB (and their acknowledgements) cross the ring instead — on the guest's own
            // TAP device and on the switch alike (an offload port, and the TAP plugged into it with the header)
            long tx = Long.parseLong(QemuInteropTest.field(out, "TXPACKETS"));
            long rx = Long.parseLong(QemuInteropTest.field(out, "RXPACKETS"));
            for (int bit : new int[] {0, 1, 7, 8, 11, 12}) { // CSUM, GUEST_CSUM, GUEST_TSO4/6, HOST_TSO4/6
                assertThat(QemuInteropTest.guestFeature(out, bit)).as("offload feature bit %d: %s", bit, what).isTrue();
            }
            assertThat(QemuInteropTest.field(out, "RXQUEUES")).as("the guest's receive queues: %s", what)
                    .isEqualTo(Integer.toString(queues));
            assertThat(tx).as("the guest sent segments, the host kernel cut them: %s", what).isLessThan(1500);
            assertThat(rx).as("the host sent the guest segments: %s", what).isLessThan(1500);
            Thread.sleep(1500); // the next statistics line
            java.util.regex.Matcher m = java.util.regex.Pattern.compile(
                    "([\\d,]+) frames to guests \\(([\\d,]+) read straight into their buffers, ([\\d,]+) after waiting")
                    .matcher(Files.readString(serveLog));
            long[] last = null;
            while (m.find()) {
                last = new long[] {Long.parseLong(m.group(1).replace(",", "")),
                        Long.parseLong(m.group(2).replace(",", "")), Long.parseLong(m.group(3).replace(",", ""))};
            }
            assertThat(last).as("statistics: %s", what).isNotNull();
            if (!mode.equals("--tap")) {
                // its own TAP device reads frames straight into the guest's buffers, also when polled (by the
                // poller, which alone writes into its rings)
                assertThat(last[1]).as("frames read straight into the guest's buffers: %s", what).isPositive();
            } else if (!pollUs.equals("0")) {
                // the switch's TAP read by the poller: its frames switched straight into the polled ring; from a
                // thread of the TAP's each would wait in the NIC's queue for the poller
                assertThat(last[2] * 2).as("frames that waited in the NIC's queue, of %d: %s", last[0], what)
                        .isLessThan(last[0]);
            }
        } finally {
            if (py != null) {
                py.destroyForcibly();
            }
            if (serve != null) {
                serve.destroy();
                serve.waitFor(10, TimeUnit.SECONDS);
                serve.destroyForcibly();
            }
            new ProcessBuilder("ip", "netns", "del", ns).start().waitFor();
        }
    }
}
