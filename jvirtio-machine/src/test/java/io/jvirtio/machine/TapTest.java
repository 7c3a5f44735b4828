package io.jvirtio.machine;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.devices.net.NetDevice;
import io.jvirtio.devices.net.Responder;
import io.jvirtio.devices.net.TapBackend;
import io.jvirtio.drivers.net.NetDriver;
import io.jvirtio.drivers.net.VirtioNet;
import io.jvirtio.transport.pci.VirtioPciDriver;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The NIC on a real host TAP device, talking to the Linux network stack: ARP and ICMP echo against an
 * address the test gives the TAP inside a network namespace it creates (so no traffic leaves it).
 */
class TapTest {
    static final byte[] MAC = {0x52, 0x54, 0, 0x65, 0x43, 0x21};
    static final byte[] GUEST_IP = {(byte) 192, 0, 2, 2};
    static final byte[] HOST_IP = {(byte) 192, 0, 2, 1};

    static int sh(String... cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes());
        int rc = p.waitFor();
        if (rc != 0) {
            System.err.println(String.join(" ", cmd) + " -> " + rc + ": " + out);
        }
        return rc;
    }

    @Test
    void arpAndPingThroughATapInANetworkNamespace() throws Exception {
        boolean usable = Files.exists(Path.of("/dev/net/tun")) && Files.isExecutable(Path.of("/usr/sbin/ip"))
                && "root".equals(System.getProperty("user.name"));
        if (!usable) {
            System.err.println("TapTest SKIPPED: needs /dev/net/tun, /usr/sbin/ip and root");
        }
        Assumptions.assumeTrue(usable, "TAP test needs /dev/net/tun, /usr/sbin/ip and root");
        String ns = "jvtest" + ProcessHandle.current().pid();
        String ifname = "jvtap" + (ProcessHandle.current().pid() % 100000);
        assertThat(sh("ip", "netns", "add", ns)).isZero();
        TapBackend tap = null;
        try (Machine machine = new Machine(64 << 20)) {
            tap = new TapBackend(ifname);
            assertThat(sh("ip", "link", "set", ifname, "netns", ns)).isZero();
            assertThat(sh("ip", "netns", "exec", ns, "ip", "addr", "add", "192.0.2.1/24", "dev", ifname)).isZero();
            assertThat(sh("ip", "netns", "exec", ns, "ip", "link", "set", ifname, "up")).isZero();

            machine.plug(new NetDevice(tap, MAC, 1));
            VirtioBus bus = new VirtioBus();
            NetDriver driver = new NetDriver();
            bus.registerDriver(driver);
            new VirtioPciDriver(machine, bus).scan();
            VirtioNet nic = driver.nics().getFirst();

            byte[] hostMac = null;
            for (int attempt = 0; attempt < 20 && hostMac == null; attempt++) {
                nic.send(arpRequest());
                hostMac = awaitArpReply(nic, 500);
            }
            assertThat(hostMac).as("ARP reply from the host stack").isNotNull();

            byte[] payload = "jvirtio ping".getBytes();
            nic.send(echoRequest(hostMac, 0x4a56, 7, payload));
            byte[] reply = null;
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (reply == null && System.nanoTime() < deadline) {
                byte[] f = nic.receive(500, TimeUnit.MILLISECONDS);
                if (f != null && f.length >= 42 && f[12] == 0x08 && f[13] == 0x00 && f[23] == 1 && f[34] == 0) {
                    reply = f;
                }
            }
            assertThat(reply).as("ICMP echo reply").isNotNull();
            ByteBuffer r = ByteBuffer.wrap(reply);
            assertThat(r.getShort(38)).as("identifier").isEqualTo((short) 0x4a56);
            assertThat(r.getShort(40)).as("sequence").isEqualTo((short) 7);
            assertThat(java.util.Arrays.copyOfRange(reply, 42, 42 + payload.length)).isEqualTo(payload);
        } finally {
            if (tap != null) {
                tap.close();
            }
            sh("ip", "netns", "del", ns);
        }
    }

    /**
     * A multi-queue TAP device (IFF_MULTI_QUEUE): two descriptors on one interface; an ARP request sent on
     * queue 1 is answered by the host's stack, and the answer reaches one of the queues' readers.
     */
    @Test
    void aMultiQueueTapCarriesFramesOnEachQueue() throws Exception {
        boolean usable = Files.exists(Path.of("/dev/net/tun")) && Files.isExecutable(Path.of("/usr/sbin/ip"))
                && "root".equals(System.getProperty("user.name"));
        Assumptions.assumeTrue(usable, "TAP test needs /dev/net/tun, /usr/sbin/ip and root");
        String ns = "jvmq" + ProcessHandle.current().pid();
        String ifname = "jvmq" + (ProcessHandle.current().pid() % 100000);
        assertThat(sh("ip", "netns", "add", ns)).isZero();
        try (TapBackend tap = new TapBackend(ifname, false, 2)) {
            assertThat(tap.queues()).isEqualTo(2);
            int flags = Integer.decode(Files.readString(Path.of("/sys/class/net", ifname, "tun_flags")).trim());
            assertThat(flags & 0x0100).as("IFF_MULTI_QUEUE in tun_flags 0x%x", flags).isNotZero();
            java.util.concurrent.BlockingQueue<String> replies = new java.util.concurrent.LinkedBlockingQueue<>();
            for (int q = 0; q < 2; q++) {
                int queue = q;
                tap.connect(q, (frame, at, length) -> {
                    if (length >= 42 && frame.get(java.lang.foreign.ValueLayout.JAVA_BYTE, at + 13) == 0x06
                            && frame.get(java.lang.foreign.ValueLayout.JAVA_BYTE, at + 21) == 2) {
                        replies.add("ARP reply on queue " + queue);
                    }
                });
            }
            assertThat(sh("ip", "link", "set", ifname, "netns", ns)).isZero();
            assertThat(sh("ip", "netns", "exec", ns, "ip", "addr", "add", "192.0.2.1/24", "dev", ifname)).isZero();
            assertThat(sh("ip", "netns", "exec", ns, "ip", "link", "set", ifname, "up")).isZero();
            String reply = null;
            for (int attempt = 0; attempt < 20 && reply == null; attempt++) {
                byte[] req = arpRequest();
                tap.transmit(1, java.lang.foreign.MemorySegment.ofArray(req), 0, req.length);
                reply = replies.poll(500, TimeUnit.MILLISECONDS);
            }
            assertThat(reply).as("the host answered the ARP request sent on queue 1").isNotNull();
        } finally {
            sh("ip", "netns", "del", ns);
        }
    }

    static byte[] arpRequest() {
        ByteBuffer b = ByteBuffer.allocate(60);
        b.put(new byte[] {-1, -1, -1, -1, -1, -1}).put(MAC).putShort((short) 0x0806);
        b.putShort((short) 1).putShort((short) 0x0800).put((byte) 6).put((byte) 4).putShort((short) 1);
        b.put(MAC).put(GUEST_IP).put(new byte[6]).put(HOST_IP);
        return b.array();
    }

    static byte[] awaitArpReply(VirtioNet nic, long ms) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(ms);
        while (System.nanoTime() < deadline) {
            byte[] f = nic.receive(100, TimeUnit.MILLISECONDS);
            if (f != null && f.length >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[21] == 2
                    && java.util.Arrays.equals(java.util.Arrays.copyOfRange(f, 28, 32), HOST_IP)) {
                return java.util.Arrays.copyOfRange(f, 22, 28);
            }
        }
        return null;
    }

    static byte[] echoRequest(byte[] dstMac, int id, int seq, byte[] payload) {
        int ipLen = 20 + 8 + payload.length;
        ByteBuffer b = ByteBuffer.allocate(Math.max(60, 14 + ipLen));
        b.put(dstMac).put(MAC).putShort((short) 0x0800);
        int ip = b.position();
        b.put((byte) 0x45).put((byte) 0).putShort((short) ipLen).putShort((short) 1).putShort((short) 0)
                .put((byte) 64).put((byte) 1).putShort((short) 0).put(GUEST_IP).put(HOST_IP);
        b.putShort(ip + 10, Responder.checksum(b.array(), ip, 20));
        int icmp = b.position();
        b.put((byte) 8).put((byte) 0).putShort((short) 0).putShort((short) id).putShort((short) seq).put(payload);
        b.putShort(icmp + 2, Responder.checksum(b.array(), icmp, 8 + payload.length));
        return b.array();
    }

}
