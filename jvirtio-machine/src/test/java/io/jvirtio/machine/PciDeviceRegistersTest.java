package io.jvirtio.machine;

import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.split.SplitLayout;
import io.jvirtio.core.spec.Conformance;
import io.jvirtio.core.spec.DeviceStatus;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.MemoryBackend;
import io.jvirtio.transport.pci.Pci;
import io.jvirtio.transport.pci.PciInterrupts;
import io.jvirtio.transport.pci.VirtioPciDevice;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

import static io.jvirtio.transport.pci.VirtioPciCap.*;
import static org.assertj.core.api.Assertions.assertThat;

/** The device side of virtio-pci register by register, as a driver (or a hostile one) programs it. */
class PciDeviceRegistersTest {
    static final long BASE = 0x1_0000_0000L;
    static final int VECTORS = 3;

    GuestMemory mem;
    BlkDevice model;
    VirtioPciDevice dev;
    PciRulesTest.Cap common;
    PciRulesTest.Cap isr;
    PciRulesTest.Cap notify;
    PciRulesTest.Cap device;
    final List<String> interrupts = new CopyOnWriteArrayList<>();

    final java.util.concurrent.atomic.AtomicInteger notifications = new java.util.concurrent.atomic.AtomicInteger();
    final java.util.concurrent.atomic.AtomicInteger activations = new java.util.concurrent.atomic.AtomicInteger();

    @BeforeEach
    void plug() {
        mem = GuestMemory.allocate(BASE, 1 << 20);
        model = new BlkDevice(new MemoryBackend(1 << 20, false), 2);
        // the model as the transport sees it, counting the notifications the transport forwards
        var counted = new MaskedModel(model, 0) {
            @Override
            public void queueNotify(int i) {
                notifications.incrementAndGet();
                model.queueNotify(i);
            }

            @Override
            public void activate(io.jvirtio.core.device.DeviceContext c) {
                activations.incrementAndGet();
                super.activate(c);
            }
        };
        dev = new VirtioPciDevice(counted, mem, "00:05.0", VECTORS, false);
        dev.connect(new PciInterrupts() {
            public void msi(long address, int data) { interrupts.add("msi " + data); }
            public void intx(boolean asserted) { interrupts.add("intx " + asserted); }
        });
        common = PciRulesTest.Cap.find(dev, COMMON_CFG);
        isr = PciRulesTest.Cap.find(dev, ISR_CFG);
        notify = PciRulesTest.Cap.find(dev, NOTIFY_CFG);
        device = PciRulesTest.Cap.find(dev, DEVICE_CFG);
    }

    @AfterEach
    void unplug() {
        dev.reset();
        mem.close();
    }

    long r(int off, int size) {
        return dev.barRead(common.bar(), common.offset() + off, size);
    }

    void w(int off, int size, long v) {
        dev.barWrite(common.bar(), common.offset() + off, size, v);
    }

    /** Negotiates VERSION_1, programs both queues with real rings, sets DRIVER_OK. */
    void bringUp() throws Exception {
        w(DEVICE_STATUS, 1, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER);
        w(DRIVER_FEATURE_SELECT, 4, 1);
        w(DRIVER_FEATURE, 4, 1);
        w(DEVICE_STATUS, 1, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK);
        GuestAllocator alloc = new GuestAllocator(mem, BASE, 1 << 20);
        for (int q = 0; q < 2; q++) {
            DriverQueue<Object> dq = DriverQueue.allocate(alloc, q, SplitLayout.modern(64), Feature.VERSION_1.mask(), 0, () -> { });
            w(QUEUE_SELECT, 2, q);
            w(QUEUE_SIZE, 2, 64);
            w(QUEUE_DESC, 4, dq.addresses().descTable());
            w(QUEUE_DESC + 4, 4, dq.addresses().descTable() >>> 32);
            w(QUEUE_DRIVER, 8, dq.addresses().availRing());
            w(QUEUE_DEVICE, 8, dq.addresses().usedRing());
            w(QUEUE_MSIX_VECTOR, 2, q + 1);
            w(QUEUE_ENABLE, 2, 1);
        }
        w(CONFIG_MSIX_VECTOR, 2, 0);
        w(DEVICE_STATUS, 1, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK | DeviceStatus.DRIVER_OK);
        assertThat(r(DEVICE_STATUS, 1) & DeviceStatus.DRIVER_OK).isNotZero();
    }

