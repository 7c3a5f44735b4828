package io.jvirtio.machine;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.core.spec.Conformance;
import io.jvirtio.devices.net.NetDevice;
import io.jvirtio.devices.net.VirtualSwitch;
import io.jvirtio.drivers.net.NetDriver;
import io.jvirtio.transport.pci.PciFunction;
import io.jvirtio.transport.pci.PciInterrupts;
import io.jvirtio.transport.pci.VirtioPciDevice;
import io.jvirtio.transport.pci.VirtioPciDriver;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

import static io.jvirtio.transport.pci.VirtioPciCap.*;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * What the virtio-pci driver does to the common configuration, access by access, over a whole life —
 * probe of a NIC with MSI-X, traffic, removal — checked against the driver rules of §4.1.4.3.
 */
class PciDriverDisciplineTest {

    /** A virtio-pci function that logs every access to its common configuration structure. */
    static final class Logged implements PciFunction {
        record Access(boolean write, int offset, int size, long value) {
        }

        final VirtioPciDevice inner;
        final PciRulesTest.Cap common;
        final PciRulesTest.Cap isr;
        final PciRulesTest.Cap notify;
        final List<Access> log = new CopyOnWriteArrayList<>();
        final List<Access> notifications = new CopyOnWriteArrayList<>();
        final List<Integer> configWrites = new CopyOnWriteArrayList<>();
        final java.util.concurrent.atomic.AtomicInteger isrReads = new java.util.concurrent.atomic.AtomicInteger();
        /** Shows the device as not offering VIRTIO_F_NOTIFICATION_DATA (bit 38, in the second feature window). */
        final boolean hideNotificationData;

        Logged(VirtioPciDevice inner) {
            this(inner, false);
        }

        Logged(VirtioPciDevice inner, boolean hideNotificationData) {
            this.inner = inner;
            this.hideNotificationData = hideNotificationData;
            this.common = PciRulesTest.Cap.find(inner, COMMON_CFG);
            this.isr = PciRulesTest.Cap.find(inner, ISR_CFG);
            this.notify = PciRulesTest.Cap.find(inner, NOTIFY_CFG);
        }

        private boolean isCommon(int bar, long offset) {
            return bar == common.bar() && offset >= common.offset() && offset < common.offset() + common.length();
        }

        public long barRead(int bar, long offset, int size) {
            if (bar == isr.bar() && offset == isr.offset()) {
                isrReads.incrementAndGet();
            }
            long v = inner.barRead(bar, offset, size);
            if (hideNotificationData && isCommon(bar, offset) && offset - common.offset() == DEVICE_FEATURE
                    && inner.barRead(bar, common.offset() + DEVICE_FEATURE_SELECT, 4) == 1) {
                v &= ~(1L << (io.jvirtio.core.spec.Feature.NOTIFICATION_DATA.bit() - 32));
            }
            if (isCommon(bar, offset)) {
                log.add(new Access(false, (int) (offset - common.offset()), size, v));
            }
            return v;
        }

        public void barWrite(int bar, long offset, int size, long value) {
            if (bar == notify.bar() && offset >= notify.offset() && offset < notify.offset() + notify.length()) {
                notifications.add(new Access(true, (int) (offset - notify.offset()), size, value));
            }
            if (isCommon(bar, offset)) {
                log.add(new Access(true, (int) (offset - common.offset()), size, value));
            }
            inner.barWrite(bar, offset, size, value);
        }

        public int configRead(int offset, int size) { return inner.configRead(offset, size); }
        public void configWrite(int offset, int size, int value) {
            configWrites.add(offset);
            inner.configWrite(offset, size, value);
        }
        public long barAddress(int bar) { return inner.barAddress(bar); }
        public long barSize(int bar) { return inner.barSize(bar); }
        public boolean barIsIo(int bar) { return inner.barIsIo(bar); }
        public void connect(PciInterrupts interrupts) { inner.connect(interrupts); }
    }

