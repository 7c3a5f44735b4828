package io.jvirtio.machine;

import io.jvirtio.bus.ConfigOps;
import io.jvirtio.bus.QueueSpec;
import io.jvirtio.bus.TransportException;
import io.jvirtio.bus.VirtioBus;
import io.jvirtio.bus.VirtioDevice;
import io.jvirtio.bus.VirtioDriver;
import io.jvirtio.core.device.ConfigSpace;
import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.device.VirtioDeviceModel;
import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.queue.QueueState;
import io.jvirtio.core.spec.Conformance;
import io.jvirtio.core.spec.DeviceStatus;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.BlockBackends;
import io.jvirtio.devices.blk.MemoryBackend;
import io.jvirtio.devices.blk.SyncBlockBackend;
import io.jvirtio.devices.console.ConsoleDevice;
import io.jvirtio.devices.console.EchoBackend;
import io.jvirtio.devices.net.NetDevice;
import io.jvirtio.devices.net.VirtualSwitch;
import io.jvirtio.drivers.blk.BlkDriver;
import io.jvirtio.drivers.blk.VirtioBlock;
import io.jvirtio.drivers.console.ConsoleDriver;
import io.jvirtio.drivers.net.NetDriver;
import io.jvirtio.transport.pci.VirtioPciCap;
import io.jvirtio.transport.pci.VirtioPciDevice;
import io.jvirtio.transport.pci.VirtioPciDriver;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Driver rules of §2 that only show over a device's whole life: what configuration it reads (§2.5), when it
 * may still change features (§3.1.1), how it takes buffers back (§2.7), and what it makes of interrupts
 * and headers it did not ask for (§2.7.14, §5.1.6.4).
 */
class DriverRulesTest {

    /** The driver side of a real transport, every call logged in order: what a device sees of a driver. */
    static final class RecordingOps implements ConfigOps {
        final ConfigOps inner;
        final List<String> log = new CopyOnWriteArrayList<>();
        final List<int[]> reads = new CopyOnWriteArrayList<>();
        final List<DriverQueue<Object>> queues = new CopyOnWriteArrayList<>();
        volatile Runnable beforeReset = () -> { };
        VirtioBus bus;
        VirtioDevice device;

        RecordingOps(ConfigOps inner) {
            this.inner = inner;
        }

        public int getStatus() { return inner.getStatus(); }
        public void setStatus(int status) {
            log.add("status " + status);
            inner.setStatus(status);
        }
        public void reset() {
            beforeReset.run();
            log.add("reset");
            inner.reset();
        }
        public boolean modern() { return inner.modern(); }
        public long getFeatures() { return inner.getFeatures(); }
        public void finalizeFeatures(long features) {
            log.add("features");
            inner.finalizeFeatures(features);
        }
        public int generation() { return inner.generation(); }
        public void readConfig(int offset, byte[] dst, int dstOffset, int length) {
            reads.add(new int[] {offset, length});
            inner.readConfig(offset, dst, dstOffset, length);
        }
        public void writeConfig(int offset, byte[] src) { inner.writeConfig(offset, src); }
        public List<DriverQueue<Object>> findQueues(List<QueueSpec> specs) throws TransportException {
            List<DriverQueue<Object>> q = inner.findQueues(specs);
            queues.addAll(q);
            return q;
        }
        public void deleteQueues() {
            log.add("deleteQueues");
            inner.deleteQueues();
        }
        public GuestAllocator dma() { return inner.dma(); }
        public String busInfo() { return inner.busInfo(); }
        public String interruptMode() { return inner.interruptMode(); }
    }

    /** A machine whose virtio-pci functions are found on a bus without drivers, to be driven through a {@link RecordingOps}. */
    static final class Rig implements AutoCloseable {
        final Machine m;
        final VirtioBus discovery = new VirtioBus(); // no drivers: the transport finds devices, nothing binds
        final VirtioPciDriver pci;

        Rig() throws Exception {
            m = new Machine(64 << 20);
            pci = new VirtioPciDriver(m, discovery);
        }

