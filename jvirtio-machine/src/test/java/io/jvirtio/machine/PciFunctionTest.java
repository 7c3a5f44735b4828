package io.jvirtio.machine;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.spec.Conformance;
import io.jvirtio.core.spec.DeviceStatus;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.MemoryBackend;
import io.jvirtio.devices.net.NetDevice;
import io.jvirtio.devices.net.VirtualSwitch;
import io.jvirtio.drivers.blk.BlkDriver;
import io.jvirtio.transport.pci.Pci;
import io.jvirtio.transport.pci.PciFunction;
import io.jvirtio.transport.pci.VirtioPciDevice;
import io.jvirtio.transport.pci.VirtioPciDriver;
import org.junit.jupiter.api.Test;

import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;

import static io.jvirtio.transport.pci.VirtioPciCap.*;
import static org.assertj.core.api.Assertions.assertThat;

/** The virtio-pci function as a PCI function (§4.1.1): its header, capability list and BARs. */
class PciFunctionTest {
    static final long BASE = 0x1_0000_0000L;

    @Test
    @Conformance("pci-dev-1")
    void eachFunctionIsAWellFormedType0PciFunction() {
        try (GuestMemory mem = GuestMemory.allocate(BASE, 1 << 20)) {
            List<PciFunction> functions = List.of(
                    new VirtioPciDevice(new BlkDevice(new MemoryBackend(1 << 20, false)), mem, "00:03.0", 2, false),
                    new VirtioPciDevice(new BlkDevice(new MemoryBackend(1 << 20, false)), mem, "00:04.0", 0, true),
                    new VirtioPciDevice(new NetDevice(new VirtualSwitch().port(), new byte[6], 2), mem, "00:05.0", 6, true));
            for (PciFunction f : functions) {
                assertThat(f.configRead(Pci.VENDOR_ID, 2)).isEqualTo(Pci.VIRTIO_VENDOR);
                assertThat(f.configRead(Pci.HEADER_TYPE, 1) & 0x7f).as("header type 0 (a function, not a bridge)").isZero();
                assertThat(f.configRead(Pci.CLASS_PROG + 2, 1)).as("base class").isNotZero();
                assertThat(f.configRead(Pci.INTERRUPT_PIN, 1)).as("INTA# for INTx").isEqualTo(1);
                // the capability list: present, inside the device-specific part, dword aligned, acyclic
                assertThat(f.configRead(Pci.STATUS, 2) & Pci.STATUS_CAP_LIST).isNotZero();
                Set<Integer> seen = new HashSet<>();
                for (int at = f.configRead(Pci.CAPABILITY_LIST, 1); at != 0; at = f.configRead(at + 1, 1)) {
                    assertThat(at).as("capability at 0x%x", at).isBetween(0x40, 0xfc);
                    assertThat(at & 3).as("capability at 0x%x aligned", at).isZero();
                    assertThat(seen.add(at)).as("capability at 0x%x seen once", at).isTrue();
                    if (f.configRead(at, 1) == Pci.CAP_ID_VNDR) {
                        assertThat(at + f.configRead(at + CAP_LEN, 1)).as("capability at 0x%x ends in config space", at)
                                .isLessThanOrEqualTo(Pci.CONFIG_SPACE_SIZE);
                    }
                }
                // BAR sizing: all ones written, the size read back; type bits kept; unused BARs read zero
                for (int bar = 0; bar < Pci.BAR_COUNT; bar++) {
                    int reg = Pci.BAR0 + 4 * bar;
                    int before = f.configRead(reg, 4);
                    f.configWrite(reg, 4, -1);
                    int sized = f.configRead(reg, 4);
                    f.configWrite(reg, 4, before);
                    assertThat(f.configRead(reg, 4)).as("BAR%d restored", bar).isEqualTo(before);
                    long size = f.barSize(bar);
                    boolean upperHalf = bar > 0 && (f.configRead(Pci.BAR0 + 4 * (bar - 1), 4) & (Pci.BAR_IO | 6)) == Pci.BAR_MEM_TYPE_64;
                    if (upperHalf) {
                        continue; // the upper half of a 64-bit BAR
                    }
                    if (size == 0) {
                        assertThat(sized).as("unimplemented BAR%d", bar).isZero();
                        continue;
                    }
                    assertThat(Long.bitCount(size)).as("BAR%d size %d is a power of two", bar, size).isEqualTo(1);
                    int typeBits = f.barIsIo(bar) ? 0x3 : 0xf;
                    assertThat(sized & typeBits).as("BAR%d type bits", bar).isEqualTo(before & typeBits);
                    assertThat((~(sized & ~typeBits) + 1) & 0xffffffffL).as("BAR%d sized", bar).isEqualTo(size);
                }
                // the command register takes the enable bits
                f.configWrite(Pci.COMMAND, 2, Pci.COMMAND_MEMORY | Pci.COMMAND_IO | Pci.COMMAND_MASTER);
                assertThat(f.configRead(Pci.COMMAND, 2) & 7).isEqualTo(7);
            }
        }
    }

