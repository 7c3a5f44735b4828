package io.jvirtio.machine;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.core.spec.Conformance;
import io.jvirtio.devices.console.ConsoleDevice;
import io.jvirtio.devices.console.EchoBackend;
import io.jvirtio.devices.net.NetDevice;
import io.jvirtio.devices.net.VirtualSwitch;
import io.jvirtio.drivers.console.ConsoleDriver;
import io.jvirtio.drivers.net.NetDriver;
import io.jvirtio.transport.mmio.MmioHost;
import io.jvirtio.transport.mmio.VirtioMmio;
import io.jvirtio.transport.mmio.VirtioMmioDriver;
import io.jvirtio.transport.pci.VirtioPciDevice;
import io.jvirtio.transport.pci.VirtioPciDriver;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * §4.1.3.1 / §4.2.2.2: each configuration field is read with an access of its own width — the 6-byte MAC
 * byte by byte (not as 4 + 2), the console's cols and rows as two 16-bit fields (not one 32-bit access).
 */
class ConfigAccessWidthTest {
    static final byte[] MAC = {0x52, 0x54, 0, 0x12, 0x34, 0x56};

    @Test
    @Conformance({"pci-drv-3", "net-drv-1", "basic-drv-15"})
    void pciDriverReadsEachFieldWithItsWidthAndWritesNone() throws Exception {
        for (String type : List.of("net", "console")) {
            try (Machine m = new Machine(64 << 20)) {
                var model = type.equals("net") ? new NetDevice(new VirtualSwitch().port(), MAC, 1)
                        : new ConsoleDevice(new EchoBackend(), 132, 43);
                var w = new NotifyBeforeDriverOkTest.Watched(new VirtioPciDevice(model, m.memory(), "00:05.0", 4, false));
                m.plug(5, w);
                VirtioBus bus = new VirtioBus();
                NetDriver net = new NetDriver();
                ConsoleDriver con = new ConsoleDriver();
                bus.registerDriver(net);
                bus.registerDriver(con);
                new VirtioPciDriver(m, bus).scan();
                if (type.equals("net")) {
                    assertThat(net.nics().getFirst().mac()).isEqualTo(MAC);
                    assertThat(w.deviceCfgReads).containsSubsequence("0/1", "1/1", "2/1", "3/1", "4/1", "5/1")
                            .doesNotContain("0/4", "4/2").contains("6/2");
                    net.nics().getFirst().send(new byte[60]);
                } else {
                    assertThat(con.consoles().getFirst().columns()).isEqualTo(132);
                    assertThat(con.consoles().getFirst().rows()).isEqualTo(43);
                    assertThat(w.deviceCfgReads).contains("0/2", "2/2").doesNotContain("0/4");
                }
                assertThat(w.deviceCfgWrites).as("the driver never writes the device's configuration").isEmpty();
            }
        }
    }

    /** An MMIO host that records the driver's reads of the configuration window, as "offset/width". */
    record Recording(Machine m, List<String> reads, long base) implements MmioHost {
        public long mmioRead(long address, int size) {
            if (address >= base + VirtioMmio.CONFIG && address < base + VirtioMmio.WINDOW) {
                reads.add((address - base - VirtioMmio.CONFIG) + "/" + size);
            }
            return m.mmioRead(address, size);
        }
        public void mmioWrite(long address, int size, long value) { m.mmioWrite(address, size, value); }
        public void attachIrq(int irq, Runnable handler) { m.attachIrq(irq, handler); }
        public void detachIrq(int irq) { m.detachIrq(irq); }
        public io.jvirtio.core.memory.GuestAllocator dma() { return m.dma(); }
    }

    @Test
    @Conformance("mmio-drv-2")
    void mmioDriverReadsEachFieldWithItsWidth() throws Exception {
        try (Machine m = new Machine(64 << 20)) {
            Machine.MmioSlot net = m.plugMmio(new NetDevice(new VirtualSwitch().port(), MAC, 1));
            Machine.MmioSlot console = m.plugMmio(new ConsoleDevice(new EchoBackend(), 132, 43));
            VirtioBus bus = new VirtioBus();
            NetDriver nd = new NetDriver();
            ConsoleDriver cd = new ConsoleDriver();
            bus.registerDriver(nd);
            bus.registerDriver(cd);
            Recording rn = new Recording(m, new CopyOnWriteArrayList<>(), net.base());
            new VirtioMmioDriver(rn, bus).probe(net.base(), net.irq());
            Recording rc = new Recording(m, new CopyOnWriteArrayList<>(), console.base());
            new VirtioMmioDriver(rc, bus).probe(console.base(), console.irq());
            assertThat(nd.nics().getFirst().mac()).isEqualTo(MAC);
            assertThat(rn.reads()).containsSubsequence("0/1", "1/1", "2/1", "3/1", "4/1", "5/1").doesNotContain("0/4", "4/2");
            assertThat(cd.consoles().getFirst().columns()).isEqualTo(132);
            assertThat(rc.reads()).contains("0/2", "2/2").doesNotContain("0/4");
        }
    }
}