        /** Plugs {@code model} and has {@code driver} drive it through a {@link RecordingOps}. */
        RecordingOps drive(VirtioDeviceModel model, VirtioDriver driver) {
            m.plug(model);
            VirtioDevice found = pci.scan().getFirst().virtioDevice();
            RecordingOps ops = new RecordingOps(found.config());
            VirtioBus bus = new VirtioBus();
            bus.registerDriver(driver);
            VirtioDevice dev = bus.registerDevice(found.deviceId(), ops);
            assertThat(dev.driver()).as("%s bound", model.type()).isSameAs(driver);
            ops.bus = bus;
            ops.device = dev;
            return ops;
        }

        @Override
        public void close() {
            m.close();
        }
    }

    static final long NET_OPTIONAL_CONFIG = Feature.maskOf(Feature.NET_MAC, Feature.NET_STATUS, Feature.NET_MQ,
            Feature.NET_MTU, Feature.NET_SPEED_DUPLEX, Feature.NET_RSS, Feature.NET_HASH_REPORT);
    static final long BLK_OPTIONAL_CONFIG = Feature.maskOf(Feature.BLK_SIZE_MAX, Feature.BLK_SEG_MAX,
            Feature.BLK_GEOMETRY, Feature.BLK_BLK_SIZE, Feature.BLK_TOPOLOGY, Feature.BLK_CONFIG_WCE, Feature.BLK_MQ,
            Feature.BLK_DISCARD, Feature.BLK_WRITE_ZEROES);
    static final long CONSOLE_OPTIONAL_CONFIG = Feature.maskOf(Feature.CONSOLE_SIZE, Feature.CONSOLE_MULTIPORT,
            Feature.CONSOLE_EMERG_WRITE);

    @Test
    @Conformance("basic-drv-12")
    void noOptionalConfigurationFieldIsReadUnlessItsFeatureIsOffered() throws Exception {
        try (Rig r = new Rig()) {
            NetDevice nic = new NetDevice(new VirtualSwitch().port(), new byte[] {0x52, 0x54, 0, 0, 0, 1}, 2);
            RecordingOps all = r.drive(nic, new NetDriver());
            assertThat(all.reads).as("with MAC, STATUS, MQ, MTU offered the driver reads them")
                    .extracting(x -> x[0]).contains(0, 6, 8, 10);

            RecordingOps net = r.drive(new MaskedModel(new NetDevice(new VirtualSwitch().port(),
                    new byte[] {0x52, 0x54, 0, 0, 0, 2}, 2), NET_OPTIONAL_CONFIG), new NetDriver());
            assertThat(net.reads).as("every field of virtio_net_config is optional").isEmpty();

            RecordingOps blk = r.drive(new MaskedModel(new BlkDevice(new MemoryBackend(1 << 20, false), 2),
                    BLK_OPTIONAL_CONFIG), new BlkDriver());
            assertThat(blk.reads).as("only capacity").isNotEmpty().allMatch(x -> x[0] == 0 && x[1] == 8);

            RecordingOps console = r.drive(new MaskedModel(new ConsoleDevice(new EchoBackend(), 80, 25),
                    CONSOLE_OPTIONAL_CONFIG), new ConsoleDriver());
            assertThat(console.reads).as("cols, rows, max_nr_ports, emerg_wr all optional").isEmpty();
        }
    }

    @Test
    @Conformance("basic-drv-13")
    void aConfigurationStructureIsOnlyCheckedToBeLargeEnough() throws Exception {
        for (long length : new long[] {8, 0x1000}) {
            try (Machine m = new Machine(64 << 20)) {
                BlkDriver driver = new BlkDriver();
                VirtioBus bus = new VirtioBus();
                bus.registerDriver(driver);
                VirtioPciDevice inner = new VirtioPciDevice(new MaskedModel(new BlkDevice(
                        new MemoryBackend(1 << 20, false)), BLK_OPTIONAL_CONFIG), m.memory(), "00:05.0", 2, false);
                m.plug(5, withDeviceConfigOf(inner, length));
                new VirtioPciDriver(m, bus).scan();
                assertThat(driver.disks()).as("device config of %d bytes", length).hasSize(1);
                assertThat(driver.disks().getFirst().capacitySectors()).isEqualTo(2048);
            }
        }
        // too small for the one field the driver needs: refused with a reason, never read past its end
        try (Machine m = new Machine(64 << 20)) {
            BlkDriver driver = new BlkDriver();
            VirtioBus bus = new VirtioBus();
            bus.registerDriver(driver);
            VirtioPciDevice inner = new VirtioPciDevice(new BlkDevice(new MemoryBackend(1 << 20, false)), m.memory(),
                    "00:05.0", 2, false);
            m.plug(5, withDeviceConfigOf(inner, 4));
            new VirtioPciDriver(m, bus).scan();
            assertThat(driver.disks()).isEmpty();
            assertThat(bus.events()).anyMatch(e -> e.contains("outside the device config"));
        }
    }

