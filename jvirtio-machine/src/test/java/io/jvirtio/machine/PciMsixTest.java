package io.jvirtio.machine;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.spec.Conformance;
import io.jvirtio.core.spec.DeviceStatus;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.MemoryBackend;
import io.jvirtio.transport.pci.Pci;
import io.jvirtio.transport.pci.PciInterrupts;
import io.jvirtio.transport.pci.VirtioPciDevice;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

import static io.jvirtio.transport.pci.VirtioPciCap.*;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * The MSI-X table and pending-bit array of the device side (PCI 3.0 §6.8.2, which virtio-pci §4.1.5.1.2 relies
 * on): what a driver writes into an entry reads back, DWORD or QWORD; a message raised while its vector or the
 * whole function is masked waits as a pending bit and goes once the mask clears; and the table and the PBA never
 * overlap, however many vectors the function has. The configuration change interrupt drives the vector here.
 */
class PciMsixTest {
    static final long BASE = 0x1_0000_0000L;

    GuestMemory mem;
    BlkDevice model;
    VirtioPciDevice dev;
    int cap;
    int bar;
    long pba;
    final List<String> interrupts = new CopyOnWriteArrayList<>();

    void plug(int vectors) {
        mem = GuestMemory.allocate(BASE, 1 << 20);
        model = new BlkDevice(new MemoryBackend(1 << 20, false), 1);
        dev = new VirtioPciDevice(model, mem, "00:06.0", vectors, false);
        dev.connect(new PciInterrupts() {
            public void msi(long address, int data) { interrupts.add(Long.toHexString(address) + " " + data); }
            public void intx(boolean asserted) { interrupts.add("intx " + asserted); }
        });
        if (vectors > 0) {
            cap = PciRulesTest.Cap.msix(dev);
            bar = dev.configRead(cap + Pci.MSIX_TABLE, 4) & 7;
            pba = dev.configRead(cap + Pci.MSIX_PBA, 4) & ~7L;
        }
    }

    @AfterEach
    void unplug() {
        dev.reset();
        mem.close();
    }

    private void common(int off, int size, long v) {
        PciRulesTest.Cap c = PciRulesTest.Cap.find(dev, COMMON_CFG);
        dev.barWrite(c.bar(), c.offset() + off, size, v);
    }

    /** DRIVER_OK with MSI-X on and the configuration vector set to {@code configVector}. */
    private void driverOk(int configVector) {
        dev.configWrite(cap + Pci.MSIX_CONTROL, 2, Pci.MSIX_CONTROL_ENABLE);
        common(DEVICE_STATUS, 1, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER);
        common(DRIVER_FEATURE_SELECT, 4, 1);
        common(DRIVER_FEATURE, 4, 1);
        common(DEVICE_STATUS, 1, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK);
        common(CONFIG_MSIX_VECTOR, 2, configVector);
        common(DEVICE_STATUS, 1, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK
                | DeviceStatus.DRIVER_OK);
    }

    private void entry(int v, long address, int data, int control) {
        long at = (long) v * Pci.MSIX_ENTRY_SIZE;
        dev.barWrite(bar, at, 4, address & 0xffffffffL);
        dev.barWrite(bar, at + 4, 4, address >>> 32);
        dev.barWrite(bar, at + 8, 4, data);
        dev.barWrite(bar, at + 12, 4, control);
    }

    private long pendingBits(int qword) {
        return dev.barRead(bar, pba + 8L * qword, 8);
    }

    private int changes;

    private void configChange() {
        model.config().update(0, 2048 + ++changes, 8); // the capacity field: a configuration change
    }

