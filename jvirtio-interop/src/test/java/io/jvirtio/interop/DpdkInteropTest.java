package io.jvirtio.interop;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.drivers.net.NetDriver;
import io.jvirtio.drivers.net.VirtioNet;
import io.jvirtio.vhostuser.VhostUserFrontend;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * DPDK 22.11 as the peer, both ways, over split and packed rings with and without IN_ORDER: testpmd's
 * {@code net_virtio_user} front-end on {@code jvirtio serve net}'s switch, and jvirtio's vhost-user front-end
 * with its net driver on testpmd's {@code net_vhost} back-end. testpmd runs {@code icmpecho} forwarding — it
 * answers ARP requests and ICMP echo requests — and a jvirtio NIC resolves it and pings it, checking every
 * byte of the replies.
 */
class DpdkInteropTest {
    static final byte[] OUR_IP = {10, 9, 9, 1};
    static final byte[] THEIR_IP = {10, 9, 9, 2};
    static final long MEM = 0x1_0000_0000L;
    static final long MEM_SIZE = 64L << 20;

    static void requireDpdk() {
        QemuInteropTest.requireTools(); // installs dpdk and dpdk-dev (testpmd) with the rest
        Assumptions.assumeTrue(Files.isExecutable(Path.of("/usr/bin/dpdk-testpmd")), "dpdk-testpmd missing");
    }

    /** testpmd in {@code icmpecho} mode on one {@code vdev}, forwarding from start; stdin ends it. */
    static final class Testpmd implements AutoCloseable {
        final Process process;
        final StringBuilder out = new StringBuilder();
        final CountDownLatch started = new CountDownLatch(1);

        Testpmd(String vdev, Path dir) throws Exception {
            // stdbuf: testpmd writes through stdio, fully buffered into a pipe; lines are needed as they come
            process = new ProcessBuilder("stdbuf", "-oL", "dpdk-testpmd", "--lcores", "0@1,1@0", "--no-pci", "--no-huge", "-m", "512",
                    "--file-prefix=jv" + ProcessHandle.current().pid() + "x" + System.nanoTime() % 100000,
                    "--vdev", vdev, "--", "--forward-mode=icmpecho", "--auto-start", "--total-num-mbufs=8192")
                    .directory(dir.toFile()).redirectErrorStream(true).start();
            Thread.ofPlatform().daemon().start(() -> {
                try (BufferedReader r = new BufferedReader(new InputStreamReader(process.getInputStream(),
                        StandardCharsets.UTF_8))) {
                    for (String line; (line = r.readLine()) != null; ) {
                        synchronized (out) {
                            out.append(line).append('\n');
                        }
                        if (line.contains("Press enter to exit")) {
                            started.countDown();
                        }
                    }
                } catch (Exception e) {
                    // testpmd went away
                }
            });
        }

        String output() {
            synchronized (out) {
                return out.toString();
            }
        }

        void awaitStarted() throws InterruptedException {
            assertThat(started.await(60, TimeUnit.SECONDS)).as("testpmd forwarding:%n%s", output()).isTrue();
        }

        /** Ends forwarding (enter) and returns everything testpmd printed, its statistics last. */
        String stop() throws Exception {
            try (OutputStream in = process.getOutputStream()) {
                in.write('\n');
            }
            assertThat(process.waitFor(60, TimeUnit.SECONDS)).as("testpmd exits:%n%s", output()).isTrue();
            Thread.sleep(100);
            return output();
        }

        @Override
        public void close() {
            process.destroyForcibly();
        }
    }

