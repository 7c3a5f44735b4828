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
}
