package io.jvirtio.core.spec;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;

class FeatureDependenciesTest {
    static final long CTRL_DEPENDENTS = Feature.maskOf(Feature.NET_CTRL_RX, Feature.NET_MQ, Feature.NET_CTRL_MAC_ADDR,
            Feature.NET_CTRL_VLAN, Feature.NET_GUEST_ANNOUNCE, Feature.NET_CTRL_RX_EXTRA);

    @Test
    @Conformance("basic-drv-6")
    void aDriverAcceptsNoFeatureWhoseRequirementItDidNotAccept() throws Exception {
        long offered = Feature.VERSION_1.mask() | CTRL_DEPENDENTS | Feature.NET_MAC.mask()
                | Feature.maskOf(Feature.NET_GUEST_TSO4, Feature.NET_GUEST_ECN, Feature.NET_HOST_ECN, Feature.NET_HOST_TSO6);
        long accepted = FeatureNegotiation.negotiate(DeviceType.NET, offered, -1L, true);
        assertThat(accepted).isEqualTo(Feature.VERSION_1.mask() | Feature.NET_MAC.mask());
        // with the requirement there, the dependents stay (and CTRL_RX_EXTRA needs CTRL_RX in turn)
        long withCtrl = FeatureNegotiation.negotiate(DeviceType.NET, offered | Feature.NET_CTRL_VQ.mask()
                | Feature.NET_CSUM.mask(), -1L & ~Feature.NET_CTRL_RX.mask(), true);
        assertThat(withCtrl & CTRL_DEPENDENTS).isEqualTo(CTRL_DEPENDENTS & ~Feature.maskOf(Feature.NET_CTRL_RX,
                Feature.NET_CTRL_RX_EXTRA));
        assertThat(Feature.NET_HOST_ECN.isSet(withCtrl)).as("HOST_ECN: HOST_TSO6 and CSUM accepted").isTrue();
        // bits of other device types with the same numbers are left alone
        assertThat(FeatureNegotiation.negotiate(DeviceType.BLOCK, offered, -1L, true)).isEqualTo(offered);
    }

    @Test
    void violationNamesTheMissingRequirement() {
        assertThat(FeatureDependencies.violation(DeviceType.NET, Feature.NET_MQ.mask())).contains("NET_MQ")
                .contains("NET_CTRL_VQ");
        assertThat(FeatureDependencies.violation(DeviceType.NET, Feature.maskOf(Feature.NET_MQ, Feature.NET_CTRL_VQ))).isNull();
    }
}
