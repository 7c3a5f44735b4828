package io.jvirtio.machine;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.core.spec.Conformance;
import io.jvirtio.devices.rng.RngDevice;
import io.jvirtio.drivers.rng.RngDriver;
import io.jvirtio.transport.mmio.VirtioMmio;
import io.jvirtio.transport.mmio.VirtioMmioDriver;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

import static org.assertj.core.api.Assertions.assertThat;

class MmioRulesTest {
    @Test
    void aSharedMemoryRegionThatDoesNotExistHasLengthMinusOne() throws Exception {
        try (Machine m = new Machine(16 << 20)) {
            long base = m.plugMmio(new RngDevice()).base();
            m.mmioWrite(base + VirtioMmio.SHM_SEL, 4, 0);
            assertThat(m.mmioRead(base + VirtioMmio.SHM_LEN_LOW, 4)).isEqualTo(0xffffffffL);
            assertThat(m.mmioRead(base + VirtioMmio.SHM_LEN_HIGH, 4)).isEqualTo(0xffffffffL);
        }
    }

    /** Records every InterruptACK write and shows InterruptStatus with an undefined bit (bit 5) always set. */
    record UndefinedBit(Machine m, long base, List<Long> acks) implements io.jvirtio.transport.mmio.MmioHost {
        public long mmioRead(long address, int size) {
            long v = m.mmioRead(address, size);
            return address == base + VirtioMmio.INTERRUPT_STATUS ? v | 0x20 : v;
        }
        public void mmioWrite(long address, int size, long value) {
            if (address == base + VirtioMmio.INTERRUPT_ACK) {
                acks.add(value);
            }
            m.mmioWrite(address, size, value);
        }
        public void attachIrq(int irq, Runnable handler) { m.attachIrq(irq, handler); }
        public void detachIrq(int irq) { m.detachIrq(irq); }
        public io.jvirtio.core.memory.GuestAllocator dma() { return m.dma(); }
    }

    @Test
    @Conformance({"mmio-drv-10", "mmio-drv-11"})
    void theDriverIgnoresAndNeverAcknowledgesUndefinedInterruptBits() throws Exception {
        try (Machine m = new Machine(16 << 20)) {
            Machine.MmioSlot slot = m.plugMmio(new RngDevice());
            VirtioBus bus = new VirtioBus();
            RngDriver rng = new RngDriver();
            bus.registerDriver(rng);
            UndefinedBit host = new UndefinedBit(m, slot.base(), new CopyOnWriteArrayList<>());
            new VirtioMmioDriver(host, bus).probe(slot.base(), slot.irq());
            byte[] b = new byte[4096];
            rng.devices().getFirst().read(b);
            assertThat(host.acks()).as("used-buffer interrupts were acknowledged").isNotEmpty()
                    .allMatch(a -> (a & ~(long) (VirtioMmio.INT_VRING | VirtioMmio.INT_CONFIG)) == 0);
        }
    }

    /** A register window with chosen identification registers that logs every access. */
    record Fake(int magic, int version, int deviceId, List<String> log) implements io.jvirtio.transport.mmio.MmioHost {
        public long mmioRead(long address, int size) {
            log.add("read " + Long.toHexString(address & 0xfff));
            return switch ((int) (address & 0xfff)) {
                case VirtioMmio.MAGIC_VALUE -> magic;
                case VirtioMmio.VERSION -> version;
                case VirtioMmio.DEVICE_ID -> deviceId;
                default -> 0;
            };
        }
        public void mmioWrite(long address, int size, long value) { log.add("write " + Long.toHexString(address & 0xfff)); }
        public void attachIrq(int irq, Runnable handler) { log.add("irq"); }
        public void detachIrq(int irq) { }
        public io.jvirtio.core.memory.GuestAllocator dma() { return null; }
    }

