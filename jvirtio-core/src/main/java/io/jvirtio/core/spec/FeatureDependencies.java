package io.jvirtio.core.spec;

import java.util.List;

/**
 * Feature bits that are meaningful only together with others (VIRTIO 1.2 §5.1.3.1 for net). A driver MUST
 * NOT accept a feature whose requirement it did not accept (basic-drv-6), and a device MUST NOT offer one
 * without offering its requirement (basic-dev-3).
 */
public final class FeatureDependencies {
    /** {@code feature} requires at least one of {@code anyOf}. */
    record Rule(Feature feature, List<Feature> anyOf) {
    }

    private static final List<Rule> RULES = List.of(
            // §5.1.3.1 Feature bit requirements
            new Rule(Feature.NET_GUEST_TSO4, List.of(Feature.NET_GUEST_CSUM)),
            new Rule(Feature.NET_GUEST_TSO6, List.of(Feature.NET_GUEST_CSUM)),
            new Rule(Feature.NET_GUEST_ECN, List.of(Feature.NET_GUEST_TSO4, Feature.NET_GUEST_TSO6)),
            new Rule(Feature.NET_GUEST_UFO, List.of(Feature.NET_GUEST_CSUM)),
            new Rule(Feature.NET_HOST_TSO4, List.of(Feature.NET_CSUM)),
            new Rule(Feature.NET_HOST_TSO6, List.of(Feature.NET_CSUM)),
            new Rule(Feature.NET_HOST_ECN, List.of(Feature.NET_HOST_TSO4, Feature.NET_HOST_TSO6)),
            new Rule(Feature.NET_HOST_UFO, List.of(Feature.NET_CSUM)),
            new Rule(Feature.NET_HOST_USO, List.of(Feature.NET_CSUM)),
            new Rule(Feature.NET_GUEST_USO4, List.of(Feature.NET_GUEST_CSUM)),
            new Rule(Feature.NET_GUEST_USO6, List.of(Feature.NET_GUEST_CSUM)),
            new Rule(Feature.NET_CTRL_RX, List.of(Feature.NET_CTRL_VQ)),
            new Rule(Feature.NET_CTRL_VLAN, List.of(Feature.NET_CTRL_VQ)),
            new Rule(Feature.NET_GUEST_ANNOUNCE, List.of(Feature.NET_CTRL_VQ)),
            new Rule(Feature.NET_MQ, List.of(Feature.NET_CTRL_VQ)),
            new Rule(Feature.NET_CTRL_MAC_ADDR, List.of(Feature.NET_CTRL_VQ)),
            new Rule(Feature.NET_CTRL_GUEST_OFFLOADS, List.of(Feature.NET_CTRL_VQ)),
            new Rule(Feature.NET_CTRL_RX_EXTRA, List.of(Feature.NET_CTRL_RX)),
            new Rule(Feature.NET_RSS, List.of(Feature.NET_CTRL_VQ)),
            new Rule(Feature.NET_HASH_REPORT, List.of(Feature.NET_CTRL_VQ)));

    private FeatureDependencies() {
    }

    /** {@code features} without every bit of {@code type} whose requirement is missing, repeated until stable. */
    public static long prune(DeviceType type, long features) {
        long f = features;
        boolean changed = true;
        while (changed) {
            changed = false;
            for (Rule r : RULES) {
                if (r.feature().deviceType() == type && r.feature().isSet(f) && !anySet(r.anyOf(), f)) {
                    f &= ~r.feature().mask();
                    changed = true;
                }
            }
        }
        return f;
    }

    /** The first bit of {@code type} in {@code features} whose requirement is missing, or null. */
    public static String violation(DeviceType type, long features) {
        for (Rule r : RULES) {
            if (r.feature().deviceType() == type && r.feature().isSet(features) && !anySet(r.anyOf(), features)) {
                return r.feature() + " requires " + (r.anyOf().size() == 1 ? "" : "one of ") + r.anyOf();
            }
        }
        return null;
    }

    private static boolean anySet(List<Feature> fs, long features) {
        for (Feature f : fs) {
            if (f.isSet(features)) {
                return true;
            }
        }
        return false;
    }
}
