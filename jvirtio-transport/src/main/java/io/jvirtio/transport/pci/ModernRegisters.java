package io.jvirtio.transport.pci;

import io.jvirtio.bus.TransportException;
import io.jvirtio.core.queue.Doorbell;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.core.queue.RingAddresses;
import io.jvirtio.core.queue.split.SplitLayout;

import static io.jvirtio.transport.pci.VirtioPciCap.*;

/** The modern virtio-pci structures (§4.1.4.3–§4.1.4.6), reached by MMIO through their capabilities. */
final class ModernRegisters implements Registers {
    private final PciHost host;
    private final VirtioPciDriver.Region common;
    private final VirtioPciDriver.Region isr;
    private final VirtioPciDriver.Region device;
    private final VirtioPciDriver.Region notify;
    private final int notifyMultiplier;

    ModernRegisters(PciHost host, VirtioPciDriver.Region common, VirtioPciDriver.Region isr,
                    VirtioPciDriver.Region device, VirtioPciDriver.Region notify, int notifyMultiplier) {
        this.host = host;
        this.common = common;
        this.isr = isr;
        this.device = device;
        this.notify = notify;
        this.notifyMultiplier = notifyMultiplier;
    }

    private long read(int reg, int size) {
        return host.mmioRead(common.address() + reg, size);
    }

    private void write(int reg, int size, long value) {
        host.mmioWrite(common.address() + reg, size, value);
    }

    /** §4.1.3.1: 64-bit fields are written as two 32-bit halves, low first. */
    private void write32x2(int reg, long value) {
        write(reg, 4, value & 0xffffffffL);
        write(reg + 4, 4, value >>> 32);
    }

    @Override
    public int status() {
        return (int) read(DEVICE_STATUS, 1);
    }

    @Override
    public void status(int status) {
        write(DEVICE_STATUS, 1, status);
    }

    @Override
    public long deviceFeatures() {
        write(DEVICE_FEATURE_SELECT, 4, 0);
        long lo = read(DEVICE_FEATURE, 4);
        write(DEVICE_FEATURE_SELECT, 4, 1);
        return (read(DEVICE_FEATURE, 4) << 32) | lo;
    }

    /** The features the driver accepted: NOTIFICATION_DATA widens the doorbell to 32 bits. */
    private long accepted;

    @Override
    public void driverFeatures(long features) {
        accepted = features;
        write(DRIVER_FEATURE_SELECT, 4, 0);
        write(DRIVER_FEATURE, 4, features & 0xffffffffL);
        write(DRIVER_FEATURE_SELECT, 4, 1);
        write(DRIVER_FEATURE, 4, features >>> 32);
    }

    @Override
    public int generation() {
        return (int) read(CONFIG_GENERATION, 1);
    }

    @Override
    public void readConfig(int offset, byte[] dst, int dstOffset, int length) {
        if (device == null || offset < 0 || offset + length > device.length()) {
            throw new IndexOutOfBoundsException("config [" + offset + ", +" + length + ") outside the device config");
        }
        // §4.1.3.1: one access of the field's width; 64-bit fields as two 32-bit reads.
        int done = 0;
        while (done < length) {
            int at = offset + done;
            int w = io.jvirtio.transport.common.ConfigAccess.width(length);
            long v = host.mmioRead(device.address() + at, w);
            for (int i = 0; i < w; i++) {
                dst[dstOffset + done + i] = (byte) (v >>> (8 * i));
            }
            done += w;
        }
    }

    @Override
    public void writeConfig(int offset, byte[] src) {
        if (device == null || offset < 0 || offset + src.length > device.length()) {
            throw new IndexOutOfBoundsException("config [" + offset + ", +" + src.length + ") outside the device config");
        }
        if (src.length == 1 || src.length == 2 || src.length == 4) {
            long v = 0;
            for (int i = 0; i < src.length; i++) {
                v |= (src[i] & 0xffL) << (8 * i);
            }
            host.mmioWrite(device.address() + offset, src.length, v);
        } else {
            for (int i = 0; i < src.length; i++) {
                host.mmioWrite(device.address() + offset + i, 1, src[i] & 0xff);
            }
        }
    }

    @Override
    public int numQueues() {
        return (int) read(NUM_QUEUES, 2);
    }

    @Override
    public void selectQueue(int queue) {
        write(QUEUE_SELECT, 2, queue);
    }

    @Override
    public int queueMaxSize() {
        return (int) read(QUEUE_SIZE, 2);
    }

    @Override
    public SplitLayout layout(int size) {
        return SplitLayout.modern(size);
    }

    @Override
    public void queue(int size, RingAddresses a) {
        write(QUEUE_SIZE, 2, size);
        write32x2(QUEUE_DESC, a.descTable());
        write32x2(QUEUE_DRIVER, a.availRing());
        write32x2(QUEUE_DEVICE, a.usedRing());
    }

    @Override
    public void queueVector(int vector) {
        write(QUEUE_MSIX_VECTOR, 2, vector);
    }

    @Override
    public int queueVector() {
        return (int) read(QUEUE_MSIX_VECTOR, 2);
    }

    @Override
    public void configVector(int vector) {
        write(CONFIG_MSIX_VECTOR, 2, vector);
    }

    @Override
    public int configVector() {
        return (int) read(CONFIG_MSIX_VECTOR, 2);
    }

    @Override
    public void enableQueue() {
        write(QUEUE_ENABLE, 2, 1);
    }

    @Override
    public void releaseQueue() {
        // modern queues are only disabled by a reset (§4.1.4.3.2)
    }

    @Override
    public Doorbell doorbell(int queue) throws TransportException {
        long off = read(QUEUE_NOTIFY_OFF, 2) * (long) notifyMultiplier;
        boolean data = Feature.NOTIFICATION_DATA.isSet(accepted);
        int width = data ? 4 : 2;
        if (off + width > notify.length()) {
            throw new TransportException("queue " + queue + " notify offset " + off + " is outside the notify region");
        }
        long address = notify.address() + off;
        return new Doorbell() {
            @Override
            public void ring() {
                host.mmioWrite(address, 2, queue);
            }

            @Override
            public void ring(int next) {
                // §4.1.5.2: with NOTIFICATION_DATA a 32-bit write, vq index in bits 0-15, next_off/next_wrap above
                if (data) {
                    host.mmioWrite(address, 4, queue | (long) (next & 0xffff) << 16);
                } else {
                    host.mmioWrite(address, 2, queue);
                }
            }
        };
    }

    @Override
    public int readIsr() {
        return (int) host.mmioRead(isr.address(), 1);
    }

    @Override
    public String kind() {
        return "modern";
    }
}