    /** {@code inner}, announcing its device configuration as {@code length} bytes long (first of its type). */
    private static PciCapabilityTest.WithForeignCaps withDeviceConfigOf(VirtioPciDevice inner, long length) {
        PciRulesTest.Cap own = PciRulesTest.Cap.find(inner, VirtioPciCap.DEVICE_CFG);
        return new PciCapabilityTest.WithForeignCaps(inner,
                new int[][] {{VirtioPciCap.DEVICE_CFG, own.bar(), (int) own.offset(), (int) length}});
    }

    @Test
    @Conformance("basic-drv-16")
    void noFeatureIsWrittenAfterFeaturesOkUntilTheNextReset() throws Exception {
        try (Machine m = new Machine(64 << 20)) {
            NetDevice nic = new NetDevice(new VirtualSwitch().port(), new byte[] {0x52, 0x54, 0, 0, 0, 9}, 2);
            PciDriverDisciplineTest.Logged f = new PciDriverDisciplineTest.Logged(
                    new VirtioPciDevice(nic, m.memory(), "00:05.0", 5, false));
            m.plug(5, f);
            VirtioBus bus = new VirtioBus();
            NetDriver net = new NetDriver();
            bus.registerDriver(net);
            new VirtioPciDriver(m, bus).scan();
            net.nics().getFirst().setPromiscuous(true);
            net.nics().getFirst().send(new byte[60]);
            bus.unbind(bus.devices().getFirst());
            bus.bind(bus.devices().getFirst(), net); // a second life: features negotiated again after a reset
            bus.unregisterDevice(bus.devices().getFirst());

            boolean featuresOk = false;
            int lives = 0;
            for (PciDriverDisciplineTest.Logged.Access a : f.log) {
                if (!a.write()) {
                    continue;
                }
                if (a.offset() == VirtioPciCap.DEVICE_STATUS) {
                    if (a.value() == 0) {
                        featuresOk = false;
                    } else if ((a.value() & DeviceStatus.FEATURES_OK) != 0 && !featuresOk) {
                        featuresOk = true;
                        lives++;
                    }
                } else if (a.offset() == VirtioPciCap.DRIVER_FEATURE || a.offset() == VirtioPciCap.DRIVER_FEATURE_SELECT) {
                    assertThat(featuresOk).as("driver_feature write %s after FEATURES_OK", a).isFalse();
                }
            }
            assertThat(lives).as("FEATURES_OK set in each life").isEqualTo(2);
        }
    }

    /** A disk whose reads wait until the test opens the gate. */
    static final class GatedDisk implements SyncBlockBackend {
        final CountDownLatch entered = new CountDownLatch(1);
        final CountDownLatch gate = new CountDownLatch(1);

        public long capacity() { return 1 << 20; }
        public boolean readOnly() { return false; }
        public String id() { return "gated"; }
        public void read(long offset, MemorySegment dst) throws java.io.IOException {
            entered.countDown();
            try {
                gate.await(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                throw new java.io.InterruptedIOException();
            }
        }
        public void write(long offset, MemorySegment src) { }
        public void flush() { }
        public void writeZeroes(long offset, long length, boolean unmap) { }
    }