    /** {@code jvirtio serve net} with a built-in host at 192.0.2.1, which stays out of 10.9.9.0/24. */
    static Process serveNet(Path socket, Path log) throws Exception {
        String javaBin = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process p = new ProcessBuilder(javaBin, "--enable-native-access=ALL-UNNAMED", "-cp",
                System.getProperty("java.class.path"), "io.jvirtio.cli.Main", "serve", "net",
                "--socket", socket.toString(), "--stats", "0")
                .redirectErrorStream(true).redirectOutput(log.toFile()).start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!Files.exists(socket) && System.nanoTime() < deadline) {
            assertThat(p.isAlive()).as("jvirtio serve net started").isTrue();
            Thread.sleep(20);
        }
        assertThat(Files.exists(socket)).isTrue();
        return p;
    }

    /**
     * testpmd's virtio_user is a port on jvirtio's switch; a jvirtio NIC on another port resolves and pings it.
     * DPDK's front-end chooses the ring format ({@code packed_vq}) and IN_ORDER ({@code in_order}); the
     * back-end's log shows what was negotiated.
     */
    @ParameterizedTest(name = "packed_vq={0} in_order={1}")
    @CsvSource({"0,0", "1,0", "0,1", "1,1"})
    void testpmdVirtioUserOnTheSwitchAnswersAJvirtioNic(int packed, int inOrder, @TempDir Path dir) throws Exception {
        requireDpdk();
        Path socket = dir.resolve("net.sock");
        Path log = dir.resolve("serve.log");
        Process serve = serveNet(socket, log);
        try (Testpmd testpmd = new Testpmd("net_virtio_user0,path=" + socket + ",queues=1,packed_vq=" + packed
                + ",in_order=" + inOrder, dir);
             GuestMemory mem = GuestMemory.memfd(MEM, MEM_SIZE)) {
            testpmd.awaitStarted(); // testpmd's session is the back-end's first
            try (VhostUserFrontend fe = VhostUserFrontend.connect(socket, mem, new GuestAllocator(mem, MEM, MEM_SIZE))) {
                pingThrough(nic(fe), 5);
            }
            String stats = testpmd.stop();
            assertThat(forwarded(stats)).as("testpmd answered the ARP request and 5 pings:%n%s", stats)
                    .isGreaterThanOrEqualTo(6);
        } finally {
            serve.destroy();
            serve.waitFor(20, TimeUnit.SECONDS);
        }
        String served = Files.readString(log);
        // the first session is testpmd's: its features line says which ring format DPDK chose
        String dpdkFeatures = served.lines().filter(l -> l.contains("vhost-user#1: features")).findFirst().orElse("");
        assertThat(dpdkFeatures).as(served).contains("VERSION_1");
        assertThat(dpdkFeatures.contains("RING_PACKED")).as("packed ring negotiated: %s", dpdkFeatures).isEqualTo(packed == 1);
        assertThat(dpdkFeatures.contains("IN_ORDER")).as("IN_ORDER negotiated: %s", dpdkFeatures).isEqualTo(inOrder == 1);
    }

    /**
     * jvirtio's vhost-user front-end and net driver on testpmd's {@code net_vhost} back-end (DPDK's vhost
     * library), on the ring format jvirtio's front-end accepts.
     */
    @ParameterizedTest(name = "packed={0} in_order={1}")
    @CsvSource({"false,false", "true,false", "false,true", "true,true"})
    void jvirtioFrontEndDrivesTestpmdNetVhost(boolean packed, boolean inOrder, @TempDir Path dir) throws Exception {
        requireDpdk();
        Path socket = dir.resolve("vhost.sock");
        try (Testpmd testpmd = new Testpmd("net_vhost0,iface=" + socket + ",queues=1", dir)) {
            testpmd.awaitStarted();
            try (GuestMemory mem = GuestMemory.memfd(MEM, MEM_SIZE);
                 VhostUserFrontend fe = VhostUserFrontend.connect(socket, mem, new GuestAllocator(mem, MEM, MEM_SIZE))) {
                assertThat(Feature.RING_PACKED.isSet(fe.getFeatures())).as("DPDK offers the packed ring").isTrue();
                assertThat(Feature.IN_ORDER.isSet(fe.getFeatures())).as("DPDK offers IN_ORDER").isTrue();
                fe.refuse((packed ? 0 : Feature.RING_PACKED.mask()) | (inOrder ? 0 : Feature.IN_ORDER.mask()));
                // DPDK's vhost library has no configuration space (no PROTOCOL_F_CONFIG): the front-end keeps it,
                // as QEMU does — here: MAC, status LINK_UP, one queue pair, MTU 1500
                fe.localConfig(new byte[] {0x52, 0x54, 0, 0x12, 0x34, 0x56, 1, 0, 1, 0, (byte) 0xdc, 0x05});
                VirtioNet nic = nic(fe);
                assertThat(nic.device().hasFeature(Feature.RING_PACKED)).isEqualTo(packed);
                assertThat(nic.device().hasFeature(Feature.IN_ORDER)).isEqualTo(inOrder);
                pingThrough(nic, 5);
            }
            String stats = testpmd.stop();
            assertThat(forwarded(stats)).as("testpmd answered the ARP request and 5 pings:%n%s", stats)
                    .isGreaterThanOrEqualTo(6);
        }
    }

    static VirtioNet nic(VhostUserFrontend fe) {
        VirtioBus bus = new VirtioBus();
        NetDriver driver = new NetDriver();
        bus.registerDriver(driver);
        bus.registerDevice(DeviceType.NET.id(), fe);
        assertThat(driver.nics()).as("the net driver probed the device: %s", bus.events()).hasSize(1);
        return driver.nics().getFirst();
    }

    /** testpmd's "TX-packets" of its forward statistics for port 0 (each one an answer). */
    static long forwarded(String out) {
        var m = java.util.regex.Pattern.compile("Forward statistics for port 0.*?\\n.*?\\n\\s*TX-packets: (\\d+)",
                java.util.regex.Pattern.DOTALL).matcher(out);
        return m.find() ? Long.parseLong(m.group(1)) : -1;
    }

    /** ARP for 10.9.9.2, then {@code count} pings with distinct payloads; every reply checked byte for byte. */
    static void pingThrough(VirtioNet nic, int count) throws Exception {
        byte[] ours = nic.mac();
        nic.send(arpRequest(ours));
        byte[] reply = awaitFrame(nic, 0x0806);
        ByteBuffer a = ByteBuffer.wrap(reply);
        assertThat(Arrays.copyOfRange(reply, 0, 6)).as("ARP reply to us").isEqualTo(ours);
        assertThat(a.getShort(20)).as("ARP op: reply").isEqualTo((short) 2);
        byte[] theirs = Arrays.copyOfRange(reply, 22, 28);
        assertThat(Arrays.copyOfRange(reply, 28, 32)).as("sender IP").isEqualTo(THEIR_IP);
        assertThat(Arrays.copyOfRange(reply, 32, 38)).as("target MAC").isEqualTo(ours);
        for (int seq = 1; seq <= count; seq++) {
            byte[] payload = new byte[56 + seq * 100];
            for (int i = 0; i < payload.length; i++) {
                payload[i] = (byte) (seq * 31 + i);
            }
            nic.send(echoRequest(ours, theirs, seq, payload));
            byte[] r = awaitFrame(nic, 0x0800);
            assertThat(Arrays.copyOfRange(r, 0, 6)).isEqualTo(ours);
            assertThat(Arrays.copyOfRange(r, 6, 12)).isEqualTo(theirs);
            assertThat(Arrays.copyOfRange(r, 26, 30)).as("from 10.9.9.2").isEqualTo(THEIR_IP);
            assertThat(Arrays.copyOfRange(r, 30, 34)).as("to us").isEqualTo(OUR_IP);
            assertThat(r[34]).as("ICMP echo reply").isZero();
            assertThat(ByteBuffer.wrap(r).getShort(40)).as("sequence").isEqualTo((short) seq);
            int ipLen = ByteBuffer.wrap(r).getShort(16) & 0xffff;
            assertThat(Arrays.copyOfRange(r, 42, 14 + ipLen)).as("payload of ping %d", seq).isEqualTo(payload);
            assertThat(checksum(r, 34, 14 + ipLen - 34)).as("ICMP checksum").isZero();
            assertThat(checksum(r, 14, 20)).as("IP header checksum").isZero();
        }
    }

    static byte[] awaitFrame(VirtioNet nic, int etherType) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (System.nanoTime() < deadline) {
            byte[] f = nic.receive(100, TimeUnit.MILLISECONDS);
            if (f != null && f.length >= 14 && (ByteBuffer.wrap(f).getShort(12) & 0xffff) == etherType) {
                return f;
            }
        }
        throw new AssertionError("no frame of type 0x" + Integer.toHexString(etherType) + " within 10 s");
    }

    static byte[] arpRequest(byte[] ours) {
        ByteBuffer b = ByteBuffer.allocate(60);
        b.put(new byte[] {-1, -1, -1, -1, -1, -1}).put(ours).putShort((short) 0x0806);
        b.putShort((short) 1).putShort((short) 0x0800).put((byte) 6).put((byte) 4).putShort((short) 1);
        b.put(ours).put(OUR_IP).put(new byte[6]).put(THEIR_IP);
        return b.array();
    }

    static byte[] echoRequest(byte[] ours, byte[] theirs, int seq, byte[] payload) {
        int ipLen = 20 + 8 + payload.length;
        ByteBuffer b = ByteBuffer.allocate(14 + ipLen);
        b.put(theirs).put(ours).putShort((short) 0x0800);
        b.put((byte) 0x45).put((byte) 0).putShort((short) ipLen).putShort((short) seq).putShort((short) 0)
                .put((byte) 64).put((byte) 1).putShort((short) 0).put(OUR_IP).put(THEIR_IP);
        b.put((byte) 8).put((byte) 0).putShort((short) 0).putShort((short) 0x4a56).putShort((short) seq).put(payload);
        byte[] f = b.array();
        ByteBuffer.wrap(f).putShort(24, (short) checksum(f, 14, 20));
        ByteBuffer.wrap(f).putShort(36, (short) checksum(f, 34, ipLen - 20));
        return f;
    }

    /** The Internet checksum of {@code len} bytes at {@code off}: 0 over a region that holds its own. */
    static int checksum(byte[] f, int off, int len) {
        long sum = 0;
        for (int i = 0; i + 1 < len; i += 2) {
            sum += ((f[off + i] & 0xff) << 8) | (f[off + i + 1] & 0xff);
        }
        if ((len & 1) != 0) {
            sum += (f[off + len - 1] & 0xff) << 8;
        }
        while ((sum >>> 16) != 0) {
            sum = (sum & 0xffff) + (sum >>> 16);
        }
        return (int) (~sum & 0xffff);
    }
}
