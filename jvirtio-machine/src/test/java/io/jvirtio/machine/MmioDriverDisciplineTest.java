package io.jvirtio.machine;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.spec.Conformance;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.MemoryBackend;
import io.jvirtio.drivers.blk.BlkDriver;
import io.jvirtio.transport.mmio.MmioHost;
import io.jvirtio.transport.mmio.VirtioMmioDriver;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

import static io.jvirtio.transport.mmio.VirtioMmio.*;
import static org.assertj.core.api.Assertions.assertThat;

/** What the virtio-mmio driver does to the register window over a disk's whole life, checked against §4.2.2/§4.2.3. */
class MmioDriverDisciplineTest {
    record Access(boolean write, int offset, int size, long value) {
    }

    static final Set<Integer> READ_ONLY = Set.of(MAGIC_VALUE, VERSION, DEVICE_ID, VENDOR_ID, DEVICE_FEATURES,
            QUEUE_NUM_MAX, INTERRUPT_STATUS, CONFIG_GENERATION, SHM_LEN_LOW, SHM_LEN_HIGH, SHM_BASE_LOW, SHM_BASE_HIGH);
    static final Set<Integer> WRITE_ONLY = Set.of(DEVICE_FEATURES_SEL, DRIVER_FEATURES, DRIVER_FEATURES_SEL, QUEUE_SEL,
            QUEUE_NUM, QUEUE_NOTIFY, INTERRUPT_ACK, QUEUE_DESC_LOW, QUEUE_DESC_HIGH, QUEUE_DRIVER_LOW, QUEUE_DRIVER_HIGH,
            QUEUE_DEVICE_LOW, QUEUE_DEVICE_HIGH, SHM_SEL);
    static final Set<Integer> READ_WRITE = Set.of(QUEUE_READY, STATUS);
    static final Set<Integer> SHM = Set.of(SHM_SEL, SHM_LEN_LOW, SHM_LEN_HIGH, SHM_BASE_LOW, SHM_BASE_HIGH);

    record Logging(Machine m, long base, List<Access> log) implements MmioHost {
        public long mmioRead(long address, int size) {
            long v = m.mmioRead(address, size);
            log.add(new Access(false, (int) (address - base), size, v));
            return v;
        }
        public void mmioWrite(long address, int size, long value) {
            log.add(new Access(true, (int) (address - base), size, value));
            m.mmioWrite(address, size, value);
        }
        public void attachIrq(int irq, Runnable handler) { m.attachIrq(irq, handler); }
        public void detachIrq(int irq) { m.detachIrq(irq); }
        public GuestAllocator dma() { return m.dma(); }
    }

    @Test
    @Conformance({"mmio-drv-1", "mmio-drv-6", "mmio-drv-7", "mmio-drv-8", "mmio-drv-13"})
    void theDriverTouchesOnlyDescribedRegistersInTheOrderItMust() throws Exception {
        try (Machine m = new Machine(64 << 20)) {
            Machine.MmioSlot slot = m.plugMmio(new BlkDevice(new MemoryBackend(1 << 20, false), 2));
            Logging host = new Logging(m, slot.base(), new CopyOnWriteArrayList<>());
            VirtioBus bus = new VirtioBus();
            BlkDriver blk = new BlkDriver();
            bus.registerDriver(blk);
            var dev = new VirtioMmioDriver(host, bus).probe(slot.base(), slot.irq());
            MemorySegment buf = blk.disks().getFirst().allocateBuffer(4096);
            blk.disks().getFirst().write(0, buf).get(10, TimeUnit.SECONDS);
            bus.unregisterDevice(dev);

            int selSeenFeatures = -1;
            boolean driverSelWritten = false;
            int queue = -1;
            Map<Integer, Long> numMax = new HashMap<>();
            Map<Integer, Boolean> ready = new HashMap<>();
            for (Access a : host.log()) {
                int r = a.offset();
                if (r >= CONFIG) {
                    continue; // device-specific configuration: its own rules (ConfigAccessWidthTest)
                }
                assertThat(READ_ONLY.contains(r) || WRITE_ONLY.contains(r) || READ_WRITE.contains(r))
                        .as("register 0x%x is described", r).isTrue();
                assertThat(a.size()).as("register 0x%x is accessed as 32 bits", r).isEqualTo(4);
                assertThat(SHM.contains(r)).as("no shared-memory registers (0x%x)", r).isFalse();
                if (a.write()) {
                    assertThat(READ_ONLY).as("write to read-only 0x%x", r).doesNotContain(r);
                } else {
                    assertThat(WRITE_ONLY).as("read of write-only 0x%x", r).doesNotContain(r);
                }
                switch (r) {
                    case DEVICE_FEATURES_SEL -> selSeenFeatures = (int) a.value();
                    case DEVICE_FEATURES -> assertThat(selSeenFeatures).as("DeviceFeaturesSel first").isNotNegative();
                    case DRIVER_FEATURES_SEL -> driverSelWritten = true;
                    case DRIVER_FEATURES -> assertThat(driverSelWritten).as("DriverFeaturesSel first").isTrue();
                    case QUEUE_SEL -> queue = (int) a.value();
                    case QUEUE_NUM_MAX -> numMax.put(queue, a.value());
                    case QUEUE_NUM -> {
                        assertThat(numMax).as("QueueNumMax read first").containsKey(queue);
                        assertThat(a.value()).isLessThanOrEqualTo(numMax.get(queue));
                        assertThat(ready.getOrDefault(queue, false)).as("queue %d not ready", queue).isFalse();
                    }
                    case QUEUE_DESC_LOW, QUEUE_DESC_HIGH, QUEUE_DRIVER_LOW, QUEUE_DRIVER_HIGH, QUEUE_DEVICE_LOW,
                         QUEUE_DEVICE_HIGH -> assertThat(ready.getOrDefault(queue, false))
                            .as("queue %d addresses only while not ready", queue).isFalse();
                    case QUEUE_READY -> {
                        if (a.write()) {
                            ready.put(queue, a.value() != 0);
                        }
                    }
                    case STATUS -> {
                        if (a.write() && a.value() == 0) {
                            ready.clear();
                        }
                    }
                    default -> { }
                }
            }
        }
    }
}