    @Test
    @Conformance("pci-dev-32")
    void throughTheLegacyInterfaceFeatureBits32To63AreNeverAcknowledged() throws Exception {
        List<Long> activated = new CopyOnWriteArrayList<>();
        // driven by a legacy driver through the I/O BAR of a transitional function
        try (Machine m = new Machine(64 << 20)) {
            BlkDevice blk = new BlkDevice(new MemoryBackend(1 << 20, false));
            assertThat(Feature.VERSION_1.isSet(blk.deviceFeatures())).isTrue();
            m.plug(new MaskedModel(blk, 0) {
                @Override
                public void activate(DeviceContext c) {
                    activated.add(c.features());
                    super.activate(c);
                }
            }, 2, true);
            VirtioBus bus = new VirtioBus();
            BlkDriver driver = new BlkDriver();
            bus.registerDriver(driver);
            new VirtioPciDriver(m, bus, true).scan();
            assertThat(driver.disks()).hasSize(1);
            assertThat(activated).hasSize(1);
            assertThat(activated.getFirst() >>> 32).as("bits 32-63 of the features the device works with").isZero();
        }
        // a driver that wrote the high half through the modern registers, then drives the legacy ones
        try (GuestMemory mem = GuestMemory.allocate(BASE, 1 << 20)) {
            BlkDevice blk = new BlkDevice(new MemoryBackend(1 << 20, false));
            VirtioPciDevice f = new VirtioPciDevice(new MaskedModel(blk, 0) {
                @Override
                public void activate(DeviceContext c) {
                    activated.add(c.features());
                    super.activate(c);
                }
            }, mem, "00:03.0", 0, true);
            PciRulesTest.Cap common = PciRulesTest.Cap.find(f, COMMON_CFG);
            f.barWrite(common.bar(), common.offset() + DRIVER_FEATURE_SELECT, 4, 1);
            f.barWrite(common.bar(), common.offset() + DRIVER_FEATURE, 4, 1); // VERSION_1
            assertThat(f.barRead(0, 0, 4) & 0xffffffffL).as("legacy host features").isEqualTo(blk.deviceFeatures() & 0xffffffffL);
            f.barWrite(0, 4, 4, Feature.BLK_FLUSH.mask()); // guest features
            for (int q = 0; q < blk.numQueues(); q++) {
                f.barWrite(0, 14, 2, q);
                f.barWrite(0, 8, 4, (BASE >>> 12) + 16L * (q + 1)); // queue PFN
            }
            f.barWrite(0, 18, 1, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.DRIVER_OK);
            assertThat(activated).hasSize(2);
            assertThat(activated.getLast()).as("features the device works with").isEqualTo(Feature.BLK_FLUSH.mask());
            f.barWrite(0, 18, 1, 0);
        }
    }

    /** Legacy I/O BAR registers (§4.1.4.10): the layout of a legacy virtio header. */
    static final int HOST_FEATURES = 0, GUEST_FEATURES = 4, QUEUE_PFN = 8, QUEUE_NUM = 12, QUEUE_SEL = 14, STATUS = 18,
            CONFIG_VECTOR = 20, QUEUE_VECTOR = 22;

