package io.jvirtio.transport.common;

import io.jvirtio.core.spec.DeviceStatus;

import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.util.function.Supplier;

/**
 * A driver's write of a non-zero value to {@code device_status} on a modern interface, the same on every
 * transport: illegal writes are ignored (§2.1.1, §3.1.1), FEATURES_OK stays clear when the device cannot
 * work with the driver's features (§2.2.2), DEVICE_NEEDS_RESET is kept.
 *
 * @param status   what the register holds afterwards
 * @param activate true when this write completed DRIVER_OK: the device starts now
 */
public record StatusRegister(int status, boolean activate) {
    private static final Logger LOG = System.getLogger(StatusRegister.class.getName());

    /**
     * @param featuresProblem why the accepted features cannot work, or null; asked only when the write
     *                        adds FEATURES_OK
     */
    public static StatusRegister write(String device, int current, int next, Supplier<String> featuresProblem) {
        if (!DeviceStatus.isLegalDriverWrite(current, next)) {
            LOG.log(Level.WARNING, "{0}: ignoring illegal status write {1} over {2}", device,
                    DeviceStatus.describe(next), DeviceStatus.describe(current));
            return new StatusRegister(current, false);
        }
        int added = next & ~current;
        if ((added & DeviceStatus.FEATURES_OK) != 0) {
            String problem = featuresProblem.get();
            if (problem != null) {
                // The driver re-reads the status, sees FEATURES_OK clear, and gives up.
                LOG.log(Level.INFO, "{0}: FEATURES_OK refused: {1}", device, problem);
                next &= ~(DeviceStatus.FEATURES_OK | DeviceStatus.DRIVER_OK);
                added &= ~(DeviceStatus.FEATURES_OK | DeviceStatus.DRIVER_OK);
            }
        }
        return new StatusRegister(next | (current & DeviceStatus.DEVICE_NEEDS_RESET),
                (added & DeviceStatus.DRIVER_OK) != 0 && (next & DeviceStatus.FAILED) == 0);
    }
}
