package io.jvirtio.machine;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.devices.net.NetDevice;
import io.jvirtio.devices.net.VirtualSwitch;
import io.jvirtio.drivers.net.NetDriver;
import io.jvirtio.drivers.net.VirtioNet;
import io.jvirtio.transport.pci.VirtioPciDriver;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.zip.CRC32;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Two NICs on a virtual switch inside one machine, driven by the virtio-net driver. */
class NetTest {
    static final byte[] MAC_A = {0x52, 0x54, 0, 0x12, 0x34, 0x01};
    static final byte[] MAC_B = {0x52, 0x54, 0, 0x12, 0x34, 0x02};
    static final byte[] BROADCAST = {-1, -1, -1, -1, -1, -1};

    Machine machine;
    NetDevice devA;
    NetDevice devB;
    VirtioNet a;
    VirtioNet b;
    VirtualSwitch sw;

    void boot(int pairs) throws Exception {
        boot(pairs, 1500);
    }

    void boot(int pairs, int mtu) throws Exception {
        machine = new Machine(64 << 20);
        sw = new VirtualSwitch();
        devA = new NetDevice(sw.port(), MAC_A, pairs, mtu);
        devB = new NetDevice(sw.port(), MAC_B, pairs, mtu);
        machine.plug(devA);
        machine.plug(devB);
        VirtioBus bus = new VirtioBus();
        NetDriver net = new NetDriver();
        bus.registerDriver(net);
        new VirtioPciDriver(machine, bus).scan();
        a = net.nics().get(0);
        b = net.nics().get(1);
    }

    @AfterEach
    void tearDown() {
        if (machine != null) {
            machine.close();
        }
    }

    static byte[] frame(byte[] dst, byte[] src, int seq, int size) {
        byte[] f = new byte[size];
        System.arraycopy(dst, 0, f, 0, 6);
        System.arraycopy(src, 0, f, 6, 6);
        f[12] = (byte) 0x88;
        f[13] = (byte) 0xb5; // local experimental ethertype
        for (int i = 14; i < size - 8; i++) {
            f[i] = (byte) (seq * 13 + i);
        }
        java.nio.ByteBuffer.wrap(f).putInt(14, seq);
        CRC32 crc = new CRC32();
        crc.update(f, 0, size - 8);
        java.nio.ByteBuffer.wrap(f).putLong(size - 8, crc.getValue());
        return f;
    }

    static boolean intact(byte[] f) {
        CRC32 crc = new CRC32();
        crc.update(f, 0, f.length - 8);
        return java.nio.ByteBuffer.wrap(f).getLong(f.length - 8) == crc.getValue();
    }

    @Test
    void framesCrossTheSwitchIntactAndInOrder() throws Exception {
        boot(1);
        assertThat(a.macString()).isEqualTo("52:54:00:12:34:01");
        assertThat(a.linkUp()).isTrue();
        // broadcast first so the switch learns both addresses
        a.send(frame(BROADCAST, MAC_A, 0, 60));
        assertThat(b.receive(5, TimeUnit.SECONDS)).isNotNull();
        b.send(frame(MAC_A, MAC_B, 0, 60));
        assertThat(a.receive(5, TimeUnit.SECONDS)).isNotNull();

        int n = 3000; // far more than the receive ring holds
        Thread sender = Thread.ofPlatform().start(() -> {
            try {
                for (int i = 1; i <= n; i++) {
                    // Ethernet may drop under overload; pace the sender so this test sees none.
                    while (i - b.rxFrames.get() >= NetDevice.INBOUND_LIMIT / 2) {
                        Thread.sleep(1);
                    }
                    a.send(frame(MAC_B, MAC_A, i, 60 + (i % 1455)));
                }
            } catch (Exception e) {
                throw new RuntimeException(e);
            }
        });
        int expect = 1;
        while (expect <= n) {
            byte[] f = b.receive(10, TimeUnit.SECONDS);
            assertThat(f).as("frame %d arrived", expect).isNotNull();
            assertThat(intact(f)).isTrue();
            int seq = java.nio.ByteBuffer.wrap(f).getInt(14);
            assertThat(seq).as("in order (drops: %d)", devB.rxDropped.get()).isEqualTo(expect);
            assertThat(f.length).isEqualTo(60 + (seq % 1455));
            expect++;
        }
        sender.join();
        assertThat(sw.forwarded()).isGreaterThanOrEqualTo(n);
    }