    @Test
    @Conformance({"pci-dev-14", "pci-dev-15"})
    void aQueueThatDoesNotExistHasSizeZeroAndOthersAPowerOfTwo() {
        assertThat(r(NUM_QUEUES, 2)).isEqualTo(2);
        for (int q = 0; q < 2; q++) {
            w(QUEUE_SELECT, 2, q);
            assertThat(Long.bitCount(r(QUEUE_SIZE, 2))).as("queue %d size is a power of 2", q).isEqualTo(1);
        }
        for (int q : new int[] {2, 3, 0x7fff, 0xffff}) {
            w(QUEUE_SELECT, 2, q);
            assertThat(r(QUEUE_SIZE, 2)).as("queue_size of missing queue %d", q).isZero();
        }
    }

    @Test
    @Conformance({"pci-dev-8", "pci-dev-9"})
    void featureWindowsShowEachHalfAndNothingBeyondBit63() {
        // the model's features and the transport's VIRTIO_F_NOTIFICATION_DATA
        long offered = model.deviceFeatures() | io.jvirtio.core.spec.Feature.NOTIFICATION_DATA.mask();
        w(DEVICE_FEATURE_SELECT, 4, 0);
        assertThat(r(DEVICE_FEATURE, 4)).isEqualTo(offered & 0xffffffffL);
        w(DEVICE_FEATURE_SELECT, 4, 1);
        assertThat(r(DEVICE_FEATURE, 4)).isEqualTo(offered >>> 32);
        for (int sel : new int[] {2, 3, 255}) {
            w(DEVICE_FEATURE_SELECT, 4, sel);
            assertThat(r(DEVICE_FEATURE, 4)).as("select %d", sel).isZero();
        }
        w(DEVICE_STATUS, 1, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER);
        w(DRIVER_FEATURE_SELECT, 4, 1);
        w(DRIVER_FEATURE, 4, 1);
        w(DRIVER_FEATURE_SELECT, 4, 0);
        w(DRIVER_FEATURE, 4, Feature.BLK_FLUSH.mask());
        assertThat(r(DRIVER_FEATURE, 4)).isEqualTo(Feature.BLK_FLUSH.mask());
        w(DRIVER_FEATURE_SELECT, 4, 1);
        assertThat(r(DRIVER_FEATURE, 4)).isEqualTo(1);
    }

    @Test
    @Conformance("pci-dev-4")
    void sixtyFourBitFieldsTakeTheirHalvesIndependently() {
        w(QUEUE_SELECT, 2, 0);
        w(QUEUE_DESC + 4, 4, 0x1);
        w(QUEUE_DESC, 4, 0x2000);
        assertThat(r(QUEUE_DESC, 4)).isEqualTo(0x2000);
        assertThat(r(QUEUE_DESC + 4, 4)).isEqualTo(0x1);
        w(QUEUE_DESC, 4, 0x3000);
        assertThat(r(QUEUE_DESC + 4, 4)).as("writing the low half leaves the high half").isEqualTo(0x1);
        assertThat(r(QUEUE_DESC, 8)).isEqualTo(0x1_0000_3000L);
    }

