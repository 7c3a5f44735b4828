package io.jvirtio.cli;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.drivers.net.NetDriver;
import io.jvirtio.drivers.net.VirtioNet;
import io.jvirtio.vhostuser.VhostUserFrontend;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/** {@code serve net} exports as a front-end meets them: queue pairs (--queues), the switch's host answering. */
@Timeout(60)
class NetExportTest {
    static final long BASE = 0x1_0000_0000L;

    /** An ARP request from {@code mac} (192.0.2.2) for 192.0.2.1, the switch's host. */
    static byte[] arpRequest(byte[] mac) {
        ByteBuffer b = ByteBuffer.allocate(60);
        b.put(new byte[] {-1, -1, -1, -1, -1, -1}).put(mac).putShort((short) 0x0806);
        b.putShort((short) 1).putShort((short) 0x0800).put((byte) 6).put((byte) 4).putShort((short) 1);
        b.put(mac).put(new byte[] {(byte) 192, 0, 2, 2}).put(new byte[6]).put(new byte[] {(byte) 192, 0, 2, 1});
        return b.array();
    }

    @Test
    void aNetExportWithQueuesOffersThatManyPairsAndItsHostAnswers(@TempDir Path dir) throws Exception {
        Shared shared = new Shared();
        try (Export export = Export.open(Export.parse("net,socket=" + dir.resolve("n.sock") + ",queues=3"), shared);
             GuestMemory mem = GuestMemory.memfd(BASE, 16 << 20);
             VhostUserFrontend fe = VhostUserFrontend.connect(dir.resolve("n.sock"), mem, new GuestAllocator(mem, BASE, 16 << 20))) {
            assertThat(export.describe()).contains("3 queue pairs");
            VirtioBus bus = new VirtioBus();
            NetDriver driver = new NetDriver();
            bus.registerDriver(driver);
            bus.registerDevice(DeviceType.NET.id(), fe);
            VirtioNet nic = driver.nics().getFirst();
            assertThat(Feature.NET_MQ.isSet(fe.getFeatures())).as("MQ offered").isTrue();
            assertThat(nic.queuePairs()).isEqualTo(3);
            byte[] reply = null;
            for (int attempt = 0; attempt < 10 && reply == null; attempt++) {
                nic.send(arpRequest(nic.mac()));
                byte[] f = nic.receive(500, TimeUnit.MILLISECONDS);
                if (f != null && f.length >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[21] == 2) {
                    reply = f;
                }
            }
            assertThat(reply).as("the switch's host answered over one of the three pairs").isNotNull();
            assertThat(java.util.Arrays.copyOfRange(reply, 28, 32)).containsExactly((byte) 192, 0, 2, 1);
            // the operator's view (serve --stats, ctl stats): the NIC's frames both ways
            @SuppressWarnings("unchecked")
            var devices = (java.util.List<java.util.Map<String, Object>>) export.stats().get("devices");
            assertThat(devices).hasSize(1);
            assertThat((Long) devices.getFirst().get("tx_frames")).as("ARP requests from the guest").isPositive();
            assertThat((Long) devices.getFirst().get("rx_frames")).as("the reply to it").isPositive();
            assertThat(export.line()).contains("net: ").contains("frames to guests");
        }
    }

    /**
     * {@code generate=BYTES}: the switch's traffic source fills the guest's receive ring with its UDP broadcast, on a
     * thread of its own or, with {@code poll-us}, in the poller's rounds.
     */
    @org.junit.jupiter.params.ParameterizedTest
    @org.junit.jupiter.params.provider.ValueSource(strings = {"", ",poll-us=50"})
    void aGeneratingSwitchSendsItsFramesToTheGuest(String polling, @TempDir Path dir) throws Exception {
        try (Shared shared = new Shared();
             Export export = Export.open(Export.parse("net,socket=" + dir.resolve("n.sock") + ",generate=128" + polling), shared);
             GuestMemory mem = GuestMemory.memfd(BASE, 16 << 20);
             VhostUserFrontend fe = VhostUserFrontend.connect(dir.resolve("n.sock"), mem, new GuestAllocator(mem, BASE, 16 << 20))) {
            assertThat(export.describe()).contains("128-byte UDP frames");
            VirtioBus bus = new VirtioBus();
            NetDriver driver = new NetDriver();
            bus.registerDriver(driver);
            bus.registerDevice(DeviceType.NET.id(), fe);
            VirtioNet nic = driver.nics().getFirst();
            for (int i = 0; i < 20; i++) {
                byte[] f = nic.receive(5, TimeUnit.SECONDS);
                assertThat(f).as("frame %d", i).isNotNull().hasSize(128);
                assertThat(java.util.Arrays.copyOfRange(f, 0, 6)).as("broadcast").containsOnly((byte) -1);
                assertThat(java.util.Arrays.copyOfRange(f, 6, 12)).containsExactly(0x52, 0x54, 0, 0x4a, 0x56, 2);
                assertThat(f[23]).as("UDP").isEqualTo((byte) 17);
            }
            assertThat(shared.netIfAny().generator().sent()).isGreaterThanOrEqualTo(20);
        }
    }

