package io.jvirtio.machine;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.bus.VirtioDevice;
import io.jvirtio.core.device.ConfigSpace;
import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.device.VirtioDeviceModel;
import io.jvirtio.core.spec.DeviceStatus;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.MemoryBackend;
import io.jvirtio.drivers.blk.BlkDriver;
import io.jvirtio.drivers.blk.VirtioBlock;
import io.jvirtio.transport.pci.Pci;
import io.jvirtio.transport.pci.VirtioPciDriver;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import static org.assertj.core.api.Assertions.assertThat;

/** virtio-pci both sides through the machine: interrupt modes, negotiation failures, reset, rebind. */
class TransportTest {
    Machine machine;

    @AfterEach
    void tearDown() {
        if (machine != null) {
            machine.close();
        }
    }

    private static void traffic(VirtioBlock disk, int requests) throws Exception {
        List<CompletableFuture<Void>> fs = new ArrayList<>();
        MemorySegment src = Arena.ofAuto().allocate(4096L * requests);
        for (int i = 0; i < requests; i++) {
            src.asSlice(4096L * i, 4096).fill((byte) (i + 1));
            fs.add(disk.write(8L * i, src.asSlice(4096L * i, 4096)));
        }
        CompletableFuture.allOf(fs.toArray(CompletableFuture[]::new)).get(20, TimeUnit.SECONDS);
        MemorySegment dst = Arena.ofAuto().allocate(4096L * requests);
        fs.clear();
        for (int i = 0; i < requests; i++) {
            fs.add(disk.read(8L * i, dst.asSlice(4096L * i, 4096)));
        }
        CompletableFuture.allOf(fs.toArray(CompletableFuture[]::new)).get(20, TimeUnit.SECONDS);
        assertThat(dst.mismatch(src)).isEqualTo(-1);
    }

    @ParameterizedTest(name = "{0} MSI-X vectors")
    @CsvSource({"5, MSI-X, 5 vectors", "2, MSI-X, 2 vectors (config + shared", "1, INTx, INTx", "0, INTx, INTx"})
    @io.jvirtio.core.spec.Conformance("pci-drv-18")
    void interruptModesFallBackAndAllWork(int vectors, String kind, String mode) throws Exception {
        machine = new Machine(64 << 20);
        machine.plug(new BlkDevice(new MemoryBackend(4 << 20, false), 4), vectors);
        VirtioBus bus = new VirtioBus();
        BlkDriver blk = new BlkDriver();
        bus.registerDriver(blk);
        new VirtioPciDriver(machine, bus).scan();
        VirtioBlock disk = blk.disks().getFirst();
        assertThat(disk.device().config().interruptMode()).startsWith(kind).contains(mode);
        traffic(disk, 200);
    }

    /** A device that refuses every feature set at FEATURES_OK. */
    static final class Refusing implements VirtioDeviceModel {
        final AtomicBoolean activated = new AtomicBoolean();

        public DeviceType type() { return DeviceType.BLOCK; }
        public long deviceFeatures() { return io.jvirtio.core.spec.Feature.VERSION_1.mask(); }
        public int numQueues() { return 1; }
        public int maxQueueSize(int index) { return 8; }
        public ConfigSpace config() { return new ConfigSpace(60); }
        public boolean acceptFeatures(long features) { return false; }
        public void activate(DeviceContext context) { activated.set(true); }
        public void startQueue(int index, io.jvirtio.core.queue.DeviceQueue q, io.jvirtio.core.queue.Interrupt i) { }
        public io.jvirtio.core.queue.QueueState stopQueue(int index) { return null; }
        public void queueNotify(int index) { }
        public void reset() { }
    }