    @Test
    void anEntryReadsBackAsWrittenInDwordsAndQwordsAndKeepsOnlyTheMaskBitOfItsControl() {
        plug(4);
        for (int v = 0; v < 4; v++) {
            long at = (long) v * Pci.MSIX_ENTRY_SIZE;
            assertThat(dev.barRead(bar, at + 12, 4)).as("vector %d starts masked", v).isEqualTo(1);
        }
        entry(2, 0x1_fee0_1000L, 0x4321, 0xffff_fffe);
        long at = 2L * Pci.MSIX_ENTRY_SIZE;
        assertThat(dev.barRead(bar, at, 4)).isEqualTo(0xfee0_1000L);
        assertThat(dev.barRead(bar, at + 4, 4)).isEqualTo(1);
        assertThat(dev.barRead(bar, at, 8)).isEqualTo(0x1_fee0_1000L);
        assertThat(dev.barRead(bar, at + 8, 4)).isEqualTo(0x4321);
        assertThat(dev.barRead(bar, at + 12, 4)).as("only bit 0 of vector control is writable").isZero();
        dev.barWrite(bar, at + 4, 4, 0);
        assertThat(dev.barRead(bar, at, 8)).as("the high half alone").isEqualTo(0xfee0_1000L);
        dev.barWrite(bar, at, 4, 0xfee0_2000L);
        assertThat(dev.barRead(bar, at, 8)).as("the low half alone").isEqualTo(0xfee0_2000L);
        // a QWORD at offset 8: message data below, vector control above
        dev.barWrite(bar, at + 8, 8, 0xffff_ffffL << 32 | 0x77);
        assertThat(dev.barRead(bar, at + 8, 4)).isEqualTo(0x77);
        assertThat(dev.barRead(bar, at + 12, 4)).as("masked by the QWORD's upper half").isEqualTo(1);
        assertThat(dev.barRead(bar, at + 8, 8)).isEqualTo(1L << 32 | 0x77);
        dev.barWrite(bar, at, 8, 0x2_fee0_3000L);
        assertThat(dev.barRead(bar, at + 4, 4)).isEqualTo(2);
        assertThat(dev.barRead(bar, at, 4)).isEqualTo(0xfee0_3000L);
        // nothing beyond the table, and the PBA is read-only
        dev.barWrite(bar, 4L * Pci.MSIX_ENTRY_SIZE + 8, 4, 0x99);
        assertThat(dev.barRead(bar, 4L * Pci.MSIX_ENTRY_SIZE + 8, 4)).isZero();
        dev.barWrite(bar, pba, 8, -1L);
        assertThat(pendingBits(0)).isZero();
    }

    @Test
    @Conformance("pci-dev-19")
    void aMessageRaisedWhileItsVectorIsMaskedIsPendingAndGoesOnceWhenUnmasked() {
        plug(4);
        driverOk(3);
        entry(3, 0xfee0_0000L, 0x43, 1);
        interrupts.clear();
        configChange();
        assertThat(interrupts).as("masked: held").isEmpty();
        assertThat(pendingBits(0)).as("its pending bit").isEqualTo(1L << 3);
        PciRulesTest.Cap isr = PciRulesTest.Cap.find(dev, ISR_CFG);
        assertThat(dev.barRead(isr.bar(), isr.offset(), 1)).as("the ISR's config bit, with MSI-X too").isEqualTo(ISR_CONFIG);
        assertThat(interrupts).as("INTx stays down with MSI-X on").doesNotContain("intx true");
        interrupts.clear();
        configChange();
        assertThat(pendingBits(0)).as("still one message").isEqualTo(1L << 3);
        dev.barWrite(bar, 3L * Pci.MSIX_ENTRY_SIZE + 12, 4, 0);
        assertThat(interrupts).as("sent when unmasked, once").containsExactly("fee00000 67");
        assertThat(pendingBits(0)).isZero();
        configChange();
        assertThat(interrupts).as("unmasked: at once").containsExactly("fee00000 67", "fee00000 67");
    }