    @Test
    @Conformance({"pci-dev-11", "pci-dev-12", "pci-dev-29", "basic-dev-7"})
    void resetZeroesTheStatusDisablesQueuesAndUnmapsEveryVector() throws Exception {
        bringUp();
        w(QUEUE_SELECT, 2, 1);
        assertThat(r(QUEUE_ENABLE, 2)).isEqualTo(1);
        assertThat(r(QUEUE_MSIX_VECTOR, 2)).isEqualTo(2);
        w(DEVICE_STATUS, 1, 0);
        assertThat(r(DEVICE_STATUS, 1)).as("reads 0 once reset").isZero();
        assertThat(r(CONFIG_MSIX_VECTOR, 2)).isEqualTo(NO_VECTOR);
        for (int q = 0; q < 2; q++) {
            w(QUEUE_SELECT, 2, q);
            assertThat(r(QUEUE_ENABLE, 2)).as("queue %d enable", q).isZero();
            assertThat(r(QUEUE_MSIX_VECTOR, 2)).as("queue %d vector", q).isEqualTo(NO_VECTOR);
        }
    }

    @Test
    @Conformance({"pci-dev-27", "pci-dev-28"})
    void vectorsMapReadBackAndAnImpossibleOneReadsNoVector() {
        w(CONFIG_MSIX_VECTOR, 2, 2);
        assertThat(r(CONFIG_MSIX_VECTOR, 2)).isEqualTo(2);
        w(CONFIG_MSIX_VECTOR, 2, VECTORS);
        assertThat(r(CONFIG_MSIX_VECTOR, 2)).as("outside the table of %d", VECTORS).isEqualTo(NO_VECTOR);
        w(QUEUE_SELECT, 2, 1);
        w(QUEUE_MSIX_VECTOR, 2, 0);
        assertThat(r(QUEUE_MSIX_VECTOR, 2)).isEqualTo(0);
        w(QUEUE_MSIX_VECTOR, 2, 0x7ff);
        assertThat(r(QUEUE_MSIX_VECTOR, 2)).isEqualTo(NO_VECTOR);
        w(QUEUE_MSIX_VECTOR, 2, 1);
        w(QUEUE_MSIX_VECTOR, 2, NO_VECTOR);
        assertThat(r(QUEUE_MSIX_VECTOR, 2)).as("unmapped").isEqualTo(NO_VECTOR);
    }

    private void enableMsix() {
        int control = PciRulesTest.Cap.msix(dev);
        dev.configWrite(control + Pci.MSIX_CONTROL, 2, Pci.MSIX_CONTROL_ENABLE);
        for (int v = 0; v < VECTORS; v++) {
            long entry = (long) v * Pci.MSIX_ENTRY_SIZE;
            int bar = dev.configRead(control + Pci.MSIX_TABLE, 4) & 7;
            dev.barWrite(bar, entry, 4, 0xfee0_0000L);
            dev.barWrite(bar, entry + 8, 4, 0x40 + v);
            dev.barWrite(bar, entry + 12, 4, 0); // unmasked
        }
    }

    @Test
    @Conformance("pci-dev-30")
    void noVectorMeansNoInterrupt() throws Exception {
        bringUp();
        enableMsix();
        interrupts.clear();
        model.config().update(0, 2048, 8);
        assertThat(interrupts).as("config change on vector 0").containsExactly("msi 64");
        w(CONFIG_MSIX_VECTOR, 2, NO_VECTOR);
        interrupts.clear();
        model.config().update(0, 2048, 8);
        assertThat(interrupts).as("config change with NO_VECTOR").isEmpty();
    }

    @Test
    @Conformance({"pci-dev-19", "pci-dev-22"})
    void withoutMsixTheIsrConfigBitIsSetBeforeTheLineAndClearedByReading() throws Exception {
        bringUp();
        List<Long> isrAtInterrupt = new CopyOnWriteArrayList<>();
        dev.connect(new PciInterrupts() {
            public void msi(long address, int data) { }
            public void intx(boolean asserted) {
                if (asserted) {
                    isrAtInterrupt.add(dev.barRead(isr.bar(), isr.offset(), 1));
                }
            }
        });
        model.config().update(0, 2048, 8);
        assertThat(isrAtInterrupt).as("the ISR seen by the interrupt handler").containsExactly((long) ISR_CONFIG);
        assertThat(dev.barRead(isr.bar(), isr.offset(), 1)).as("read clears it").isZero();
    }