    @Test
    @Conformance("basic-drv-19")
    void buffersTheDeviceStillHoldsAreLeftAloneUntilTheDeviceIsReset() throws Exception {
        try (Rig r = new Rig()) {
            GatedDisk disk = new GatedDisk();
            BlkDriver driver = new BlkDriver();
            RecordingOps ops = r.drive(new BlkDevice(BlockBackends.pooled(disk, 2)), driver);
            VirtioBlock blk = driver.disks().getFirst();
            CompletableFuture<Void> inFlight = blk.read(0, blk.allocateBuffer(4096));
            assertThat(disk.entered.await(10, TimeUnit.SECONDS)).isTrue();
            List<byte[]> live = rings(r.m, ops.queues);
            List<List<byte[]>> atReset = new CopyOnWriteArrayList<>();
            ops.beforeReset = () -> {
                atReset.add(rings(r.m, ops.queues));
                disk.gate.countDown(); // the device may finish the request while it resets
            };
            int before = ops.log.size();
            ops.bus.unregisterDevice(ops.device); // hot-unplug
            List<String> removal = ops.log.subList(before, ops.log.size());
            assertThat(removal).as("removal").containsSubsequence("reset", "deleteQueues");
            assertThat(atReset).isNotEmpty();
            for (int q = 0; q < live.size(); q++) {
                assertThat(Arrays.mismatch(atReset.getFirst().get(q), live.get(q)))
                        .as("first byte of queue %d's descriptors and available ring changed before the reset", q)
                        .isEqualTo(-1);
            }
            assertThat(inFlight.handle((v, e) -> true).get(10, TimeUnit.SECONDS)).as("the request in flight ends").isTrue();
        }
    }

    /**
     * What the driver exposes of each queue, as bytes: a split queue's descriptor table and available ring; a
     * packed queue's descriptor ring (its driver area is the 4-byte event suppression structure, and what
     * follows it — the device area — the device writes).
     */
    private static List<byte[]> rings(Machine m, List<DriverQueue<Object>> queues) {
        List<byte[]> out = new ArrayList<>();
        for (DriverQueue<Object> q : queues) {
            try {
                byte[] desc = m.memory().slice(q.addresses().descTable(), 16L * q.size()).toArray(ValueLayout.JAVA_BYTE);
                byte[] avail = q instanceof io.jvirtio.core.queue.packed.PackedDriverQueue<?> ? new byte[0]
                        : m.memory().slice(q.addresses().availRing(), 4 + 2L * q.size()).toArray(ValueLayout.JAVA_BYTE);
                byte[] both = Arrays.copyOf(desc, desc.length + avail.length);
                System.arraycopy(avail, 0, both, desc.length, avail.length);
                out.add(both);
            } catch (io.jvirtio.core.memory.GuestMemoryException e) {
                throw new AssertionError(e);
            }
        }
        return out;
    }

    /** A real device model that also hands the test each queue's interrupt, to raise it for nothing. */
    static int SPURIOUS = 100;

    static final class Spurious extends MaskedModel {
        final java.util.Map<Integer, Interrupt> interrupts = new java.util.concurrent.ConcurrentHashMap<>();

        Spurious(VirtioDeviceModel inner) {
            super(inner, 0);
        }

        @Override
        public void startQueue(int i, DeviceQueue q, Interrupt irq) {
            interrupts.put(i, irq);
            super.startQueue(i, q, irq);
        }

        void raiseAll(int times) {
            for (int n = 0; n < times; n++) {
                interrupts.values().forEach(Interrupt::raise);
            }
        }
    }

    @Test
    @Conformance("split-drv-14")
    void usedBufferNotificationsWithNothingUsedChangeNothing() throws Exception {
        try (Rig r = new Rig()) {
            Spurious blkModel = new Spurious(new BlkDevice(new MemoryBackend(1 << 20, false)));
            BlkDriver blkDriver = new BlkDriver();
            r.drive(blkModel, blkDriver);
            VirtioBlock disk = blkDriver.disks().getFirst();
            blkModel.raiseAll(100);
            MemorySegment out = disk.allocateBuffer(4096);
            for (int i = 0; i < 4096; i++) {
                out.set(ValueLayout.JAVA_BYTE, i, (byte) (i * 7));
            }
            disk.write(8, out).get(5, TimeUnit.SECONDS);
            blkModel.raiseAll(100);
            MemorySegment in = disk.allocateBuffer(4096);
            disk.read(8, in).get(5, TimeUnit.SECONDS);
            assertThat(in.mismatch(out)).isEqualTo(-1);
            assertThat(disk.device().status() & (DeviceStatus.FAILED | DeviceStatus.DEVICE_NEEDS_RESET)).isZero();

            VirtualSwitch sw = new VirtualSwitch();
            Spurious nicModel = new Spurious(new NetDevice(sw.port(), new byte[] {0x52, 0x54, 0, 0, 0, 1}, 1));
            NetDriver a = new NetDriver();
            r.drive(nicModel, a);
            NetDriver b = new NetDriver();
            r.drive(new NetDevice(sw.port(), new byte[] {0x52, 0x54, 0, 0, 0, 2}, 1), b);
            nicModel.raiseAll(SPURIOUS);
            var nic = a.nics().getFirst();
            assertThat(nic.rxFrames.get() + nic.rxDropped.get()).as("frames made of nothing").isZero();
            byte[] frame = new byte[60];
            System.arraycopy(nic.mac(), 0, frame, 0, 6);
            System.arraycopy(b.nics().getFirst().mac(), 0, frame, 6, 6);
            frame[20] = 0x42;
            b.nics().getFirst().send(frame);
            assertThat(nic.receive(5, TimeUnit.SECONDS)).isEqualTo(frame);
            assertThat(nic.rxDropped.get()).isZero();
        }
    }