    @Test
    @io.jvirtio.core.spec.Conformance({"basic-drv-14", "basic-drv-17"})
    void deviceThatRefusesFeaturesOkEndsFailedAndUnbound() throws Exception {
        machine = new Machine(16 << 20);
        Refusing model = new Refusing();
        machine.plug(model);
        VirtioBus bus = new VirtioBus();
        BlkDriver blk = new BlkDriver();
        bus.registerDriver(blk);
        new VirtioPciDriver(machine, bus).scan();
        VirtioDevice dev = bus.devices().getFirst();
        assertThat(dev.driver()).isNull();
        assertThat(dev.status() & DeviceStatus.FAILED).isNotZero();
        assertThat(dev.status() & DeviceStatus.FEATURES_OK).isZero();
        assertThat(blk.disks()).isEmpty();
        assertThat(model.activated).isFalse();
        assertThat(bus.events()).anyMatch(e -> e.contains("device refused features"));
    }

    @Test
    void resetInTheMiddleOfTrafficFailsOrCompletesEveryRequestThenRebindWorks() throws Exception {
        machine = new Machine(64 << 20);
        machine.plug(new BlkDevice(new MemoryBackend(8 << 20, false)));
        VirtioBus bus = new VirtioBus();
        BlkDriver blk = new BlkDriver();
        bus.registerDriver(blk);
        new VirtioPciDriver(machine, bus).scan();
        VirtioDevice dev = bus.devices().getFirst();
        VirtioBlock disk = blk.disks().getFirst();
        long used = machine.dma().used();

        List<CompletableFuture<Void>> inFlight = new ArrayList<>();
        MemorySegment buf = Arena.ofAuto().allocate(65536);
        for (int i = 0; i < 2000; i++) {
            inFlight.add(disk.write((i % 100) * 128L, buf));
        }
        bus.unbind(dev); // driver remove: device reset mid-traffic
        for (CompletableFuture<Void> f : inFlight) {
            try {
                f.get(10, TimeUnit.SECONDS);
            } catch (java.util.concurrent.ExecutionException e) {
                assertThat(e.getCause()).hasMessageContaining("removed");
            }
        }
        assertThat(dev.status()).isEqualTo(DeviceStatus.ACKNOWLEDGE);
        assertThat(machine.dma().used()).as("queues and slots given back").isLessThan(used);

        assertThat(bus.bind(dev, blk)).isTrue();
        VirtioBlock again = blk.disks().getFirst();
        assertThat(again).isNotSameAs(disk);
        traffic(again, 50);
        assertThat(bus.events()).anyMatch(e -> e.contains("unbound from virtio_blk"));
    }

