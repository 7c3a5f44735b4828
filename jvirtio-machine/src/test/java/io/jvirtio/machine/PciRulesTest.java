package io.jvirtio.machine;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.core.spec.Conformance;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.MemoryBackend;
import io.jvirtio.drivers.blk.BlkDriver;
import io.jvirtio.transport.pci.Pci;
import io.jvirtio.transport.pci.PciFunction;
import io.jvirtio.transport.pci.PciInterrupts;
import io.jvirtio.transport.pci.VirtioPciCap;
import io.jvirtio.transport.pci.VirtioPciDevice;
import io.jvirtio.transport.pci.VirtioPciDriver;
import org.junit.jupiter.api.Test;

import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/** virtio-pci rules of the device and the driver that need a hand on the registers. */
class PciRulesTest {

    /** The first virtio capability of {@code cfgType}: its config-space offset, bar, offset and length. */
    record Cap(int at, int bar, long offset, long length) {
        static Cap find(PciFunction f, int cfgType) {
            for (int at = f.configRead(Pci.CAPABILITY_LIST, 1); at != 0; at = f.configRead(at + 1, 1)) {
                if (f.configRead(at, 1) == Pci.CAP_ID_VNDR && f.configRead(at + VirtioPciCap.CFG_TYPE, 1) == cfgType) {
                    return new Cap(at, f.configRead(at + VirtioPciCap.BAR, 1),
                            f.configRead(at + VirtioPciCap.OFFSET, 4) & 0xffffffffL,
                            f.configRead(at + VirtioPciCap.LENGTH, 4) & 0xffffffffL);
                }
            }
            throw new AssertionError("no capability of type " + cfgType);
        }

        /** The config-space offset of the MSI-X capability. */
        static int msix(PciFunction f) {
            for (int at = f.configRead(Pci.CAPABILITY_LIST, 1); at != 0; at = f.configRead(at + 1, 1)) {
                if (f.configRead(at, 1) == Pci.CAP_ID_MSIX) {
                    return at;
                }
            }
            throw new AssertionError("no MSI-X capability");
        }
    }

    @Test
    @Conformance("pci-dev-21")
    void statusInterruptFollowsTheIsrEvenWithIntxDisabled() throws Exception {
        try (Machine m = new Machine(64 << 20)) {
            BlkDevice blk = new BlkDevice(new MemoryBackend(1 << 20, false));
            int slot = m.plug(blk, 0); // no MSI-X: INTx and the ISR
            VirtioBus bus = new VirtioBus();
            bus.registerDriver(new BlkDriver());
            new VirtioPciDriver(m, bus).scan();
            awaitStatusInterruptClear(m, slot); // whatever the probe raised, the driver's handler has taken
            int cmd = m.configRead(slot, Pci.COMMAND, 2);
            m.configWrite(slot, Pci.COMMAND, 2, cmd | Pci.COMMAND_INTX_DISABLE);
            blk.config().update(0, 2048, 8); // a configuration change: ISR bit 1
            assertThat(m.configRead(slot, Pci.STATUS, 2) & Pci.STATUS_INTERRUPT)
                    .as("Status.Interrupt with the ISR config bit set and INTx disabled").isNotZero();
            m.configWrite(slot, Pci.COMMAND, 2, cmd); // the line asserts; the driver's handler reads the ISR
            awaitStatusInterruptClear(m, slot);
            assertThat(m.configRead(slot, Pci.STATUS, 2) & Pci.STATUS_INTERRUPT).as("cleared with the ISR").isZero();
        }
    }