    /**
     * A NIC model of nothing but rings: the test writes each received frame's header itself, with every field
     * a driver must not rely on set to junk.
     */
    static final class RawNic implements VirtioDeviceModel {
        final ConfigSpace config = new ConfigSpace(8);
        final DeviceQueue[] queues = new DeviceQueue[2];
        final Interrupt[] interrupts = new Interrupt[2];
        final CountDownLatch started = new CountDownLatch(2);

        RawNic(byte[] mac) {
            config.store(0, mac);
        }

        public DeviceType type() { return DeviceType.NET; }
        public long deviceFeatures() { return Feature.maskOf(Feature.VERSION_1, Feature.NET_MAC); }
        public int numQueues() { return 2; }
        public int maxQueueSize(int index) { return 64; }
        public ConfigSpace config() { return config; }
        public synchronized void activate(DeviceContext c) {
            for (int i = 0; i < 2; i++) {
                startQueue(i, c.queues().get(i), c.interrupts().get(i));
            }
        }
        public synchronized void startQueue(int i, DeviceQueue q, Interrupt irq) {
            queues[i] = q;
            interrupts[i] = irq;
            started.countDown();
        }
        public QueueState stopQueue(int i) { return null; }
        public void queueNotify(int i) { }
        public void reset() { }
    }

    @Test
    @Conformance("net-drv-10")
    void aReceivedFrameIsDeliveredWhateverTheHeaderFieldsTheDriverDidNotAskFor() throws Exception {
        try (Rig r = new Rig()) {
            byte[] mac = {0x52, 0x54, 0, 0, 0, 7};
            RawNic raw = new RawNic(mac);
            NetDriver driver = new NetDriver();
            r.drive(raw, driver);
            assertThat(raw.started.await(5, TimeUnit.SECONDS)).isTrue();
            var nic = driver.nics().getFirst();
            byte[][] frames = new byte[3][];
            // flags: NEEDS_CSUM | DATA_VALID | RSC_INFO | undefined bits; gso_type: ECN | undefined; hdr_len,
            // gso_size, csum_start, csum_offset all pointing nowhere; num_buffers 7 without MRG_RXBUF
            byte[] header = {(byte) 0xff, (byte) 0x85, -1, -1, -1, -1, (byte) 0xf0, -1, (byte) 0xf0, -1, 7, 0};
            DeviceQueue rx = raw.queues[0];
            DescriptorChain chain = new DescriptorChain();
            for (int f = 0; f < frames.length; f++) {
                frames[f] = new byte[60 + 400 * f];
                System.arraycopy(mac, 0, frames[f], 0, 6);
                for (int i = 12; i < frames[f].length; i++) {
                    frames[f][i] = (byte) (i + f);
                }
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
                while (!rx.pop(chain)) {
                    assertThat(System.nanoTime()).as("a receive buffer posted").isLessThan(deadline);
                    Thread.sleep(1);
                }
                chain.writeWritable(0, MemorySegment.ofArray(header));
                chain.writeWritable(header.length, MemorySegment.ofArray(frames[f]));
                rx.addUsed(chain, header.length + frames[f].length);
                rx.publishUsed();
                raw.interrupts[0].raise();
            }
            for (byte[] f : frames) {
                assertThat(nic.receive(5, TimeUnit.SECONDS)).as("frame of %d bytes", f.length).isEqualTo(f);
            }
            assertThat(nic.rxDropped.get()).isZero();
        }
    }
}
