package io.jvirtio.bus;

import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.spec.DeviceStatus;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.core.spec.Feature;

import java.util.List;

/**
 * A virtio device as drivers see it (Linux {@code struct virtio_device}): its id, the transport's
 * {@link ConfigOps}, the negotiated features and the driver bound to it.
 */
public final class VirtioDevice {
    /** How often a config read is retried while {@code config_generation} keeps changing (§2.5.1). */
    static final int CONFIG_RETRIES = 1000;

    private final int index;
    private final int deviceId;
    private final ConfigOps config;
    private volatile long features;
    private volatile VirtioDriver driver;
    private volatile List<DriverQueue<Object>> queues = List.of();
    private volatile Object driverData;

    VirtioDevice(int index, int deviceId, ConfigOps config) {
        this.index = index;
        this.deviceId = deviceId;
        this.config = config;
    }

    /** The bus's name for it, as in {@code /sys/bus/virtio/devices/virtio0}. */
    public String name() {
        return "virtio" + index;
    }

    /** The virtio device id (§5). */
    public int deviceId() {
        return deviceId;
    }

    public DeviceType type() {
        return DeviceType.of(deviceId).orElse(null);
    }

    public ConfigOps config() {
        return config;
    }

    /** Negotiated features; valid from probe on. */
    public long features() {
        return features;
    }

    void setFeatures(long features) {
        this.features = features;
    }

    public boolean hasFeature(Feature f) {
        return f.isSet(features);
    }

    public VirtioDriver driver() {
        return driver;
    }

    void setDriver(VirtioDriver driver) {
        this.driver = driver;
    }

    /** Driver-private state (Linux {@code dev->priv}). */
    public Object driverData() {
        return driverData;
    }

    public void setDriverData(Object data) {
        this.driverData = data;
    }

    public int status() {
        return config.getStatus();
    }

    /**
     * Finds this device's queues through the transport and remembers them so the bus can delete them if
     * the driver does not.
     */
    public List<DriverQueue<Object>> findQueues(List<QueueSpec> specs) throws TransportException {
        List<DriverQueue<Object>> qs = config.findQueues(specs);
        queues = qs;
        return qs;
    }

    public List<DriverQueue<Object>> queues() {
        return queues;
    }

    /** Resets the device and deletes its queues (what a driver's remove does). */
    public void resetAndDeleteQueues() {
        config.reset();
        if (!queues.isEmpty()) {
            config.deleteQueues();
            queues = List.of();
        }
    }

    /** Sets DRIVER_OK (Linux {@code virtio_device_ready}): the device may now use the queues. */
    public void ready() {
        int s = config.getStatus();
        if ((s & DeviceStatus.DRIVER_OK) == 0) {
            config.setStatus(s | DeviceStatus.DRIVER_OK);
        }
    }

    /**
     * Reads device configuration consistently: repeats until {@code config_generation} is the same before
     * and after the read (§2.5.1, Linux {@code virtio_cread_bytes}). A device that changes it on every
     * read is broken; after {@value #CONFIG_RETRIES} tries this gives up.
     */
    public void readConfig(int offset, byte[] dst) throws TransportException {
        for (int i = 0; i < CONFIG_RETRIES; i++) {
            int before = config.generation();
            config.readConfig(offset, dst, 0, dst.length);
            if (config.generation() == before) {
                return;
            }
        }
        throw new TransportException(name() + ": config_generation changed on each of " + CONFIG_RETRIES + " reads");
    }

    /** A little-endian field of {@code width} bytes (1, 2, 4, 8), read with the generation loop. */
    public long readConfigField(int offset, int width) throws TransportException {
        byte[] b = new byte[width];
        readConfig(offset, b);
        long v = 0;
        for (int i = 0; i < width; i++) {
            v |= (b[i] & 0xffL) << (8 * i);
        }
        return v;
    }

    /**
     * Several fields read consistently together (one generation loop around all of them), each with its own
     * width: {@code offsetsAndWidths} is offset, width, offset, width, ...
     */
    public long[] readConfigFields(int... offsetsAndWidths) throws TransportException {
        long[] v = new long[offsetsAndWidths.length / 2];
        for (int i = 0; i < CONFIG_RETRIES; i++) {
            int before = config.generation();
            for (int f = 0; f < v.length; f++) {
                byte[] b = new byte[offsetsAndWidths[2 * f + 1]];
                config.readConfig(offsetsAndWidths[2 * f], b, 0, b.length);
                v[f] = 0;
                for (int k = 0; k < b.length; k++) {
                    v[f] |= (b[k] & 0xffL) << (8 * k);
                }
            }
            if (config.generation() == before) {
                return v;
            }
        }
        throw new TransportException(name() + ": config_generation changed on each of " + CONFIG_RETRIES + " reads");
    }

    @Override
    public String toString() {
        DeviceType t = type();
        return name() + " (" + (t != null ? t.name().toLowerCase() : "id " + deviceId) + ", " + config.busInfo() + ")";
    }
}