    @Test
    @io.jvirtio.core.spec.Conformance({"net-dev-10", "net-dev-12", "net-dev-14", "net-drv-13"})
    void controlQueueFiltersAndRefusesBadCommands() throws Exception {
        boot(1);
        byte[] other = {0x52, 0x54, 0, 0x12, 0x34, 0x77};
        byte[] multicast = {0x01, 0, 0x5e, 0, 0, 0x42};
        a.setPromiscuous(false);
        a.setAllMulticast(false);
        b.send(frame(other, MAC_B, 1, 60));          // not for A: filtered
        b.send(frame(multicast, MAC_B, 2, 60));      // multicast, not in the table: filtered
        b.send(frame(BROADCAST, MAC_B, 3, 60));      // broadcast: delivered
        byte[] got = a.receive(5, TimeUnit.SECONDS);
        assertThat(java.nio.ByteBuffer.wrap(got).getInt(14)).isEqualTo(3);
        assertThat(devA.rxFiltered.get()).isEqualTo(2);

        a.setMacFilter(List.of(other), List.of(multicast));
        b.send(frame(other, MAC_B, 4, 60));
        b.send(frame(multicast, MAC_B, 5, 60));
        Set<Integer> seqs = new HashSet<>();
        for (int i = 0; i < 2; i++) {
            seqs.add(java.nio.ByteBuffer.wrap(a.receive(5, TimeUnit.SECONDS)).getInt(14));
        }
        assertThat(seqs).containsExactlyInAnyOrder(4, 5);

        byte[] newMac = {0x52, 0x54, 0, 0x12, 0x34, 0x55};
        a.setMacAddress(newMac);
        b.send(frame(newMac, MAC_B, 6, 60));
        assertThat(java.nio.ByteBuffer.wrap(a.receive(5, TimeUnit.SECONDS)).getInt(14)).isEqualTo(6);
    }

    @Test
    @io.jvirtio.core.spec.Conformance("net-drv-3")
    void linkStatusChangeReachesTheDriver() throws Exception {
        boot(1);
        devA.setLinkUp(false);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (a.linkUp() && System.nanoTime() < deadline) {
            Thread.sleep(5);
        }
        assertThat(a.linkUp()).isFalse();
        devA.setLinkUp(true);
        deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (!a.linkUp() && System.nanoTime() < deadline) {
            Thread.sleep(5);
        }
        assertThat(a.linkUp()).isTrue();
    }

    @Test
    @io.jvirtio.core.spec.Conformance({"net-drv-9", "net-drv-14"})
    void multiQueueNicUsesAllPairs() throws Exception {
        boot(4);
        assertThat(a.queuePairs()).isEqualTo(4);
        // frames from several source addresses spread over the pairs and all arrive intact
        int n = 400;
        for (int i = 0; i < n; i++) {
            byte[] src = {0x52, 0x54, 0, 0x22, 0, (byte) i};
            b.send(frame(MAC_A, src, i, 100));
        }
        Set<Integer> seen = new HashSet<>();
        for (int i = 0; i < n; i++) {
            byte[] f = a.receive(10, TimeUnit.SECONDS);
            assertThat(f).isNotNull();
            assertThat(intact(f)).isTrue();
            seen.add(java.nio.ByteBuffer.wrap(f).getInt(14));
        }
        assertThat(seen).hasSize(n);
    }

