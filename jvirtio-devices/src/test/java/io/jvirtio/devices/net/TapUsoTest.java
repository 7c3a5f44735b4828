package io.jvirtio.devices.net;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.DeviceHarness;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * UDP segmentation offload (USO) through a real TAP device with the virtio-net header, against the Linux
 * stack in a network namespace the test makes: the driver's one 8,000-byte UDP datagram with gso_size 1,000
 * (HOST_USO) arrives at a socket in the namespace as eight datagrams; and a socket's UDP_SEGMENT send reaches
 * a driver that took GUEST_USO4 and GUEST_USO6 as one frame with gso_type UDP_L4, and one without them as eight.
 */
class TapUsoTest {
    static final byte[] MAC = {0x52, 0x54, 0, 1, 2, 3};
    static final long BASE = Feature.maskOf(Feature.VERSION_1, Feature.NET_MAC);
    static final int PAYLOAD = 8000;
    static final int GSO_SIZE = 1000;
    static final ValueLayout.OfShort BE16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    final String ns = "jvuso" + ProcessHandle.current().pid();
    final String ifname = "jvuso" + (ProcessHandle.current().pid() % 100000);
    TapBackend tap;
    NetDevice dev;
    DeviceHarness h;

    static String sh(String... cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.waitFor()).as("%s: %s", String.join(" ", cmd), out).isZero();
        return out.strip();
    }

    @BeforeEach
    void namespace() throws Exception {
        boolean usable = Files.exists(Path.of("/dev/net/tun")) && Files.isExecutable(Path.of("/usr/sbin/ip"))
                && Files.isExecutable(Path.of("/usr/bin/python3")) && "root".equals(System.getProperty("user.name"));
        if (!usable) {
            System.err.println("TapUsoTest SKIPPED: needs /dev/net/tun, /usr/sbin/ip, python3 and root");
        }
        Assumptions.assumeTrue(usable, "needs /dev/net/tun, ip, python3 and root");
        tap = new TapBackend(ifname, true);
        boolean uso = (tap.offloads() & TapBackend.USO) == TapBackend.USO;
        if (!uso) {
            System.err.println("TapUsoTest SKIPPED: this kernel's TAP has no TUN_F_USO4/6 (Linux 6.2+)");
        }
        Assumptions.assumeTrue(uso, "kernel without TUN_F_USO4/6");
        sh("ip", "netns", "add", ns);
        sh("ip", "link", "set", ifname, "netns", ns);
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf." + ifname + ".disable_ipv6=1");
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", "192.0.2.1/24", "dev", ifname);
        sh("ip", "netns", "exec", ns, "ip", "link", "set", ifname, "up");
        sh("ip", "netns", "exec", ns, "ip", "neigh", "add", "192.0.2.2", "lladdr", "52:54:00:01:02:03", "dev", ifname);
    }

    @AfterEach
    void tearDown() throws Exception {
        if (h != null) {
            h.close();
        }
        if (tap != null) {
            tap.close();
            new ProcessBuilder("ip", "netns", "del", ns).start().waitFor(10, TimeUnit.SECONDS);
        }
    }

    void start(long features) throws Exception {
        dev = new NetDevice(tap, MAC, 1);
        h = new DeviceHarness(dev, features);
    }

    /** python3 in the namespace, its stdout lines as they come. */
    static final class Python implements AutoCloseable {
        final Process p;
        final BufferedReader out;

        Python(String ns, String script) throws Exception {
            p = new ProcessBuilder("ip", "netns", "exec", ns, "python3", "-u", "-c", script).redirectErrorStream(true).start();
            out = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
        }

        String line() throws Exception {
            String l = out.readLine();
            assertThat(l).as("python3 ended").isNotNull();
            return l;
        }

        @Override
        public void close() {
            p.destroyForcibly();
        }
    }

    static byte[] payload() {
        byte[] b = new byte[PAYLOAD];
        for (int i = 0; i < b.length; i++) {
            b[i] = (byte) (i % 251);
        }
        return b;
    }

    static int fold(long sum) {
        while ((sum >>> 16) != 0) {
            sum = (sum & 0xffff) + (sum >>> 16);
        }
        return (int) sum;
    }

    /** Header (NEEDS_CSUM, UDP_L4, gso_size 1000) + Ethernet + IPv4 + UDP (pseudo-header sum) + payload. */
    byte[] usoFrame(byte[] tapMac) {
        byte[] data = payload();
        byte[] p = new byte[12 + 14 + 20 + 8 + data.length];
        MemorySegment s = MemorySegment.ofArray(p);
        s.set(ValueLayout.JAVA_BYTE, 0, (byte) 1);                  // VIRTIO_NET_HDR_F_NEEDS_CSUM
        s.set(ValueLayout.JAVA_BYTE, 1, (byte) Offloads.GSO_UDP_L4);
        s.set(GuestMemory.U16, 2, (short) 42);                        // hdr_len: Ethernet + IPv4 + UDP
        s.set(GuestMemory.U16, 4, (short) GSO_SIZE);
        s.set(GuestMemory.U16, 6, (short) 34);                        // csum_start: the UDP header
        s.set(GuestMemory.U16, 8, (short) 6);                         // csum_offset: its checksum
        System.arraycopy(tapMac, 0, p, 12, 6);
        System.arraycopy(MAC, 0, p, 18, 6);
        s.set(BE16, 24, (short) Offloads.ETH_P_IP);
        int ip = 26;
        byte[] src = {(byte) 192, 0, 2, 2};
        byte[] dst = {(byte) 192, 0, 2, 1};
        p[ip] = 0x45;
        s.set(BE16, ip + 2, (short) (20 + 8 + data.length));
        s.set(BE16, ip + 6, (short) 0x4000);                          // DF
        p[ip + 8] = 64;
        p[ip + 9] = 17;
        System.arraycopy(src, 0, p, ip + 12, 4);
        System.arraycopy(dst, 0, p, ip + 16, 4);
        long sum = 0;
        for (int i = 0; i < 20; i += 2) {
            sum += Short.toUnsignedInt(s.get(BE16, ip + i));
        }
        s.set(BE16, ip + 10, (short) ~fold(sum));
        int udp = ip + 20;
        s.set(BE16, udp, (short) 40000);
        s.set(BE16, udp + 2, (short) 9000);
        s.set(BE16, udp + 4, (short) (8 + data.length));
        long pseudo = 0xc000 + 0x0202 + 0xc000 + 0x0201 + 17 + 8 + data.length;
        s.set(BE16, udp + 6, (short) fold(pseudo));                   // partial: the pseudo-header sum
        System.arraycopy(data, 0, p, udp + 8, data.length);
        return p;
    }

    /** Something the guest sends.  */
    interface Send {
        void run(byte[] tapMac) throws Exception;
    }

    /** What a UDP socket on the host's side of the TAP receives on port 9000 while {@code send} runs. */
    List<String> datagramsAtTheHost(Send send) throws Exception {
        byte[] tapMac = HexFormat.ofDelimiter(":").parseHex(
                sh("ip", "netns", "exec", ns, "cat", "/sys/class/net/" + ifname + "/address"));
        try (Python rx = new Python(ns, """
                import socket
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(('192.0.2.1', 9000))
                s.settimeout(3)
                print('READY')
                got = b''
                n = 0
                try:
                    while True:
                        d = s.recv(65536)
                        n += 1
                        print('DGRAM', len(d))
                        got += d
                except socket.timeout:
                    pass
                ok = got == bytes(i % 251 for i in range(8000))
                print('DONE', n, ok)
                """)) {
            assertThat(rx.line()).isEqualTo("READY");
            send.run(tapMac);
            List<String> lines = new ArrayList<>();
            for (String l = rx.line(); ; l = rx.line()) {
                lines.add(l);
                if (l.startsWith("DONE")) {
                    return lines;
                }
            }
        }
    }

    static final String[] EIGHT_SEGMENTS = {"DGRAM 1000", "DGRAM 1000", "DGRAM 1000", "DGRAM 1000", "DGRAM 1000",
            "DGRAM 1000", "DGRAM 1000", "DGRAM 1000", "DONE 8 True"};

    @Test
    @io.jvirtio.core.spec.Conformance("net-dev-5")
    void theDriversLargeUdpDatagramLeavesAsSegmentsOfGsoSize() throws Exception {
        start(BASE | Feature.maskOf(Feature.NET_CSUM, Feature.NET_HOST_USO));
        assertThat(dev.deviceFeatures() & TapBackend.USO).as("offered: the kernel takes USO").isEqualTo(TapBackend.USO);
        List<String> lines = datagramsAtTheHost(tapMac -> {
            byte[] frame = usoFrame(tapMac);
            long tx = h.alloc.allocate(frame.length, 8);
            h.memory.write(tx, frame, 0, frame.length);
            h.roundTrip(1, new Scatterlist().addReadable(tx, frame.length));
        });
        assertThat(lines).as("the host's socket: eight datagrams of gso_size, the payload in order")
                .containsExactly(EIGHT_SEGMENTS);
        assertThat(dev.txDropped.get()).isZero();
    }

    @Test
    void aSegmentOverSeveralBuffersGoesToTheKernelFromWhereItLies() throws Exception {
        // as a Linux guest sends a segment: header and headers in one buffer, the payload in others; the TAP
        // writes the checked header and the guest's buffers with one writev
        start(BASE | Feature.maskOf(Feature.NET_CSUM, Feature.NET_HOST_USO));
        List<String> lines = datagramsAtTheHost(tapMac -> {
            byte[] frame = usoFrame(tapMac);
            int[] cuts = {12 + 42 + 100, 12 + 42 + 3100, frame.length};
            Scatterlist sg = new Scatterlist();
            int from = 0;
            for (int cut : cuts) {
                long buf = h.alloc.allocate(cut - from, 8);
                h.memory.write(buf, frame, from, cut - from);
                sg.addReadable(buf, cut - from);
                from = cut;
            }
            h.roundTrip(1, sg);
        });
        assertThat(lines).as("the same eight datagrams, the payload in order").containsExactly(EIGHT_SEGMENTS);
        assertThat(dev.txDropped.get()).isZero();
    }

    /** The UDP frames that reach the driver (other traffic skipped) until {@code quiet} ms pass without one. */
    List<byte[]> udpFramesToDriver(long quiet) throws Exception {
        List<byte[]> frames = new ArrayList<>();
        DriverQueue<Object> rx = h.queues.get(0);
        int size = 12 + 65550;
        for (int i = 0; i < 16; i++) {
            long buf = h.alloc.allocate(size, 8);
            rx.addInBuf(buf, size, buf);
        }
        rx.kick();
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(quiet);
        while (System.nanoTime() < deadline) {
            Object token = rx.getBuf();
            if (token == null) {
                Thread.sleep(1);
                continue;
            }
            long buf = (Long) token;
            byte[] got = new byte[rx.lastLength()];
            h.memory.read(buf, got, 0, got.length);
            MemorySegment g = MemorySegment.ofArray(got);
            if (got.length > 12 + 34 && Short.toUnsignedInt(g.get(BE16, 24)) == Offloads.ETH_P_IP && got[12 + 23] == 17) {
                frames.add(got);
                deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(quiet);
            }
            rx.addInBuf(buf, size, buf);
            rx.kick();
        }
        return frames;
    }

    static final String SEND_SEGMENTED = """
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.IPPROTO_UDP, 103, 1000)  # UDP_SEGMENT: one send, datagrams of 1000
            s.sendto(bytes(i % 251 for i in range(8000)), ('192.0.2.2', 9000))
            print('SENT')
            """;

    @Test
    @io.jvirtio.core.spec.Conformance("net-dev-9")
    void aHostUdpSendArrivesUncutOnlyAtADriverThatTookUso() throws Exception {
        start(BASE | Feature.maskOf(Feature.NET_GUEST_CSUM, Feature.NET_GUEST_USO4, Feature.NET_GUEST_USO6));
        try (Python tx = new Python(ns, SEND_SEGMENTED)) {
            assertThat(tx.line()).isEqualTo("SENT");
        }
        List<byte[]> frames = udpFramesToDriver(1000);
        assertThat(frames).as("one frame, uncut (TUN_F_USO4|USO6 followed the driver)").hasSize(1);
        byte[] f = frames.getFirst();
        MemorySegment g = MemorySegment.ofArray(f);
        assertThat(f[1]).as("gso_type UDP_L4").isEqualTo((byte) Offloads.GSO_UDP_L4);
        assertThat(Short.toUnsignedInt(g.get(GuestMemory.U16, 4))).as("gso_size").isEqualTo(GSO_SIZE);
        assertThat(f.length).isEqualTo(12 + 14 + 20 + 8 + PAYLOAD);
        assertThat(java.util.Arrays.copyOfRange(f, 12 + 42, f.length)).isEqualTo(payload());
        h.close();
        h = null;

        start(BASE | Feature.NET_GUEST_CSUM.mask()); // no GUEST_USO: the kernel cuts before the TAP
        try (Python tx = new Python(ns, SEND_SEGMENTED)) {
            assertThat(tx.line()).isEqualTo("SENT");
        }
        frames = udpFramesToDriver(1000);
        assertThat(frames).as("eight datagrams").hasSize(8);
        for (byte[] d : frames) {
            assertThat(d[1]).as("gso_type NONE").isZero();
            assertThat(d.length).isEqualTo(12 + 42 + GSO_SIZE);
        }
    }
}