    @Test
    void aMessageRaisedWhileTheFunctionIsMaskedGoesWhenTheFunctionMaskClears() {
        plug(4);
        driverOk(1);
        entry(1, 0xfee0_0000L, 0x51, 0);
        dev.configWrite(cap + Pci.MSIX_CONTROL, 2, Pci.MSIX_CONTROL_ENABLE | Pci.MSIX_CONTROL_MASKALL);
        interrupts.clear();
        configChange();
        assertThat(interrupts).as("function masked: held").isEmpty();
        assertThat(pendingBits(0)).isEqualTo(1L << 1);
        dev.configWrite(cap + Pci.MSIX_CONTROL, 2, Pci.MSIX_CONTROL_ENABLE);
        assertThat(interrupts).containsExactly("fee00000 81");
        assertThat(pendingBits(0)).isZero();
    }

    @ParameterizedTest(name = "{0} vectors, BAR of {1} bytes")
    @CsvSource({"2, 4096", "128, 4096", "129, 8192", "2048, 65536"})
    void theTableAndThePendingBitsNeverOverlapAndTheLastVectorsPendingBitIsItsOwn(int vectors, long barSize) {
        plug(vectors);
        int last = vectors - 1;
        // QEMU's msix_init_exclusive_bar: at least 4 KiB, twice the table, the PBA in the second half
        assertThat(dev.barSize(bar)).isEqualTo(barSize);
        assertThat(pba).isEqualTo(barSize / 2);
        assertThat(pba).as("the PBA starts after the table").isGreaterThanOrEqualTo((long) vectors * Pci.MSIX_ENTRY_SIZE);
        assertThat(pba + (vectors + 63) / 64 * 8L).as("and ends inside the BAR").isLessThanOrEqualTo(dev.barSize(bar));
        assertThat(Long.bitCount(dev.barSize(bar))).as("a BAR's size is a power of two").isEqualTo(1);
        driverOk(last);
        entry(last, 0xfee0_0000L, 0x61, 1);
        assertThat(dev.barRead(bar, (long) last * Pci.MSIX_ENTRY_SIZE + 8, 4)).as("the last entry's data").isEqualTo(0x61);
        interrupts.clear();
        configChange();
        assertThat(interrupts).isEmpty();
        assertThat(pendingBits(last / 64)).as("vector %d pending", last).isEqualTo(1L << (last % 64));
        assertThat(dev.barRead(bar, pba + last / 8, 1)).as("the byte holding it").isEqualTo(1L << (last % 8));
        for (int q = 0; q < last / 64; q++) {
            assertThat(pendingBits(q)).as("PBA qword %d", q).isZero();
        }
        dev.barWrite(bar, (long) last * Pci.MSIX_ENTRY_SIZE + 12, 4, 0);
        assertThat(interrupts).containsExactly("fee00000 97");
    }