    /** Closing what a serve process's exports share stops its traffic source and its polling thread. */
    @Test
    void closingTheSharedStateStopsTheTrafficSourceAndThePoller(@TempDir Path dir) throws Exception {
        long before = pollerThreads(); // another test's, not closed yet
        Shared shared = new Shared();
        try (Export export = Export.open(Export.parse("net,socket=" + dir.resolve("n.sock") + ",generate=64,poll-us=50"),
                shared)) {
            assertThat(pollerThreads()).as("the polling thread runs").isEqualTo(before + 1);
        }
        shared.close();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (pollerThreads() > before && System.nanoTime() < deadline) {
            Thread.sleep(10);
        }
        assertThat(pollerThreads()).as("polling threads left").isLessThanOrEqualTo(before);
        long sent = shared.netIfAny().generator().sent();
        Thread.sleep(100);
        assertThat(shared.netIfAny().generator().sent()).as("frames sent after close").isEqualTo(sent);
    }

    private static long pollerThreads() {
        return Thread.getAllStackTraces().keySet().stream()
                .filter(t -> t.getName().equals("jvirtio-net-poller") && t.isAlive()).count();
    }

    @Test
    void aGeneratorIsRefusedWithABadSizeOrBesideATapDevice(@TempDir Path dir) {
        org.assertj.core.api.Assertions.assertThatThrownBy(() ->
                        Export.open(Export.parse("net,socket=" + dir.resolve("n.sock") + ",generate=59"), new Shared()))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("generate 59");
        org.assertj.core.api.Assertions.assertThatThrownBy(() ->
                        Export.open(Export.parse("net,socket=" + dir.resolve("n.sock") + ",generate=big"), new Shared()))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("'big'");
        org.assertj.core.api.Assertions.assertThatThrownBy(() ->
                        Export.open(Export.parse("net,socket=" + dir.resolve("n.sock") + ",generate=64,tap=jvx0"), new Shared()))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("tap=jvx0");
    }

    /**
     * {@code pollers=N}: that many polling threads, shared by the process's net exports (each one names the same),
     * a guest's pairs spread over them; refused without {@code poll-us}, naming both.
     */
    @Test
    void pollersStartThatManyPollingThreadsSharedByEveryNetExport(@TempDir Path dir) throws Exception {
        Shared shared = new Shared();
        try (Export a = Export.open(Export.parse("net,socket=" + dir.resolve("a.sock") + ",poll-us=50,pollers=2"), shared);
             Export b = Export.open(Export.parse("net,socket=" + dir.resolve("b.sock") + ",poll-us=50,pollers=2"), shared)) {
            assertThat(a.describe()).contains("queues polled by 2 threads (50 µs before sleeping)");
            assertThat(threads("jvirtio-net-poller-0") + threads("jvirtio-net-poller-1")).as("polling threads").isEqualTo(2);
            assertThat(b.describe()).contains("2 threads");
            org.assertj.core.api.Assertions.assertThatThrownBy(() -> Export.open(Export.parse("net,socket="
                            + dir.resolve("c.sock") + ",poll-us=50,pollers=3"), shared))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("pollers=3").hasMessageContaining(": 2,");
        } finally {
            shared.close();
        }
        org.assertj.core.api.Assertions.assertThatThrownBy(() ->
                        Export.open(Export.parse("net,socket=" + dir.resolve("d.sock") + ",pollers=2"), new Shared()))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("pollers=2").hasMessageContaining("poll-us");
        org.assertj.core.api.Assertions.assertThatThrownBy(() ->
                        Export.open(Export.parse("net,socket=" + dir.resolve("e.sock") + ",poll-us=50,pollers=0"), new Shared()))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("pollers");
    }

    private static long threads(String name) {
        return Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().equals(name) && t.isAlive()).count();
    }

    @Test
    void queuesOutOfRangeAreRefusedNamingTheValue(@TempDir Path dir) {
        org.assertj.core.api.Assertions.assertThatThrownBy(() ->
                        Export.open(Export.parse("net,socket=" + dir.resolve("n.sock") + ",queues=65"), new Shared()))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("queues");
    }
}