    @Test
    @Conformance({"pci-drv-12", "pci-drv-13", "pci-drv-14", "pci-drv-16", "pci-drv-19", "pci-drv-20"})
    void theDriverWritesOnlyWhatItMayInTheOrderItMust() throws Exception {
        int vectors = 4;
        try (Machine m = new Machine(64 << 20)) {
            NetDevice nic = new NetDevice(new VirtualSwitch().port(), new byte[] {0x52, 0x54, 0, 0, 0, 9}, 1);
            Logged f = new Logged(new VirtioPciDevice(nic, m.memory(), "00:05.0", vectors, false));
            m.plug(5, f);
            VirtioBus bus = new VirtioBus();
            NetDriver net = new NetDriver();
            bus.registerDriver(net);
            new VirtioPciDriver(m, bus).scan();
            net.nics().getFirst().send(new byte[60]);
            bus.unregisterDevice(bus.devices().getFirst());

            List<Logged.Access> writes = f.log.stream().filter(Logged.Access::write).toList();
            assertThat(writes).as("read-only fields").noneMatch(a -> a.offset() == DEVICE_FEATURE
                    || a.offset() == NUM_QUEUES || a.offset() == CONFIG_GENERATION || a.offset() == QUEUE_NOTIFY_OFF);
            assertThat(writes).filteredOn(a -> a.offset() == QUEUE_SIZE).as("queue sizes").isNotEmpty()
                    .allMatch(a -> Long.bitCount(a.value()) == 1);
            assertThat(writes).filteredOn(a -> a.offset() == QUEUE_ENABLE).as("queue_enable").isNotEmpty()
                    .allMatch(a -> a.value() == 1);
            // each queue: size and the three addresses are programmed before it is enabled
            int selected = -1;
            java.util.Map<Integer, List<Integer>> programmed = new java.util.HashMap<>();
            for (Logged.Access a : writes) {
                switch (a.offset()) {
                    case QUEUE_SELECT -> selected = (int) a.value();
                    case QUEUE_SIZE, QUEUE_DESC, QUEUE_DRIVER, QUEUE_DEVICE ->
                            programmed.computeIfAbsent(selected, k -> new ArrayList<>()).add(a.offset());
                    case QUEUE_ENABLE -> assertThat(programmed.getOrDefault(selected, List.of()))
                            .as("queue %d before enable", selected)
                            .contains(QUEUE_SIZE, QUEUE_DESC, QUEUE_DRIVER, QUEUE_DEVICE);
                    case DEVICE_STATUS -> {
                        if (a.value() == 0) {
                            programmed.clear(); // reset: a queue must be programmed again
                        }
                    }
                    default -> { }
                }
            }
            // every vector mapped is inside the table, and read back right after it is written
            List<Logged.Access> all = f.log;
            for (int i = 0; i < all.size(); i++) {
                Logged.Access a = all.get(i);
                if (a.write() && (a.offset() == CONFIG_MSIX_VECTOR || a.offset() == QUEUE_MSIX_VECTOR)) {
                    assertThat(a.value() < vectors || a.value() == NO_VECTOR).as("vector %d", a.value()).isTrue();
                    if (a.value() != NO_VECTOR) { // a mapping (not an unmapping) is verified before anything else
                        Logged.Access next = all.get(i + 1);
                        assertThat(next).as("access after mapping vector %d at %d", a.value(), a.offset())
                                .isEqualTo(new Logged.Access(false, a.offset(), 2, a.value()));
                    }
                }
            }
        }
    }

