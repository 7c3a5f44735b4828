package io.jvirtio.core.spec;

import org.junit.jupiter.api.Test;

import static io.jvirtio.core.spec.DeviceStatus.ACKNOWLEDGE;
import static io.jvirtio.core.spec.DeviceStatus.DEVICE_NEEDS_RESET;
import static io.jvirtio.core.spec.DeviceStatus.DRIVER;
import static io.jvirtio.core.spec.DeviceStatus.DRIVER_OK;
import static io.jvirtio.core.spec.DeviceStatus.FAILED;
import static io.jvirtio.core.spec.DeviceStatus.FEATURES_OK;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class SpecTest {

    @Test
    @io.jvirtio.core.spec.Conformance({"basic-drv-1", "basic-drv-2"})
    void statusFollowsTheInitialisationOrder() {
        int a = ACKNOWLEDGE, ad = a | DRIVER, adf = ad | FEATURES_OK, all = adf | DRIVER_OK;
        assertThat(DeviceStatus.isLegalDriverWrite(0, a)).isTrue();
        assertThat(DeviceStatus.isLegalDriverWrite(a, ad)).isTrue();
        assertThat(DeviceStatus.isLegalDriverWrite(ad, adf)).isTrue();
        assertThat(DeviceStatus.isLegalDriverWrite(adf, all)).isTrue();
        // skipping a step
        assertThat(DeviceStatus.isLegalDriverWrite(0, DRIVER)).isFalse();
        assertThat(DeviceStatus.isLegalDriverWrite(a, a | FEATURES_OK)).isFalse();
        assertThat(DeviceStatus.isLegalDriverWrite(ad, ad | DRIVER_OK)).isFalse();
        // §2.1.1: the driver MUST NOT clear a bit
        assertThat(DeviceStatus.isLegalDriverWrite(adf, ad)).isFalse();
        // only the device sets DEVICE_NEEDS_RESET
        assertThat(DeviceStatus.isLegalDriverWrite(all, all | DEVICE_NEEDS_RESET)).isFalse();
        // FAILED at any point, reset at any point
        assertThat(DeviceStatus.isLegalDriverWrite(ad, ad | FAILED)).isTrue();
        assertThat(DeviceStatus.isLegalDriverWrite(all | DEVICE_NEEDS_RESET, 0)).isTrue();
        assertThat(DeviceStatus.isLegalDriverWrite(0, 0x10)).isFalse();
        assertThat(DeviceStatus.describe(adf)).isEqualTo("ACKNOWLEDGE|DRIVER|FEATURES_OK");
    }

    @Test
    void featureNamesFollowTheSpec() {
        assertThat(Feature.VERSION_1.specName()).isEqualTo("VIRTIO_F_VERSION_1");
        assertThat(Feature.INDIRECT_DESC.specName()).isEqualTo("VIRTIO_F_INDIRECT_DESC");
        assertThat(Feature.BLK_FLUSH.specName()).isEqualTo("VIRTIO_BLK_F_FLUSH");
        assertThat(Feature.NET_MRG_RXBUF.bit()).isEqualTo(15);
        long bits = Feature.maskOf(Feature.VERSION_1, Feature.EVENT_IDX) | 1L << 9;
        assertThat(Feature.describe(DeviceType.BLOCK, bits))
                .isEqualTo("VIRTIO_BLK_F_FLUSH VIRTIO_F_EVENT_IDX VIRTIO_F_VERSION_1");
        assertThat(Feature.describe(DeviceType.NET, 1L << 9)).isEqualTo("VIRTIO_NET_F_GUEST_ECN");
        assertThat(DeviceType.of(2)).contains(DeviceType.BLOCK);
        assertThat(DeviceType.of(7)).isEmpty();
    }

    @Test
    @io.jvirtio.core.spec.Conformance({"basic-drv-5", "basic-drv-7", "basic-drv-9", "basic-drv-20"})
    void negotiationIsTheIntersectionAndModernNeedsVersion1() throws Exception {
        long offered = Feature.maskOf(Feature.VERSION_1, Feature.EVENT_IDX, Feature.BLK_FLUSH);
        long wanted = Feature.maskOf(Feature.EVENT_IDX, Feature.INDIRECT_DESC);
        assertThat(FeatureNegotiation.negotiate(offered, wanted, true))
                .isEqualTo(Feature.maskOf(Feature.VERSION_1, Feature.EVENT_IDX));
        assertThatThrownBy(() -> FeatureNegotiation.negotiate(Feature.EVENT_IDX.mask(), -1L, true))
                .isInstanceOf(FeatureNegotiation.FeatureNegotiationException.class)
                .hasMessageContaining("VIRTIO_F_VERSION_1");
        assertThat(FeatureNegotiation.negotiate(offered, -1L, false))
                .isEqualTo(Feature.maskOf(Feature.EVENT_IDX, Feature.BLK_FLUSH));
        assertThat(FeatureNegotiation.checkAccepted(offered, Feature.INDIRECT_DESC.mask())).contains("0x10000000");
        assertThat(FeatureNegotiation.checkAccepted(offered, Feature.EVENT_IDX.mask())).isNull();
    }
}
