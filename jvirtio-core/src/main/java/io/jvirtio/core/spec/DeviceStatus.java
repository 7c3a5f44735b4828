package io.jvirtio.core.spec;

import java.util.StringJoiner;

/**
 * The device status field, VIRTIO 1.2 §2.1, and the order in which a driver sets its bits (§3.1.1).
 */
public final class DeviceStatus {
    public static final int ACKNOWLEDGE = 1;
    public static final int DRIVER = 2;
    public static final int DRIVER_OK = 4;
    public static final int FEATURES_OK = 8;
    public static final int DEVICE_NEEDS_RESET = 64;
    public static final int FAILED = 128;

    private static final int KNOWN = ACKNOWLEDGE | DRIVER | DRIVER_OK | FEATURES_OK | DEVICE_NEEDS_RESET | FAILED;

    private DeviceStatus() {
    }

    /**
     * Whether a driver may write {@code next} over {@code current}.
     * <ul>
     *   <li>Writing 0 is a reset and is always allowed (§2.4).</li>
     *   <li>The driver MUST NOT clear a status bit (§2.1.1), and DEVICE_NEEDS_RESET is the device's to set.</li>
     *   <li>FAILED may be set at any time (§2.1).</li>
     *   <li>Otherwise the bits come in the order of §3.1.1: ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK —
     *       each only once the earlier ones are set.</li>
     * </ul>
     */
    public static boolean isLegalDriverWrite(int current, int next) {
        if (next == 0) {
            return true;
        }
        if ((next & ~KNOWN & 0xff) != 0 || (current & ~next & ~DEVICE_NEEDS_RESET) != 0) {
            return false;
        }
        int added = next & ~current;
        if ((added & DEVICE_NEEDS_RESET) != 0) {
            return false;
        }
        if ((next & FAILED) != 0) {
            return true;
        }
        if ((next & DRIVER) != 0 && (next & ACKNOWLEDGE) == 0) {
            return false;
        }
        if ((next & FEATURES_OK) != 0 && (next & DRIVER) == 0) {
            return false;
        }
        return (next & DRIVER_OK) == 0 || (next & FEATURES_OK) != 0;
    }

    /** {@code "ACKNOWLEDGE|DRIVER|FEATURES_OK"}, as tools print it. */
    public static String describe(int status) {
        if (status == 0) {
            return "RESET";
        }
        StringJoiner j = new StringJoiner("|");
        if ((status & ACKNOWLEDGE) != 0) j.add("ACKNOWLEDGE");
        if ((status & DRIVER) != 0) j.add("DRIVER");
        if ((status & FEATURES_OK) != 0) j.add("FEATURES_OK");
        if ((status & DRIVER_OK) != 0) j.add("DRIVER_OK");
        if ((status & DEVICE_NEEDS_RESET) != 0) j.add("DEVICE_NEEDS_RESET");
        if ((status & FAILED) != 0) j.add("FAILED");
        int unknown = status & ~KNOWN;
        if (unknown != 0) j.add("0x" + Integer.toHexString(unknown));
        return j.toString();
    }
}