    /**
     * Without NOTIFICATION_DATA (the device is shown not offering it) a notification is a 16-bit write of the
     * queue index (pci-drv-22); with it, a 32-bit write with the index in bits 0–15 and next_off/next_wrap in
     * bits 16–31 (§4.1.5.2), which for each queue only moves forward.
     */
    @org.junit.jupiter.params.ParameterizedTest(name = "notification data offered: {0}")
    @org.junit.jupiter.params.provider.ValueSource(booleans = {false, true})
    @Conformance({"pci-drv-9", "pci-drv-21", "pci-drv-22", "notif-drv-1"})
    void capabilitiesAreNeverWrittenNotificationsCarryTheQueueAndMsixQueueInterruptsSkipTheIsr(boolean data)
            throws Exception {
        try (Machine m = new Machine(64 << 20)) {
            NetDevice nic = new NetDevice(new VirtualSwitch().port(), new byte[] {0x52, 0x54, 0, 0, 0, 9}, 1);
            Logged f = new Logged(new VirtioPciDevice(nic, m.memory(), "00:05.0", 4, false), !data);
            m.plug(5, f);
            VirtioBus bus = new VirtioBus();
            NetDriver net = new NetDriver();
            bus.registerDriver(net);
            new VirtioPciDriver(m, bus).scan();
            int isrBefore = f.isrReads.get();
            long interruptsBefore = m.interruptsDelivered();
            for (int i = 0; i < 20; i++) {
                net.nics().getFirst().send(new byte[60]);
            }
            long deadline = System.nanoTime() + java.util.concurrent.TimeUnit.SECONDS.toNanos(5);
            while ((nic.txFrames() < 20 || m.interruptsDelivered() == interruptsBefore) && System.nanoTime() < deadline) {
                Thread.sleep(1);
            }
            assertThat(m.interruptsDelivered()).as("transmit interrupts were delivered").isGreaterThan(interruptsBefore);
            assertThat(f.isrReads.get()).as("no ISR read for MSI-X queue interrupts").isEqualTo(isrBefore);
            // the virtio capabilities (all but the PCI configuration access one) are never written
            for (int type : new int[] {COMMON_CFG, NOTIFY_CFG, ISR_CFG, DEVICE_CFG}) {
                PciRulesTest.Cap cap = PciRulesTest.Cap.find(f, type);
                int len = f.configRead(cap.at() + CAP_LEN, 1);
                assertThat(f.configWrites).as("capability type %d", type)
                        .noneMatch(o -> o >= cap.at() && o < cap.at() + len);
            }
            // each notification: a write of the queue's index at the queue's own doorbell
            long multiplier = f.configRead(f.notify.at() + NOTIFY_OFF_MULTIPLIER, 4) & 0xffffffffL;
            java.util.Map<Long, Long> lastNext = new java.util.HashMap<>();
            assertThat(f.notifications).isNotEmpty().allSatisfy(a -> {
                assertThat(a.size()).isEqualTo(data ? 4 : 2);
                long queue = a.value() & 0xffff;
                f.barWrite(f.common.bar(), f.common.offset() + QUEUE_SELECT, 2, queue);
                assertThat((long) a.offset()).as("doorbell of queue %d", queue)
                        .isEqualTo(f.barRead(f.common.bar(), f.common.offset() + QUEUE_NOTIFY_OFF, 2) * multiplier);
                if (data) {
                    long next = a.value() >>> 16; // a split ring: the 16-bit available index
                    Long before = lastNext.put(queue, next);
                    assertThat(next).as("queue %d's next_off never moves back", queue).isGreaterThanOrEqualTo(before == null ? 0 : before);
                }
            });
        }
    }

    @Test
    @Conformance("pci-drv-23")
    void oneIntxInterruptCarryingAConfigChangeAndAUsedBufferServesBoth() throws Exception {
        try (Machine m = new Machine(64 << 20)) {
            io.jvirtio.devices.blk.BlkDevice blk = new io.jvirtio.devices.blk.BlkDevice(
                    new io.jvirtio.devices.blk.MemoryBackend(1 << 20, false));
            int slot = m.plug(blk, 0); // INTx: the ISR says what happened
            VirtioBus bus = new VirtioBus();
            io.jvirtio.drivers.blk.BlkDriver driver = new io.jvirtio.drivers.blk.BlkDriver();
            bus.registerDriver(driver);
            new VirtioPciDriver(m, bus).scan();
            var disk = driver.disks().getFirst();
            int cmd = m.configRead(slot, io.jvirtio.transport.pci.Pci.COMMAND, 2);
            m.configWrite(slot, io.jvirtio.transport.pci.Pci.COMMAND, 2, cmd | io.jvirtio.transport.pci.Pci.COMMAND_INTX_DISABLE);
            var read = disk.read(0, disk.allocateBuffer(512)); // completes while the line is held off
            long deadline = System.nanoTime() + java.util.concurrent.TimeUnit.SECONDS.toNanos(5);
            while (blk.reads.sum() == 0 && System.nanoTime() < deadline) {
                Thread.sleep(1);
            }
            blk.config().update(0, 1024, 8); // and the capacity changes
            m.configWrite(slot, io.jvirtio.transport.pci.Pci.COMMAND, 2, cmd); // one interrupt, ISR = queue | config
            read.get(5, java.util.concurrent.TimeUnit.SECONDS);
            deadline = System.nanoTime() + java.util.concurrent.TimeUnit.SECONDS.toNanos(5);
            while (disk.capacitySectors() != 1024 && System.nanoTime() < deadline) {
                Thread.sleep(1);
            }
            assertThat(disk.capacitySectors()).as("the config change was served too").isEqualTo(1024);
        }
    }
}