    @Test
    void framesOfImpossibleSizeAreRefusedByTheDriver() throws Exception {
        boot(1);
        assertThatThrownBy(() -> a.send(new byte[10])).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> a.send(new byte[3000])).isInstanceOf(IllegalArgumentException.class);
        // the edges: an Ethernet header alone and a full 1500-byte MTU frame go; one byte less, one more do not
        assertThatThrownBy(() -> a.send(new byte[13])).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> a.send(new byte[1515])).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("14..1514");
        byte[] smallest = java.util.Arrays.copyOf(MAC_B, 14);
        a.send(smallest);
        assertThat(b.receive(5, TimeUnit.SECONDS)).isEqualTo(smallest);
        byte[] largest = frame(MAC_B, MAC_A, 3, 1514);
        a.send(largest);
        assertThat(b.receive(5, TimeUnit.SECONDS)).isEqualTo(largest);
    }

    /**
     * VIRTIO_NET_CTRL_MAC_ADDR_SET needs CTRL_MAC_ADDR and, being a VIRTIO_NET_CTRL_MAC command, CTRL_RX
     * (net-drv-12): without either it is refused here; with both the device and the driver take the address.
     */
    @org.junit.jupiter.params.ParameterizedTest
    @CsvSource({"'', ''", "NET_CTRL_MAC_ADDR, NET_CTRL_MAC_ADDR was not negotiated",
            "NET_CTRL_RX, NET_CTRL_RX was not negotiated"})
    @io.jvirtio.core.spec.Conformance("net-drv-12")
    void theStationAddressChangesOnlyWithBothFeatures(String masked, String refusal) throws Exception {
        machine = new Machine(64 << 20);
        sw = new VirtualSwitch();
        long mask = masked.isEmpty() ? 0 : io.jvirtio.core.spec.Feature.valueOf(masked).mask();
        NetDevice dev = new NetDevice(sw.port(), MAC_A, 1);
        machine.plug(new MaskedModel(dev, mask));
        VirtioBus bus = new VirtioBus();
        NetDriver net = new NetDriver();
        bus.registerDriver(net);
        new VirtioPciDriver(machine, bus).scan();
        VirtioNet nic = net.nics().getFirst();
        if (refusal.isEmpty()) {
            nic.setMacAddress(MAC_B);
            assertThat(nic.mac()).isEqualTo(MAC_B);
            byte[] cfg = new byte[6];
            nic.device().readConfig(0, cfg);
            assertThat(cfg).as("the device's mac field (net-dev-13)").isEqualTo(MAC_B);
        } else {
            assertThatThrownBy(() -> nic.setMacAddress(MAC_B)).hasMessageContaining(refusal);
            assertThat(nic.mac()).isEqualTo(MAC_A);
        }
    }

    @Test
    void jumboFrameSpansReceiveBuffersAndIsMergedByTheDriver() throws Exception {
        boot(1, 9000);
        // a third station on the switch sends a 5000-byte frame: three of the driver's 2 KiB buffers
        var outside = sw.port();
        byte[] jumbo = frame(MAC_A, new byte[] {0x52, 0x54, 0, 9, 9, 9}, 42, 5000);
        outside.transmit(java.lang.foreign.MemorySegment.ofArray(jumbo), jumbo.length);
        byte[] got = a.receive(5, TimeUnit.SECONDS);
        assertThat(got).isEqualTo(jumbo);
        assertThat(a.rxDropped.get()).isZero();
    }

    @Test
    @io.jvirtio.core.spec.Conformance({"net-drv-11", "net-drv-12"})
    void commandsOfFeaturesNotNegotiatedAreNeverSent() throws Exception {
        machine = new Machine(64 << 20);
        sw = new VirtualSwitch();
        // a NIC that offers the control queue but neither CTRL_RX nor CTRL_MAC_ADDR
        machine.plug(new MaskedModel(new NetDevice(sw.port(), MAC_A, 1), io.jvirtio.core.spec.Feature.maskOf(
                io.jvirtio.core.spec.Feature.NET_CTRL_RX, io.jvirtio.core.spec.Feature.NET_CTRL_MAC_ADDR)));
        VirtioBus bus = new VirtioBus();
        NetDriver net = new NetDriver();
        bus.registerDriver(net);
        new VirtioPciDriver(machine, bus).scan();
        VirtioNet nic = net.nics().getFirst();
        assertThat(nic.device().hasFeature(io.jvirtio.core.spec.Feature.NET_CTRL_VQ)).isTrue();
        assertThatThrownBy(() -> nic.setPromiscuous(false)).hasMessageContaining("NET_CTRL_RX was not negotiated");
        assertThatThrownBy(() -> nic.setAllMulticast(false)).hasMessageContaining("NET_CTRL_RX was not negotiated");
        assertThatThrownBy(() -> nic.setMacFilter(List.of(), List.of())).hasMessageContaining("NET_CTRL_RX was not negotiated");
        assertThatThrownBy(() -> nic.setMacAddress(MAC_B)).hasMessageContaining("was not negotiated");
        assertThat(nic.mac()).as("the station address did not change").isEqualTo(MAC_A);
    }

    @Test
    @io.jvirtio.core.spec.Conformance({"net-dev-3", "net-dev-4", "net-drv-4", "net-drv-5", "net-drv-6"})
    void theNegotiatedMtuBoundsWhatIsSentAndWhatIsDelivered() throws Exception {
        boot(1, 9000);
        // a jumbo link: the largest frame crosses whole, one byte more is refused by the driver
        byte[] biggest = frame(MAC_B, MAC_A, 1, 9014);
        a.send(biggest);
        assertThat(b.receive(5, TimeUnit.SECONDS)).isEqualTo(biggest);
        assertThatThrownBy(() -> a.send(frame(MAC_B, MAC_A, 2, 9015))).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("MTU 9000");
        machine.close();

        boot(1, 1500);
        assertThatThrownBy(() -> a.send(frame(MAC_B, MAC_A, 3, 1515))).isInstanceOf(IllegalArgumentException.class);
        // a larger frame from elsewhere on the switch is not passed to a driver that negotiated MTU 1500
        var outside = sw.port();
        byte[] tooBig = frame(MAC_A, new byte[] {0x52, 0x54, 0, 9, 9, 9}, 4, 1515);
        outside.transmit(java.lang.foreign.MemorySegment.ofArray(tooBig), tooBig.length);
        byte[] fits = frame(MAC_A, new byte[] {0x52, 0x54, 0, 9, 9, 9}, 5, 1514);
        outside.transmit(java.lang.foreign.MemorySegment.ofArray(fits), fits.length);
        assertThat(a.receive(5, TimeUnit.SECONDS)).as("the next frame delivered is the one that fits").isEqualTo(fits);
        assertThat(devA.rxDropped.get()).isEqualTo(1);
    }
}