    @Test
    @Conformance({"pci-dev-31", "basic-dev-2"})
    void throughTheLegacyInterfaceAFeatureNeverOfferedIsRefusedAtDriverOkAndALiveDeviceKeepsItsRings() {
        List<Long> activated = new CopyOnWriteArrayList<>();
        List<String> reasons = new CopyOnWriteArrayList<>();
        try (GuestMemory mem = GuestMemory.allocate(BASE, 1 << 20)) {
            BlkDevice blk = new BlkDevice(new MemoryBackend(1 << 20, false));
            VirtioPciDevice f = new VirtioPciDevice(new MaskedModel(blk, Feature.BLK_FLUSH.mask()) {
                @Override
                public void activate(DeviceContext c) {
                    activated.add(c.features());
                    super.activate(c);
                }
            }, mem, "00:03.0", 2, true);
            f.connect(new io.jvirtio.transport.pci.PciInterrupts() {
                public void msi(long address, int data) { reasons.add("msi"); }
                public void intx(boolean asserted) { }
            });
            long offered = f.barRead(0, HOST_FEATURES, 4);
            assertThat(offered & Feature.BLK_FLUSH.mask()).as("FLUSH is not offered").isZero();
            // with MSI-X on, the two vector registers sit at 20 and 22, the configuration after them
            f.configWrite(PciRulesTest.Cap.msix(f) + Pci.MSIX_CONTROL, 2, Pci.MSIX_CONTROL_ENABLE);
            f.barWrite(0, CONFIG_VECTOR, 2, 1);
            assertThat(f.barRead(0, CONFIG_VECTOR, 2)).isEqualTo(1);
            // unknown queues: nothing to read, nothing taken
            f.barWrite(0, QUEUE_SEL, 2, 7);
            assertThat(f.barRead(0, QUEUE_NUM, 2)).isZero();
            assertThat(f.barRead(0, QUEUE_VECTOR, 2)).isEqualTo(NO_VECTOR);
            f.barWrite(0, QUEUE_PFN, 4, (BASE >>> 12) + 16);
            assertThat(f.barRead(0, QUEUE_PFN, 4)).isZero();
            f.barWrite(0, GUEST_FEATURES, 4, Feature.BLK_FLUSH.mask());
            f.barWrite(0, QUEUE_SEL, 2, 0);
            assertThat(f.barRead(0, QUEUE_PFN, 4)).as("a queue not yet placed").isZero();
            f.barWrite(0, QUEUE_PFN, 4, (BASE >>> 12) + 16);
            assertThat(f.barRead(0, QUEUE_PFN, 4)).isEqualTo((BASE >>> 12) + 16);
            f.barWrite(0, STATUS, 1, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.DRIVER_OK);
            assertThat(activated).as("a feature never offered").isEmpty();
            assertThat(f.barRead(0, STATUS, 1) & DeviceStatus.DEVICE_NEEDS_RESET).isNotZero();

            f.barWrite(0, STATUS, 1, 0);
            f.barWrite(0, GUEST_FEATURES, 4, 0);
            f.barWrite(0, QUEUE_SEL, 2, 0);
            f.barWrite(0, QUEUE_PFN, 4, (BASE >>> 12) + 16);
            f.barWrite(0, STATUS, 1, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.DRIVER_OK);
            assertThat(activated).containsExactly(0L);
            assertThat(f.barRead(0, STATUS, 1)).isEqualTo(DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.DRIVER_OK);
            // a live device: the features it works with and its rings' place stay
            f.barWrite(0, GUEST_FEATURES, 4, 0xffff_ffffL);
            assertThat(f.barRead(0, GUEST_FEATURES, 4)).isZero();
            f.barWrite(0, QUEUE_PFN, 4, (BASE >>> 12) + 32);
            assertThat(f.barRead(0, QUEUE_PFN, 4)).isEqualTo((BASE >>> 12) + 16);
            // adding a bit keeps DRIVER_OK and does not start the device again
            f.barWrite(0, STATUS, 1, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.DRIVER_OK
                    | DeviceStatus.FEATURES_OK);
            assertThat(activated).hasSize(1);
            f.barWrite(0, STATUS, 1, 0);
        }
    }
}