    private static void awaitStatusInterruptClear(Machine m, int slot) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while ((m.configRead(slot, Pci.STATUS, 2) & Pci.STATUS_INTERRUPT) != 0 && System.nanoTime() < deadline) {
            Thread.sleep(1);
        }
    }

    @Test
    @Conformance("pci-dev-25")
    void pciCfgDataGivesEachByteOfTheAccess() throws Exception {
        try (Machine m = new Machine(16 << 20)) {
            int slot = m.plug(new BlkDevice(new MemoryBackend(1 << 20, false)));
            PciFunction f = m.function(slot);
            Cap common = Cap.find(f, VirtioPciCap.COMMON_CFG);
            Cap window = Cap.find(f, VirtioPciCap.PCI_CFG);
            int data = window.at() + VirtioPciCap.PCI_CFG_DATA;
            m.configWrite(slot, window.at() + VirtioPciCap.BAR, 1, common.bar());
            m.configWrite(slot, window.at() + VirtioPciCap.OFFSET, 4, (int) common.offset() + VirtioPciCap.DEVICE_FEATURE);
            m.configWrite(slot, window.at() + VirtioPciCap.LENGTH, 4, 4);
            int whole = m.configRead(slot, data, 4);
            assertThat(whole).as("device_feature, select 0").isEqualTo((int) new BlkDevice(new MemoryBackend(512, false))
                    .deviceFeatures());
            int bytes = 0;
            for (int i = 0; i < 4; i++) {
                bytes |= m.configRead(slot, data + i, 1) << (8 * i);
            }
            assertThat(bytes).isEqualTo(whole);
            assertThat(m.configRead(slot, data + 2, 2)).isEqualTo(whole >>> 16);
        }
    }

    @Test
    @Conformance("basic-drv-8")
    void aModernFunctionWithoutVersion1IsNotDriven() throws Exception {
        try (Machine m = new Machine(64 << 20)) {
            m.plug(new MaskedModel(new BlkDevice(new MemoryBackend(1 << 20, false)), Feature.VERSION_1.mask()));
            VirtioBus bus = new VirtioBus();
            BlkDriver blk = new BlkDriver();
            bus.registerDriver(blk);
            new VirtioPciDriver(m, bus).scan();
            assertThat(blk.disks()).isEmpty();
            assertThat(bus.events()).anyMatch(e -> e.contains("VERSION_1"));
        }
    }

    /** A function whose device_status never reads back 0: its reset never completes. */
    record StuckInReset(VirtioPciDevice inner, Cap common) implements PciFunction {
        public long barRead(int bar, long offset, int size) {
            if (bar == common.bar() && offset == common.offset() + VirtioPciCap.DEVICE_STATUS) {
                return 0x01;
            }
            return inner.barRead(bar, offset, size);
        }
        public int configRead(int offset, int size) { return inner.configRead(offset, size); }
        public void configWrite(int offset, int size, int value) { inner.configWrite(offset, size, value); }
        public void barWrite(int bar, long offset, int size, long value) { inner.barWrite(bar, offset, size, value); }
        public long barAddress(int bar) { return inner.barAddress(bar); }
        public long barSize(int bar) { return inner.barSize(bar); }
        public boolean barIsIo(int bar) { return inner.barIsIo(bar); }
        public void connect(PciInterrupts interrupts) { inner.connect(interrupts); }
    }

    @Test
    @Conformance({"basic-drv-10", "pci-drv-15"})
    void aDeviceThatNeverCompletesItsResetIsNotDriven() throws Exception {
        try (Machine m = new Machine(64 << 20)) {
            VirtioPciDevice dev = new VirtioPciDevice(new BlkDevice(new MemoryBackend(1 << 20, false)), m.memory(),
                    "00:05.0", 2, false);
            m.plug(5, new StuckInReset(dev, Cap.find(dev, VirtioPciCap.COMMON_CFG)));
            VirtioBus bus = new VirtioBus();
            BlkDriver blk = new BlkDriver();
            bus.registerDriver(blk);
            new VirtioPciDriver(m, bus).scan();
            assertThat(blk.disks()).isEmpty();
            assertThat(bus.events()).anyMatch(e -> e.contains("did not complete its reset"));
        }
    }
}
