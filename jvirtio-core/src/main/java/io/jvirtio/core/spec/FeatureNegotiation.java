package io.jvirtio.core.spec;

/**
 * Feature negotiation, VIRTIO 1.2 §2.2 and §3.1.1 steps 4–6: the driver accepts a subset of what the
 * device offers, and the device may still refuse it at FEATURES_OK.
 */
public final class FeatureNegotiation {
    private FeatureNegotiation() {
    }

    /** Why a negotiation cannot succeed. */
    public static final class FeatureNegotiationException extends Exception {
        public FeatureNegotiationException(String message) {
            super(message);
        }
    }

    /**
     * The driver's side: offered ∩ wanted. For a modern (non-legacy) driver {@link Feature#VERSION_1}
     * must be offered and is always accepted, since a modern driver MUST NOT operate a device that lacks it
     * (§6.1: "A driver MUST accept VIRTIO_F_VERSION_1 if it is offered").
     *
     * @param offered what the device offers
     * @param wanted  what the driver understands and would like
     * @param modern  whether the driver uses the modern interface
     */
    public static long negotiate(long offered, long wanted, boolean modern) throws FeatureNegotiationException {
        return negotiate(null, offered, wanted, modern);
    }

    /**
     * As {@link #negotiate(long, long, boolean)} for a device of {@code type}, leaving out every feature
     * whose requirement is not accepted (basic-drv-6, e.g. net CTRL_RX without CTRL_VQ).
     */
    public static long negotiate(DeviceType type, long offered, long wanted, boolean modern)
            throws FeatureNegotiationException {
        return FeatureDependencies.prune(type, accept(offered, wanted, modern));
    }

    private static long accept(long offered, long wanted, boolean modern) throws FeatureNegotiationException {
        if (modern) {
            if (!Feature.VERSION_1.isSet(offered)) {
                throw new FeatureNegotiationException("device does not offer VIRTIO_F_VERSION_1 (offered 0x"
                        + Long.toHexString(offered) + "); a modern driver cannot drive it");
            }
            return (offered & wanted) | Feature.VERSION_1.mask();
        }
        return offered & wanted & 0xFFFF_FFFFL & ~Feature.VERSION_1.mask();
    }

    /**
     * The device's side of FEATURES_OK (§2.2.2): a device MUST NOT accept a driver's features it did not
     * offer. Returns the problem, or null when {@code accepted} is acceptable.
     */
    public static String checkAccepted(long offered, long accepted) {
        long extra = accepted & ~offered;
        if (extra != 0) {
            return "driver accepted features the device did not offer: 0x" + Long.toHexString(extra);
        }
        return null;
    }
}