    @Test
    @io.jvirtio.core.spec.Conformance({"pci-dev-2", "pci-dev-3", "pci-dev-5", "pci-dev-26"})
    void configSpaceHeaderCapabilitiesAndBarSizing() throws Exception {
        machine = new Machine(16 << 20);
        int slot = machine.plug(new BlkDevice(new MemoryBackend(1 << 20, false), 2));
        assertThat(machine.configRead(slot, Pci.VENDOR_ID, 2)).isEqualTo(0x1af4);
        assertThat(machine.configRead(slot, Pci.DEVICE_ID, 2)).isEqualTo(0x1042);
        assertThat(machine.configRead(slot, Pci.REVISION_ID, 1)).isGreaterThanOrEqualTo(1);
        assertThat(machine.configRead(slot, Pci.CLASS_PROG + 1, 2)).isEqualTo(0x0100); // mass storage, SCSI
        assertThat(machine.configRead(slot, Pci.STATUS, 2) & Pci.STATUS_CAP_LIST).isNotZero();
        assertThat(machine.configRead(0, Pci.VENDOR_ID, 2)).as("empty slot").isEqualTo(0xffff);

        // BAR4 is a 64-bit memory BAR of 16 KiB: all ones read back as the size mask plus type bits
        machine.configWrite(slot, Pci.BAR0 + 16, 4, 0xffffffff);
        assertThat(machine.configRead(slot, Pci.BAR0 + 16, 4)).isEqualTo(0xffffc00c);
        machine.configWrite(slot, Pci.BAR0 + 20, 4, 0xffffffff);
        assertThat(machine.configRead(slot, Pci.BAR0 + 20, 4)).isEqualTo(0xffffffff);
        assertThat(machine.configRead(slot, Pci.BAR0, 4)).as("BAR0 unimplemented").isZero();
        // read-only registers ignore writes
        machine.configWrite(slot, Pci.VENDOR_ID, 2, 0x1234);
        assertThat(machine.configRead(slot, Pci.VENDOR_ID, 2)).isEqualTo(0x1af4);

        // walk the capability list: MSI-X then the five virtio structures of §4.1.4, each once
        List<Integer> types = new ArrayList<>();
        int at = machine.configRead(slot, Pci.CAPABILITY_LIST, 1);
        int msix = 0;
        int pciCfg = 0;
        for (int hops = 0; at != 0 && hops < 16; hops++) {
            int id = machine.configRead(slot, at, 1);
            if (id == Pci.CAP_ID_MSIX) {
                msix = at;
                assertThat((machine.configRead(slot, at + 2, 2) & 0x7ff) + 1).isEqualTo(3);
            } else {
                assertThat(id).isEqualTo(Pci.CAP_ID_VNDR);
                int type = machine.configRead(slot, at + 3, 1);
                types.add(type);
                if (type == 2) {
                    assertThat(machine.configRead(slot, at + 2, 1)).as("notify cap_len").isEqualTo(20);
                    assertThat(machine.configRead(slot, at + 16, 4)).as("notify_off_multiplier").isEqualTo(4);
                }
                if (type == 5) {
                    pciCfg = at;
                }
            }
            at = machine.configRead(slot, at + 1, 1);
        }
        assertThat(msix).isNotZero();
        assertThat(types).containsExactly(1, 3, 4, 2, 5);

        // §4.1.4.9: the PCI configuration access window reaches the common config without a BAR mapping
        machine.configWrite(slot, pciCfg + 4, 1, 4);         // bar
        machine.configWrite(slot, pciCfg + 8, 4, 18);        // offset of num_queues
        machine.configWrite(slot, pciCfg + 12, 4, 2);        // length
        assertThat(machine.configRead(slot, pciCfg + 16, 4) & 0xffff).isEqualTo(2);
    }

    /** A device of {@code type} with one queue, for what the PCI header shows of it. */
    record Bare(DeviceType type) implements VirtioDeviceModel {
        public long deviceFeatures() { return io.jvirtio.core.spec.Feature.VERSION_1.mask(); }
        public int numQueues() { return 1; }
        public int maxQueueSize(int index) { return 8; }
        public ConfigSpace config() { return new ConfigSpace(8); }
        public boolean acceptFeatures(long features) { return true; }
        public void activate(DeviceContext context) { }
        public void startQueue(int index, io.jvirtio.core.queue.DeviceQueue q, io.jvirtio.core.queue.Interrupt i) { }
        public io.jvirtio.core.queue.QueueState stopQueue(int index) { return null; }
        public void queueNotify(int index) { }
        public void reset() { }
    }

