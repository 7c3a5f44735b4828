package io.jvirtio.bus;

import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.spec.Conformance;
import io.jvirtio.core.spec.DeviceStatus;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.core.spec.Feature;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;

import static org.assertj.core.api.Assertions.assertThat;

/** The bus's initialisation sequence as the device sees it: every status write and reset, in order. */
class BusProbeTest {

    /** A device that logs "reset" and each status byte written; status reads back as written. */
    static final class Recording implements ConfigOps {
        final List<String> log = new CopyOnWriteArrayList<>();
        int status;

        public int getStatus() { return status; }
        public void setStatus(int s) {
            log.add("status " + s);
            status = s;
        }
        public void reset() {
            log.add("reset");
            status = 0;
        }
        long offered = Feature.VERSION_1.mask();
        long finalized;

        public long getFeatures() { return offered; }
        public void finalizeFeatures(long features) { finalized = features; }
        public int generation() { return 0; }
        public void readConfig(int offset, byte[] dst, int dstOffset, int length) { }
        public void writeConfig(int offset, byte[] src) { }
        public List<DriverQueue<Object>> findQueues(List<QueueSpec> specs) { return List.of(); }
        public void deleteQueues() { }
        public GuestAllocator dma() { return null; }
        public String busInfo() { return "test"; }
        public String interruptMode() { return "none"; }
    }

    record Driver(String name, boolean fails) implements VirtioDriver {
        public Set<DeviceType> idTable() { return Set.of(DeviceType.ENTROPY, DeviceType.NET); }
        public long features() { return -1L; }
        public void probe(VirtioDevice device) throws Exception {
            if (fails) {
                throw new Exception("probe refused by the test");
            }
            device.ready();
        }
        public void remove(VirtioDevice device) { }
    }

    @Test
    @Conformance({"basic-drv-2", "basic-drv-3"})
    void afterAFailedProbeTheNextDriverStartsFromAReset() {
        VirtioBus bus = new VirtioBus();
        bus.registerDriver(new Driver("failing", true));
        Recording ops = new Recording();
        VirtioDevice dev = bus.registerDevice(DeviceType.ENTROPY.id(), ops);
        assertThat(ops.status & DeviceStatus.FAILED).isNotZero();
        int failedAt = ops.log.size();

        assertThat(bus.bind(dev, new Driver("working", false))).isTrue();
        int ack = DeviceStatus.ACKNOWLEDGE;
        int drv = ack | DeviceStatus.DRIVER;
        assertThat(ops.log.subList(failedAt, ops.log.size())).containsExactly("reset", "status " + ack,
                "status " + drv, "status " + (drv | DeviceStatus.FEATURES_OK),
                "status " + (drv | DeviceStatus.FEATURES_OK | DeviceStatus.DRIVER_OK));
    }

    @Test
    @Conformance("basic-drv-6")
    void theBusNeverAcceptsANetFeatureWithoutTheControlQueueItNeeds() {
        VirtioBus bus = new VirtioBus();
        bus.registerDriver(new Driver("wants-everything", false));
        Recording ops = new Recording();
        ops.offered = Feature.maskOf(Feature.VERSION_1, Feature.NET_MAC, Feature.NET_CTRL_RX, Feature.NET_MQ,
                Feature.NET_CTRL_MAC_ADDR);
        bus.registerDevice(DeviceType.NET.id(), ops);
        assertThat(ops.finalized).isEqualTo(Feature.maskOf(Feature.VERSION_1, Feature.NET_MAC));
    }
}