    @Test
    @Conformance("pci-dev-25")
    void aConfigurationWindowPointingOutsideItsBarReadsZeroAndWritesNothing() {
        plug(4);
        int window = PciRulesTest.Cap.find(dev, PCI_CFG).at();
        int data = window + PCI_CFG_DATA;
        entry(0, 0xfee0_0000L, 0x11, 1);
        for (long offset : new long[] {-16L & 0xffffffffL, 0x8000_0000L, dev.barSize(bar), dev.barSize(bar) + 4}) {
            dev.configWrite(window + BAR, 1, bar);
            dev.configWrite(window + OFFSET, 4, (int) offset);
            dev.configWrite(window + LENGTH, 4, 4);
            assertThat(dev.configRead(data, 4)).as("a read at 0x%x", offset).isZero();
            dev.configWrite(data, 4, 0x5555);
        }
        assertThat(dev.barRead(bar, 8, 4)).as("the table is untouched").isEqualTo(0x11);
        // inside the BAR the window reaches the table, and a narrow read takes its own bytes
        dev.configWrite(window + OFFSET, 4, 8);
        assertThat(dev.configRead(data, 4)).isEqualTo(0x11);
        dev.configWrite(data, 4, 0x44332211);
        assertThat(dev.barRead(bar, 8, 4)).isEqualTo(0x44332211);
        assertThat(dev.configRead(data, 1)).isEqualTo(0x11);
        assertThat(dev.configRead(data + 1, 1)).isEqualTo(0x22);
        assertThat(dev.configRead(data + 1, 2)).isEqualTo(0x3322);
        assertThat(dev.configRead(data + 3, 1)).isEqualTo(0x44);
        // nothing beyond configuration space: all ones read, writes dropped
        assertThat(dev.configRead(Pci.CONFIG_SPACE_SIZE - 2, 4)).isEqualTo(-1);
        assertThat(dev.configRead(-1, 1)).isEqualTo(-1);
        int last = dev.configRead(Pci.CONFIG_SPACE_SIZE - 4, 4);
        dev.configWrite(Pci.CONFIG_SPACE_SIZE - 2, 4, 0x1234_5678);
        assertThat(dev.configRead(Pci.CONFIG_SPACE_SIZE - 4, 4)).isEqualTo(last);
        // and no access to a BAR outside it, whichever BAR
        PciRulesTest.Cap common = PciRulesTest.Cap.find(dev, COMMON_CFG);
        dev.barWrite(common.bar(), -4, 4, 0xffff_ffffL);
        assertThat(dev.barRead(common.bar(), -4, 4)).isZero();
        assertThat(dev.barRead(common.bar(), common.offset() + DEVICE_FEATURE_SELECT, 4)).isZero();
        assertThat(dev.barRead(bar, -8, 4)).isZero();
    }

    @Test
    @Conformance("basic-dev-8")
    void theModelIsStoppedBeforeDeviceStatusReadsZero() {
        mem = GuestMemory.allocate(BASE, 1 << 20);
        model = new BlkDevice(new MemoryBackend(1 << 20, false), 1);
        List<Long> statusAtModelReset = new CopyOnWriteArrayList<>();
        VirtioPciDevice[] self = new VirtioPciDevice[1];
        dev = self[0] = new VirtioPciDevice(new MaskedModel(model, 0) {
            @Override
            public void reset() {
                PciRulesTest.Cap c = PciRulesTest.Cap.find(self[0], COMMON_CFG);
                statusAtModelReset.add(self[0].barRead(c.bar(), c.offset() + DEVICE_STATUS, 1));
                super.reset();
            }
        }, mem, "00:07.0", 0, false);
        dev.connect(new PciInterrupts() {
            public void msi(long address, int data) { }
            public void intx(boolean asserted) { }
        });
        int ok = DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK | DeviceStatus.DRIVER_OK;
        common(DEVICE_STATUS, 1, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER);
        common(DRIVER_FEATURE_SELECT, 4, 1);
        common(DRIVER_FEATURE, 4, 1);
        common(DEVICE_STATUS, 1, ok);
        common(DEVICE_STATUS, 1, 0);
        assertThat(statusAtModelReset).as("the model stopped while the driver still read the old status")
                .containsExactly((long) ok);
    }

    @Test
    @Conformance("basic-dev-8")
    void aResetWithAnInterruptPendingClearsTheIsrAndLowersTheLine() {
        plug(0); // INTx and the ISR
        common(DEVICE_STATUS, 1, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER);
        common(DRIVER_FEATURE_SELECT, 4, 1);
        common(DRIVER_FEATURE, 4, 1);
        common(DEVICE_STATUS, 1, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK
                | DeviceStatus.DRIVER_OK);
        interrupts.clear();
        configChange();
        assertThat(interrupts).containsExactly("intx true");
        common(DEVICE_STATUS, 1, 0);
        assertThat(interrupts).as("the line goes down with the reset").endsWith("intx false");
        PciRulesTest.Cap isr = PciRulesTest.Cap.find(dev, ISR_CFG);
        assertThat(dev.barRead(isr.bar(), isr.offset(), 1)).as("nothing pending after the reset").isZero();
    }
}