    /**
     * §4.1.2.1: a non-transitional function's subsystem id is 0x40 or more (Linux's virtio_pci_modern refuses
     * one below for a modern device id it does not know); the subsystem vendor, the class code a guest's
     * lspci shows (QEMU's: network, SCSI storage, communication "other", "unclassified" for the rest), INTA#.
     */
    @ParameterizedTest
    @CsvSource({"NET, 0x020000", "BLOCK, 0x010000", "CONSOLE, 0x078000", "ENTROPY, 0xff0000", "GPU, 0xff0000"})
    @io.jvirtio.core.spec.Conformance("pci-dev-3")
    void eachTypeShowsItsClassCodeASubsystemOfAtLeast0x40AndInterruptPinA(DeviceType type, String classCode)
            throws Exception {
        machine = new Machine(16 << 20);
        int slot = machine.plug(new Bare(type));
        assertThat(machine.configRead(slot, Pci.DEVICE_ID, 2)).isEqualTo(0x1040 + type.id());
        assertThat(machine.configRead(slot, Pci.SUBSYSTEM_ID, 2)).isGreaterThanOrEqualTo(0x40);
        assertThat(machine.configRead(slot, Pci.SUBSYSTEM_VENDOR_ID, 2)).isEqualTo(0x1af4);
        assertThat(machine.configRead(slot, Pci.CLASS_PROG, 1)
                | machine.configRead(slot, Pci.CLASS_PROG + 1, 2) << 8).isEqualTo(Integer.decode(classCode));
        assertThat(machine.configRead(slot, Pci.INTERRUPT_PIN, 1)).isEqualTo(1);
        machine.configWrite(slot, Pci.SUBSYSTEM_ID, 2, 0x1);
        machine.configWrite(slot, Pci.CLASS_PROG + 1, 2, 0);
        assertThat(machine.configRead(slot, Pci.SUBSYSTEM_ID, 2)).as("read-only").isGreaterThanOrEqualTo(0x40);
        assertThat(machine.configRead(slot, Pci.CLASS_PROG + 1, 2) << 8).isEqualTo(Integer.decode(classCode) & 0xffff00);
    }

