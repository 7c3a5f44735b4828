package io.jvirtio.transport.mmio;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.bus.VirtioDevice;

import java.lang.System.Logger;
import java.lang.System.Logger.Level;

import static io.jvirtio.transport.mmio.VirtioMmio.*;

/**
 * The driver side of virtio-mmio (Linux {@code virtio_mmio}): given where a device's registers are and
 * which interrupt it uses (as a device tree would say), checks the magic value and version (§4.2.3.1.1),
 * skips an empty slot (device id 0), and registers the device on the bus.
 */
public final class VirtioMmioDriver {
    private static final Logger LOG = System.getLogger(VirtioMmioDriver.class.getName());

    private final MmioHost host;
    private final VirtioBus bus;

    public VirtioMmioDriver(MmioHost host, VirtioBus bus) {
        this.host = host;
        this.bus = bus;
    }

    /** Probes the device at {@code base}; returns it, or null when there is none or it is not usable. */
    public VirtioDevice probe(long base, int irq) {
        int magic = (int) host.mmioRead(base + MAGIC_VALUE, 4);
        if (magic != MAGIC) {
            LOG.log(Level.WARNING, "0x{0}: no virtio-mmio magic (read 0x{1})", Long.toHexString(base), Integer.toHexString(magic));
            return null;
        }
        int version = (int) host.mmioRead(base + VERSION, 4);
        if (version != 2) {
            LOG.log(Level.WARNING, "0x{0}: virtio-mmio version {1} is not supported (need 2)", Long.toHexString(base), version);
            return null;
        }
        int id = (int) host.mmioRead(base + DEVICE_ID, 4);
        if (id == 0) {
            return null; // §4.2.3.1.1: a placeholder with no device behind it
        }
        MmioConfigOps ops = new MmioConfigOps(host, base, irq);
        VirtioDevice dev = bus.registerDevice(id, ops);
        ops.attach(bus, dev);
        return dev;
    }
}
