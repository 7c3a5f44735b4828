package io.jvirtio.machine;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.core.spec.Conformance;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.MemoryBackend;
import io.jvirtio.drivers.blk.BlkDriver;
import io.jvirtio.transport.mmio.VirtioMmioDriver;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.MemorySegment;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static io.jvirtio.transport.mmio.VirtioMmio.DEVICE_FEATURES;
import static io.jvirtio.transport.mmio.VirtioMmio.DEVICE_FEATURES_SEL;
import static io.jvirtio.transport.mmio.VirtioMmio.QUEUE_NOTIFY;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * VIRTIO_F_NOTIFICATION_DATA over virtio-mmio (§4.2.2, §4.2.3.4), both sides: jvirtio's driver writes QueueNotify
 * as the queue index with next_off/next_wrap above it when the device offers the feature, and the index
 * alone when it does not; jvirtio's device takes the queue from bits 0–15 and the rest as a hint only.
 */
class MmioNotificationDataTest {

    /** Logs QueueNotify writes; with {@code hide}, shows the device as not offering NOTIFICATION_DATA. */
    record Host(Machine m, long base, boolean hide, java.util.List<Long> notifies, int[] featureSel)
            implements io.jvirtio.transport.mmio.MmioHost {
        public long mmioRead(long address, int size) {
            long v = m.mmioRead(address, size);
            if (hide && address == base + DEVICE_FEATURES && featureSel[0] == 1) {
                v &= ~(1L << (Feature.NOTIFICATION_DATA.bit() - 32));
            }
            return v;
        }
        public void mmioWrite(long address, int size, long value) {
            if (address == base + DEVICE_FEATURES_SEL) {
                featureSel[0] = (int) value;
            }
            if (address == base + QUEUE_NOTIFY) {
                notifies.add(value);
            }
            m.mmioWrite(address, size, value);
        }
        public void attachIrq(int irq, Runnable handler) { m.attachIrq(irq, handler); }
        public void detachIrq(int irq) { m.detachIrq(irq); }
        public io.jvirtio.core.memory.GuestAllocator dma() { return m.dma(); }
    }

    @ParameterizedTest(name = "notification data offered: {0}")
    @ValueSource(booleans = {false, true})
    @Conformance({"notif-drv-1", "notif-dev-1"})
    void queueNotifyCarriesTheNextPositionExactlyWhenNegotiated(boolean offered) throws Exception {
        try (Machine m = new Machine(64 << 20)) {
            AtomicInteger notified = new AtomicInteger();
            MaskedModel model = new MaskedModel(new BlkDevice(new MemoryBackend(1 << 20, false), 1), 0) {
                @Override
                public void queueNotify(int i) {
                    notified.incrementAndGet();
                    super.queueNotify(i);
                }
            };
            Machine.MmioSlot slot = m.plugMmio(model);
            Host host = new Host(m, slot.base(), !offered, new CopyOnWriteArrayList<>(), new int[1]);
            VirtioBus bus = new VirtioBus();
            BlkDriver blk = new BlkDriver();
            bus.registerDriver(blk);
            new VirtioMmioDriver(host, bus).probe(slot.base(), slot.irq());
            MemorySegment buf = blk.disks().getFirst().allocateBuffer(4096);
            for (int i = 0; i < 5; i++) {
                blk.disks().getFirst().write(8L * i, buf).get(10, TimeUnit.SECONDS);
            }
            assertThat(host.notifies()).as("requests were notified").isNotEmpty();
            Map<Long, Long> last = new HashMap<>();
            for (long v : host.notifies()) {
                if (offered) {
                    assertThat(v & 0xffff).as("the queue index in bits 0-15").isZero();
                    Long before = last.put(0L, v >>> 16);
                    assertThat(v >>> 16).as("next_off: the avail index, moving forward").isGreaterThan(before == null ? 0 : before);
                } else {
                    assertThat(v).as("the queue index alone").isZero();
                }
            }
            // the device side: bits 16-31 are a hint when negotiated; without it the value is no queue at all
            int before = notified.get();
            m.mmioWrite(slot.base() + QUEUE_NOTIFY, 4, 0x7fff_0000L);
            assertThat(notified.get() - before).as("queue 0 with data 0x7fff").isEqualTo(offered ? 1 : 0);
            m.mmioWrite(slot.base() + QUEUE_NOTIFY, 4, 0);
            assertThat(notified.get() - before).isEqualTo(offered ? 2 : 1);
            blk.disks().getFirst().write(0, buf).get(10, TimeUnit.SECONDS);
        }
    }
}