    @Test
    @Conformance({"pci-dev-7", "pci-dev-17", "pci-dev-18", "pci-dev-23"})
    void capabilitiesAreAlignedAndTheNotifyRegionCoversEveryQueue() {
        assertThat(common.offset() % 4).isZero();
        assertThat(device.offset() % 4).isZero();
        // a device offering NOTIFICATION_DATA: 4-aligned, a multiplier that is a power of 2 and a multiple of
        // 4, room for a 32-bit write at every queue's doorbell (the rules without it are weaker: 2, even, 2)
        assertThat(notify.offset() % 4).isZero();
        assertThat(isr.length()).isPositive();
        long multiplier = dev.configRead(notify.at() + NOTIFY_OFF_MULTIPLIER, 4) & 0xffffffffL;
        assertThat(multiplier == 0 || Long.bitCount(multiplier) == 1 && multiplier % 4 == 0).isTrue();
        for (int q = 0; q < 2; q++) {
            w(QUEUE_SELECT, 2, q);
            long off = r(QUEUE_NOTIFY_OFF, 2);
            assertThat(notify.length()).as("queue %d's doorbell lies inside", q).isGreaterThanOrEqualTo(off * multiplier + 4);
        }
    }

    @Test
    @Conformance("basic-dev-1")
    void noNotificationReachesTheDeviceBeforeDriverOk() throws Exception {
        w(DEVICE_STATUS, 1, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER);
        w(QUEUE_SELECT, 2, 0);
        long doorbell = notify.offset() + r(QUEUE_NOTIFY_OFF, 2) * (dev.configRead(notify.at() + NOTIFY_OFF_MULTIPLIER, 4) & 0xffffffffL);
        dev.barWrite(notify.bar(), doorbell, 2, 0);
        assertThat(notifications.get()).as("before FEATURES_OK").isZero();
        bringUp();
        dev.barWrite(notify.bar(), doorbell, 2, 0);
        assertThat(notifications.get()).as("after DRIVER_OK").isEqualTo(1);
    }

    @Test
    @Conformance("pci-dev-4")
    void everyQueueFieldReadsBackWholeInHalvesAndByteByByte() {
        w(QUEUE_SELECT, 2, 1);
        w(QUEUE_SIZE, 2, 32);
        long[] values = {0x1122_3344_5566_7780L, 0x0102_0304_0506_0700L, 0x7f6e_5d4c_3b2a_1900L};
        int[] fields = {QUEUE_DESC, QUEUE_DRIVER, QUEUE_DEVICE};
        for (int i = 0; i < 3; i++) {
            w(fields[i], 8, values[i]);
        }
        for (int i = 0; i < 3; i++) {
            assertThat(r(fields[i], 8)).isEqualTo(values[i]);
            assertThat(r(fields[i], 4)).isEqualTo(values[i] & 0xffffffffL);
            assertThat(r(fields[i] + 4, 4)).isEqualTo(values[i] >>> 32);
            for (int b = 0; b < 8; b++) {
                assertThat(r(fields[i] + b, 1)).as("byte %d of the field at %d", b, fields[i]).isEqualTo((values[i] >>> (8 * b)) & 0xff);
            }
        }
        assertThat(r(QUEUE_SIZE, 2)).isEqualTo(32);
        assertThat(r(QUEUE_NOTIFY_OFF, 2)).isEqualTo(1);
        assertThat(r(QUEUE_NOTIFY_DATA, 2)).as("queue_notify_data: the queue's index").isEqualTo(1);
        assertThat(r(QUEUE_RESET, 2)).isZero();
        w(QUEUE_SELECT, 2, 0);
        assertThat(r(QUEUE_DESC, 8)).as("queue 0's own").isZero();
        w(DRIVER_FEATURE_SELECT, 4, 1);
        w(DRIVER_FEATURE, 4, 0xa5);
        assertThat(r(DRIVER_FEATURE_SELECT, 4)).isEqualTo(1);
        assertThat(r(DRIVER_FEATURE, 1)).as("the window's first byte, next to the select").isEqualTo(0xa5);
        w(DEVICE_FEATURE_SELECT, 4, 1);
        assertThat(r(DEVICE_FEATURE_SELECT, 4)).isEqualTo(1);
    }

