package io.jvirtio.bus;

import io.jvirtio.core.spec.DeviceStatus;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.core.spec.FeatureNegotiation;

import java.lang.System.Logger.Level;
import java.lang.System.Logger;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The virtio bus: matches drivers to devices by device id and runs the initialisation sequence of
 * VIRTIO 1.2 §3.1.1 — reset, ACKNOWLEDGE, DRIVER, feature negotiation, FEATURES_OK (re-read: the device
 * may refuse), the driver's probe, DRIVER_OK — and FAILED when any step fails.
 */
public final class VirtioBus {
    /** Ring and transport features the bus negotiates on every driver's behalf (Linux vring_transport_features). */
    public static final long TRANSPORT_FEATURES =
            Feature.maskOf(Feature.VERSION_1, Feature.INDIRECT_DESC, Feature.EVENT_IDX, Feature.RING_PACKED,
                    Feature.IN_ORDER);

    private static final Logger LOG = System.getLogger(VirtioBus.class.getName());

    private final List<VirtioDriver> drivers = new CopyOnWriteArrayList<>();
    private final List<VirtioDevice> devices = new CopyOnWriteArrayList<>();
    private final List<String> events = new CopyOnWriteArrayList<>();
    private final AtomicInteger nextIndex = new AtomicInteger();

    /**
     * A transport announces a device (Linux {@code register_virtio_device}): it is reset, acknowledged,
     * and probed by the first matching driver.
     */
    public synchronized VirtioDevice registerDevice(int deviceId, ConfigOps ops) {
        VirtioDevice dev = new VirtioDevice(nextIndex.getAndIncrement(), deviceId, ops);
        devices.add(dev);
        try {
            ops.reset();
        } catch (RuntimeException e) {
            log(dev + ": registered, not driven: " + e.getMessage());
            LOG.log(Level.WARNING, dev + ": not driven: " + e.getMessage());
            return dev;
        }
        ops.setStatus(DeviceStatus.ACKNOWLEDGE);
        log(dev + ": registered");
        for (VirtioDriver d : drivers) {
            if (tryProbe(d, dev)) {
                break;
            }
        }
        return dev;
    }

    /** Hot-unplug: the bound driver is removed first, then the device disappears from the bus. */
    public synchronized void unregisterDevice(VirtioDevice dev) {
        if (dev.driver() != null) {
            unbind(dev);
        }
        dev.resetAndDeleteQueues();
        devices.remove(dev);
        log(dev + ": unregistered");
    }

    public synchronized void registerDriver(VirtioDriver driver) {
        drivers.add(driver);
        for (VirtioDevice dev : devices) {
            if (dev.driver() == null) {
                tryProbe(driver, dev);
            }
        }
    }

    public synchronized void unregisterDriver(VirtioDriver driver) {
        for (VirtioDevice dev : devices) {
            if (dev.driver() == driver) {
                unbind(dev);
            }
        }
        drivers.remove(driver);
    }

    /** Unbinds {@code dev} from its driver, leaving it acknowledged and free for another driver. */
    public synchronized void unbind(VirtioDevice dev) {
        VirtioDriver d = dev.driver();
        if (d == null) {
            return;
        }
        d.remove(dev);
        dev.resetAndDeleteQueues();
        dev.setDriver(null);
        dev.config().setStatus(DeviceStatus.ACKNOWLEDGE);
        log(dev + ": unbound from " + d.name());
    }

    /** Binds {@code dev} to {@code driver} (after {@link #unbind}): a rebind. */
    public synchronized boolean bind(VirtioDevice dev, VirtioDriver driver) {
        if (dev.driver() != null) {
            throw new IllegalStateException(dev + " is bound to " + dev.driver().name());
        }
        return tryProbe(driver, dev);
    }

    /** The transport saw a configuration change interrupt. */
    public void configChanged(VirtioDevice dev) {
        VirtioDriver d = dev.driver();
        int status = dev.status();
        if (d != null && (status & DeviceStatus.DEVICE_NEEDS_RESET) != 0) {
            // §2.1.2: a device that needs a reset says so with a configuration change notification.
            log(dev + ": device needs reset");
            d.needsReset(dev);
        } else if (d != null && (status & DeviceStatus.DRIVER_OK) != 0) {
            d.configChanged(dev);
        }
    }

    public List<VirtioDevice> devices() {
        return List.copyOf(devices);
    }

    /** What happened on the bus, in order, for tools and tests ({@code "virtio0 (block, ...): probed by virtio_blk"}). */
    public List<String> events() {
        return new ArrayList<>(events);
    }

    private boolean tryProbe(VirtioDriver driver, VirtioDevice dev) {
        if (dev.type() == null || !driver.idTable().contains(dev.type())) {
            return false;
        }
        ConfigOps ops = dev.config();
        int status = DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER;
        try {
            if (ops.getStatus() != DeviceStatus.ACKNOWLEDGE) {
                // §3.1.1 (basic-drv-3): after FAILED, or anything else left by an earlier attempt, start over
                // from a reset; status bits are never cleared any other way (basic-drv-2).
                ops.reset();
                ops.setStatus(DeviceStatus.ACKNOWLEDGE);
            }
            ops.setStatus(status);
            long offered = ops.getFeatures();
            long wanted = driver.features() | ops.transportFeatures();
            // A legacy interface (§6.1) has 32 feature bits and no FEATURES_OK; a modern one without
            // VERSION_1 cannot be driven at all (negotiate refuses it, as Linux's virtio_pci_modern does).
            boolean modern = ops.modern();
            long accepted = FeatureNegotiation.negotiate(dev.type(), offered, wanted, modern);
            ops.finalizeFeatures(accepted);
            if (modern) {
                ops.setStatus(status | DeviceStatus.FEATURES_OK);
                // §3.1.1 step 6: re-read; a device that cannot work with these features leaves the bit clear.
                if ((ops.getStatus() & DeviceStatus.FEATURES_OK) == 0) {
                    throw new TransportException("device refused features " + Feature.describe(dev.type(), accepted));
                }
            }
            dev.setFeatures(accepted);
            dev.setDriver(driver);
            driver.probe(dev);
            dev.ready();
            log(dev + ": probed by " + driver.name() + ", features " + Feature.describe(dev.type(), accepted));
            return true;
        } catch (Exception e) {
            dev.setDriver(null);
            try {
                dev.resetAndDeleteQueues();
            } catch (RuntimeException resetFailed) {
                e.addSuppressed(resetFailed);
            } finally {
                ops.setStatus(DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FAILED);
            }
            log(dev + ": probe by " + driver.name() + " failed: " + e.getMessage());
            LOG.log(Level.WARNING, dev + ": probe by " + driver.name() + " failed", e);
            return false;
        }
    }

    private void log(String event) {
        events.add(event);
        LOG.log(Level.DEBUG, event);
    }
}