    @Test
    @Conformance({"mmio-drv-3", "mmio-drv-4", "mmio-drv-5", "mmio-drv-12"})
    void theDriverChecksMagicThenVersionThenDeviceIdAndTouchesNothingElseOfAnUnusableWindow() {
        VirtioBus bus = new VirtioBus();
        for (Fake f : List.of(new Fake(0x12345678, 2, 2, new CopyOnWriteArrayList<>()),
                new Fake(VirtioMmio.MAGIC, 1, 2, new CopyOnWriteArrayList<>()),
                new Fake(VirtioMmio.MAGIC, 2, 0, new CopyOnWriteArrayList<>()))) {
            assertThat(new VirtioMmioDriver(f, bus).probe(0xd000_0000L, 5)).isNull();
            List<String> expected = f.magic() != VirtioMmio.MAGIC ? List.of("read 0")
                    : f.version() != 2 ? List.of("read 0", "read 4") : List.of("read 0", "read 4", "read 8");
            assertThat(f.log()).as("magic %x version %d id %d", f.magic(), f.version(), f.deviceId())
                    .containsExactlyElementsOf(expected);
        }
        assertThat(bus.devices()).isEmpty();
    }

    @Test
    @Conformance({"mmio-dev-3", "mmio-dev-4"})
    void interruptStatusHoldsUntilAcknowledgedAndResetClearsItAndEveryQueueReady() throws Exception {
        try (Machine m = new Machine(16 << 20)) {
            io.jvirtio.devices.blk.BlkDevice blk = new io.jvirtio.devices.blk.BlkDevice(
                    new io.jvirtio.devices.blk.MemoryBackend(1 << 20, false));
            Machine.MmioSlot slot = m.plugMmio(blk);
            long base = slot.base();
            VirtioBus bus = new VirtioBus();
            bus.registerDriver(new io.jvirtio.drivers.blk.BlkDriver());
            // the driver takes the line; the test reads and acknowledges by hand
            new VirtioMmioDriver(m, bus).probe(base, slot.irq());
            m.detachIrq(slot.irq());
            blk.config().update(0, 2048, 8); // configuration change
            long st = m.mmioRead(base + VirtioMmio.INTERRUPT_STATUS, 4);
            assertThat(st).isEqualTo(VirtioMmio.INT_CONFIG);
            assertThat(m.mmioRead(base + VirtioMmio.INTERRUPT_STATUS, 4)).as("held until acknowledged").isEqualTo(st);
            m.mmioWrite(base + VirtioMmio.INTERRUPT_ACK, 4, VirtioMmio.INT_CONFIG);
            assertThat(m.mmioRead(base + VirtioMmio.INTERRUPT_STATUS, 4)).isZero();
            blk.config().update(0, 2048, 8);
            assertThat(m.mmioRead(base + VirtioMmio.INTERRUPT_STATUS, 4)).isEqualTo(VirtioMmio.INT_CONFIG);
            m.mmioWrite(base + VirtioMmio.QUEUE_SEL, 4, 0);
            assertThat(m.mmioRead(base + VirtioMmio.QUEUE_READY, 4)).isEqualTo(1);
            m.mmioWrite(base + VirtioMmio.STATUS, 4, 0);
            assertThat(m.mmioRead(base + VirtioMmio.STATUS, 4)).isZero();
            assertThat(m.mmioRead(base + VirtioMmio.INTERRUPT_STATUS, 4)).as("reset clears it").isZero();
            assertThat(m.mmioRead(base + VirtioMmio.QUEUE_READY, 4)).as("and QueueReady").isZero();
        }
    }

    @Test
    @Conformance("con-dev-1")
    void emergencyWriteWorksOnADeviceNobodyConfigured() throws Exception {
        java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
        io.jvirtio.devices.console.ConsoleBackend backend = new io.jvirtio.devices.console.ConsoleBackend() {
            public void start(java.util.function.Consumer<byte[]> input) { }
            public void write(byte[] data, int offset, int length) { out.write(data, offset, length); }
            public void close() { }
        };
        try (Machine m = new Machine(16 << 20)) {
            long base = m.plugMmio(new io.jvirtio.devices.console.ConsoleDevice(backend, 80, 25)).base();
            assertThat(m.mmioRead(base + VirtioMmio.STATUS, 4)).as("not even acknowledged").isZero();
            m.mmioWrite(base + VirtioMmio.CONFIG + 8, 4, 'A');
            m.mmioWrite(base + VirtioMmio.CONFIG + 8, 4, 0x100 | 'B'); // only the low byte is output
            assertThat(out.toString()).isEqualTo("AB");
        }
    }
}
