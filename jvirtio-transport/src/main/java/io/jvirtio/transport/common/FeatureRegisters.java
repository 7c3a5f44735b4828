package io.jvirtio.transport.common;

/**
 * The feature registers both modern transports present the same way (virtio-pci's device_feature_select,
 * device_feature, driver_feature_select, driver_feature, §4.1.4.3; virtio-mmio's DeviceFeaturesSel,
 * DeviceFeatures, DriverFeaturesSel, DriverFeatures, §4.2.2): a select register chooses which 32 bits of the
 * 64 a window shows, and selects beyond 1 show 0. The driver's bits are written a window at a time and fixed
 * once FEATURES_OK is set. Not thread-safe: the transport calls it under its own lock.
 */
public final class FeatureRegisters {
    private int deviceSelect;
    private int driverSelect;
    private long driver;

    public int deviceSelect() {
        return deviceSelect;
    }

    public void selectDevice(int select) {
        deviceSelect = select;
    }

    /** The selected 32 bits of {@code offered} (0 beyond bit 63). */
    public long deviceWindow(long offered) {
        return deviceSelect < 2 ? (offered >>> (32 * deviceSelect)) & 0xffffffffL : 0;
    }

    public int driverSelect() {
        return driverSelect;
    }

    public void selectDriver(int select) {
        driverSelect = select;
    }

    /** The selected 32 bits of the driver's features. */
    public long driverWindow() {
        return driverSelect < 2 ? (driver >>> (32 * driverSelect)) & 0xffffffffL : 0;
    }

    /** The driver writes the selected 32 bits; ignored once FEATURES_OK is set ({@code featuresOk}). */
    public void writeDriverWindow(long value, boolean featuresOk) {
        if (!featuresOk && driverSelect < 2) {
            int shift = 32 * driverSelect;
            driver = (driver & ~(0xffffffffL << shift)) | ((value & 0xffffffffL) << shift);
        }
    }

    /** A legacy interface's 32 feature bits, written whole. */
    public void writeLegacy(long value) {
        driver = value & 0xffffffffL;
    }

    /** The driver's 64 feature bits as written so far. */
    public long driver() {
        return driver;
    }

    /** Device reset: both selects and the driver's features back to 0. */
    public void reset() {
        deviceSelect = 0;
        driverSelect = 0;
        driver = 0;
    }
}