    @Test
    @Conformance("pci-dev-9")
    void aDriverFeatureWriteReplacesItsHalfAndTheWindowBeyondBit63TakesNothing() {
        w(DEVICE_STATUS, 1, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER);
        w(DRIVER_FEATURE_SELECT, 4, 0);
        w(DRIVER_FEATURE, 4, Feature.BLK_FLUSH.mask());
        w(DRIVER_FEATURE_SELECT, 4, 1);
        w(DRIVER_FEATURE, 4, 0xffff_ffffL);
        w(DRIVER_FEATURE, 4, 1);
        assertThat(r(DRIVER_FEATURE, 4)).as("the high half, written twice").isEqualTo(1);
        w(DRIVER_FEATURE_SELECT, 4, 2);
        w(DRIVER_FEATURE, 4, 0xffff_ffffL);
        assertThat(r(DRIVER_FEATURE, 4)).as("select 2").isZero();
        w(DRIVER_FEATURE_SELECT, 4, 0);
        assertThat(r(DRIVER_FEATURE, 4)).as("the low half after a write through select 2").isEqualTo(Feature.BLK_FLUSH.mask());
        w(DRIVER_FEATURE_SELECT, 4, 1);
        assertThat(r(DRIVER_FEATURE, 4)).isEqualTo(1);
    }

    @Test
    @Conformance({"pci-dev-11", "basic-dev-7"})
    void aResetForgetsTheDriversFeaturesAndBothSelects() {
        w(DEVICE_STATUS, 1, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER);
        w(DRIVER_FEATURE_SELECT, 4, 1);
        w(DRIVER_FEATURE, 4, 1);
        w(DEVICE_FEATURE_SELECT, 4, 1);
        w(DEVICE_STATUS, 1, 0);
        assertThat(r(DRIVER_FEATURE_SELECT, 4)).isZero();
        assertThat(r(DEVICE_FEATURE_SELECT, 4)).isZero();
        for (int sel = 0; sel < 2; sel++) {
            w(DRIVER_FEATURE_SELECT, 4, sel);
            assertThat(r(DRIVER_FEATURE, 4)).as("driver features %d after reset", sel).isZero();
        }
    }

    @Test
    @Conformance("basic-dev-1")
    void onlyTheStatusWriteThatAddsDriverOkActivatesTheDevice() {
        w(DEVICE_STATUS, 1, DeviceStatus.ACKNOWLEDGE);
        w(DEVICE_STATUS, 1, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER);
        w(DRIVER_FEATURE_SELECT, 4, 1);
        w(DRIVER_FEATURE, 4, 1);
        int ok = DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK;
        w(DEVICE_STATUS, 1, ok);
        assertThat(activations.get()).as("before DRIVER_OK").isZero();
        w(DEVICE_STATUS, 1, ok | DeviceStatus.DRIVER_OK);
        assertThat(activations.get()).isEqualTo(1);
        w(DEVICE_STATUS, 1, ok | DeviceStatus.DRIVER_OK);
        assertThat(activations.get()).as("DRIVER_OK written again").isEqualTo(1);
    }

    @Test
    @Conformance("basic-dev-4")
    void aModernDriverThatDidNotAcceptVersion1CannotSetFeaturesOk() {
        w(DEVICE_STATUS, 1, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER);
        w(DRIVER_FEATURE_SELECT, 4, 0);
        w(DRIVER_FEATURE, 4, Feature.BLK_FLUSH.mask());
        w(DEVICE_STATUS, 1, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK);
        assertThat(r(DEVICE_STATUS, 1) & DeviceStatus.FEATURES_OK).isZero();
        w(DEVICE_STATUS, 1, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK
                | DeviceStatus.DRIVER_OK);
        assertThat(activations.get()).isZero();
    }
}
