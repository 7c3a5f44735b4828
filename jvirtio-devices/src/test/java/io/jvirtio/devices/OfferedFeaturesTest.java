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
    @Conformance({"basic-dev-3", "basic-dev-10", "blk-dev-1", "basic-dev-13"})
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
                assertThat(Feature.IN_ORDER.isSet(m.deviceFeatures()))
                        .as("blk completes requests as the disk does: no IN_ORDER (basic-dev-13)").isFalse();
            } else {
                assertThat(Feature.IN_ORDER.isSet(m.deviceFeatures())).as("%s completes in order", m.type()).isTrue();
            }
        }
    }

    /**
     * The transport features jvirtio implements (§6); every other one — ACCESS_PLATFORM, RING_RESET … — would
     * change how the driver lays out or drives the rings. IN_ORDER only where every queue completes in order.
     */
    static final long TRANSPORT_IMPLEMENTED = Feature.maskOf(Feature.VERSION_1, Feature.INDIRECT_DESC, Feature.EVENT_IDX,
            Feature.RING_PACKED, Feature.IN_ORDER);

    @Test
    @Conformance("basic-dev-5")
    void noModelOffersAFeatureItDoesNotImplement() {
        VirtualSwitch sw = new VirtualSwitch();
        List<VirtioDeviceModel> models = List.of(new BlkDevice(new MemoryBackend(1 << 20, false)),
                new BlkDevice(new MemoryBackend(1 << 20, true), 4), new NetDevice(sw.port(), new byte[6], 1),
                new NetDevice(sw.port(), new byte[6], 4), new ConsoleDevice(new EchoBackend(), 80, 25), new RngDevice());
        for (VirtioDeviceModel m : models) {
            long offered = m.deviceFeatures();
            for (int bit = 0; bit < 64; bit++) {
                if ((offered & (1L << bit)) == 0) {
                    continue;
                }
                Feature f = known(m.type(), bit);
                assertThat(f).as("%s offers bit %d, which is no feature of its type", m.type(), bit).isNotNull();
                assertThat(f.legacyOnly()).as("%s offers legacy-only %s", m.type(), f).isFalse();
                if (f.deviceType() == null) {
                    assertThat(TRANSPORT_IMPLEMENTED & f.mask()).as("%s offers %s, not implemented", m.type(), f)
                            .isNotZero();
                }
            }
            // and it takes everything it offers: a driver accepting it all is not refused at FEATURES_OK
            assertThat(m.acceptFeatures(offered)).as("%s accepts what it offers", m.type()).isTrue();
            m.reset();
        }
        // RO is offered exactly when the store refuses writes
        assertThat(Feature.BLK_RO.isSet(models.get(0).deviceFeatures())).isFalse();
        assertThat(Feature.BLK_RO.isSet(models.get(1).deviceFeatures())).isTrue();
    }

    private static Feature known(io.jvirtio.core.spec.DeviceType type, int bit) {
        for (Feature f : Feature.values()) {
            if (f.bit() == bit && (f.deviceType() == null || f.deviceType() == type)) {
                return f;
            }
        }
        return null;
    }
}
