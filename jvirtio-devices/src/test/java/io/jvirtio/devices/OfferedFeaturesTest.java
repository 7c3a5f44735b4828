package io.jvirtio.devices;

import io.jvirtio.core.device.VirtioDeviceModel;
import io.jvirtio.core.spec.Conformance;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.core.spec.FeatureDependencies;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.MemoryBackend;
import io.jvirtio.devices.console.ConsoleDevice;
import io.jvirtio.devices.console.EchoBackend;
import io.jvirtio.devices.net.NetDevice;
import io.jvirtio.devices.net.VirtualSwitch;
import io.jvirtio.devices.rng.RngDevice;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** What every device model offers: VERSION_1, and no feature without the features it requires. */
class OfferedFeaturesTest {
    @Test
    @Conformance({"basic-dev-3", "basic-dev-10", "blk-dev-1"})
    void everyModelOffersVersion1AndNoFeatureWithoutItsRequirement() {
        VirtualSwitch sw = new VirtualSwitch();
        List<VirtioDeviceModel> models = List.of(new BlkDevice(new MemoryBackend(1 << 20, false)),
                new BlkDevice(new MemoryBackend(1 << 20, true), 4), new NetDevice(sw.port(), new byte[6], 1),
                new NetDevice(sw.port(), new byte[6], 4), new ConsoleDevice(new EchoBackend(), 80, 25), new RngDevice());
        for (VirtioDeviceModel m : models) {
            assertThat(Feature.VERSION_1.isSet(m.deviceFeatures())).as("%s offers VERSION_1", m.type()).isTrue();
            assertThat(FeatureDependencies.violation(m.type(), m.deviceFeatures())).as("%s", m.type()).isNull();
            if (m.type() == io.jvirtio.core.spec.DeviceType.BLOCK) {
                assertThat(Feature.BLK_FLUSH.isSet(m.deviceFeatures())).as("blk offers FLUSH").isTrue();
            }
        }
    }
}