    @Test
    @io.jvirtio.core.spec.Conformance({"pci-dev-31", "pci-drv-24"})
    void transitionalDeviceWorksThroughTheLegacyIoBarAndThroughModernCapabilities() throws Exception {
        for (boolean legacy : new boolean[] {true, false}) {
            try (Machine m = new Machine(64 << 20)) {
                int slot = m.plug(new BlkDevice(new MemoryBackend(4 << 20, false)), 2, true);
                assertThat(m.configRead(slot, Pci.DEVICE_ID, 2)).as("transitional blk id").isEqualTo(0x1001);
                assertThat(m.configRead(slot, Pci.SUBSYSTEM_ID, 2)).isEqualTo(2);
                assertThat(m.configRead(slot, Pci.REVISION_ID, 1)).isZero();
                VirtioBus bus = new VirtioBus();
                BlkDriver blk = new BlkDriver();
                bus.registerDriver(blk);
                new VirtioPciDriver(m, bus, legacy).scan();
                VirtioBlock disk = blk.disks().getFirst();
                VirtioDevice dev = disk.device();
                assertThat(dev.config().interruptMode()).endsWith(legacy ? "(legacy)" : "(modern)");
                assertThat(io.jvirtio.core.spec.Feature.VERSION_1.isSet(dev.features())).isEqualTo(!legacy);
                assertThat(dev.status() & DeviceStatus.DRIVER_OK).isNotZero();
                assertThat(disk.capacitySectors()).isEqualTo((4 << 20) / 512);
                traffic(disk, 100);
            }
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance({"pci-dev-20", "pci-dev-22"})
    void legacyDriverWithIntxOnly() throws Exception {
        machine = new Machine(64 << 20);
        machine.plug(new BlkDevice(new MemoryBackend(4 << 20, false)), 0, true);
        VirtioBus bus = new VirtioBus();
        BlkDriver blk = new BlkDriver();
        bus.registerDriver(blk);
        new VirtioPciDriver(machine, bus, true).scan();
        VirtioBlock disk = blk.disks().getFirst();
        assertThat(disk.device().config().interruptMode()).isEqualTo("INTx with ISR (legacy)");
        traffic(disk, 100);
    }

    @Test
    @io.jvirtio.core.spec.Conformance("basic-drv-17")
    void driverWhoseProbeFailsLeavesTheDeviceFailedAndNoQueuesBehind() throws Exception {
        machine = new Machine(32 << 20);
        machine.plug(new BlkDevice(new MemoryBackend(1 << 20, false)));
        VirtioBus bus = new VirtioBus();
        long before = machine.dma().used();
        bus.registerDriver(new io.jvirtio.bus.VirtioDriver() {
            public String name() { return "broken_blk"; }
            public java.util.Set<io.jvirtio.core.spec.DeviceType> idTable() {
                return java.util.Set.of(io.jvirtio.core.spec.DeviceType.BLOCK);
            }
            public long features() { return 0; }
            public void probe(VirtioDevice device) throws Exception {
                device.findQueues(List.of(new io.jvirtio.bus.QueueSpec("req", 0, q -> { })));
                throw new IllegalStateException("probe gives up");
            }
            public void remove(VirtioDevice device) { }
        });
        new VirtioPciDriver(machine, bus).scan();
        VirtioDevice dev = bus.devices().getFirst();
        assertThat(dev.driver()).isNull();
        assertThat(dev.status() & DeviceStatus.FAILED).isNotZero();
        assertThat(dev.status() & DeviceStatus.DRIVER_OK).isZero();
        assertThat(machine.dma().used()).as("the queue the probe made was deleted").isEqualTo(before);
        assertThat(bus.events()).anyMatch(e -> e.contains("probe by broken_blk failed: probe gives up"));
    }

    /**
     * A hostile driver programs impossible queues by hand — a size that is no power of two, a ring outside
     * guest memory — and sets DRIVER_OK: the device refuses to run them and reports DEVICE_NEEDS_RESET.
     */
    @ParameterizedTest(name = "{0}")
    @CsvSource({"size 100, 100, 0x100000000", "ring outside RAM, 64, 0x7000000000"})
    @io.jvirtio.core.spec.Conformance("basic-dev-2")
    void hostileQueueProgrammingEndsInNeedsReset(String what, int size, String descHex) throws Exception {
        machine = new Machine(16 << 20);
        int slot = machine.plug(new BlkDevice(new MemoryBackend(1 << 20, false)));
        // firmware's part, then the driver's registers by hand (BAR4 placed by the enumerator's rules)
        long bar = machine.allocateBarSpace(0x4000, false);
        machine.configWrite(slot, Pci.BAR0 + 16, 4, (int) bar);
        machine.configWrite(slot, Pci.BAR0 + 20, 4, (int) (bar >>> 32));
        machine.configWrite(slot, Pci.COMMAND, 2, Pci.COMMAND_MEMORY | Pci.COMMAND_MASTER);
        long common = bar;
        long desc = Long.decode(descHex);
        machine.mmioWrite(common + 20, 1, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER);
        machine.mmioWrite(common + 8, 4, 1);                  // driver_feature_select = 1
        machine.mmioWrite(common + 12, 4, 1);                 // VERSION_1 (bit 32)
        machine.mmioWrite(common + 20, 1, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK);
        machine.mmioWrite(common + 22, 2, 0);                 // queue_select
        machine.mmioWrite(common + 24, 2, size);              // queue_size
        machine.mmioWrite(common + 32, 4, desc & 0xffffffffL);
        machine.mmioWrite(common + 36, 4, desc >>> 32);
        machine.mmioWrite(common + 40, 4, (desc + 0x1000) & 0xffffffffL);
        machine.mmioWrite(common + 44, 4, (desc + 0x1000) >>> 32);
        machine.mmioWrite(common + 48, 4, (desc + 0x2000) & 0xffffffffL);
        machine.mmioWrite(common + 52, 4, (desc + 0x2000) >>> 32);
        machine.mmioWrite(common + 28, 2, 1);                 // queue_enable
        machine.mmioWrite(common + 20, 1, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK
                | DeviceStatus.DRIVER_OK);
        int status = (int) machine.mmioRead(common + 20, 1);
        assertThat(status & DeviceStatus.DEVICE_NEEDS_RESET).as("%s: status %s", what, DeviceStatus.describe(status))
                .isNotZero();
        // and a reset brings it back
        machine.mmioWrite(common + 20, 1, 0);
        assertThat(machine.mmioRead(common + 20, 1)).isZero();
    }
}
