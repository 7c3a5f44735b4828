package io.jvirtio.transport.pci;

import io.jvirtio.bus.TransportException;
import io.jvirtio.core.queue.Doorbell;
import io.jvirtio.core.queue.RingAddresses;
import io.jvirtio.core.queue.split.SplitLayout;

import static io.jvirtio.transport.pci.LegacyLayout.*;

/**
 * The legacy virtio-pci interface (§4.1.4.10, Linux {@code virtio_pci_legacy}): registers in I/O BAR0,
 * 32 feature bits, rings at a page frame number in the contiguous legacy layout of §2.7.2, no
 * configuration generation, and the device configuration after the MSI-X vector registers when MSI-X
 * is enabled.
 */
final class LegacyRegisters implements Registers {
    private final PciHost host;
    private final int slot;
    private final long base;
    private final int msixCap;

    LegacyRegisters(PciHost host, int slot, long ioBase, int msixCap) {
        this.host = host;
        this.slot = slot;
        this.base = ioBase;
        this.msixCap = msixCap;
    }

    private int configOffset() {
        boolean msix = msixCap != 0
                && (host.configRead(slot, msixCap + Pci.MSIX_CONTROL, 2) & Pci.MSIX_CONTROL_ENABLE) != 0;
        return LegacyLayout.configOffset(msix);
    }

    private long in(int reg, int size) {
        return host.pioRead(base + reg, size);
    }

    private void out(int reg, int size, long value) {
        host.pioWrite(base + reg, size, value);
    }

    @Override
    public int status() {
        return (int) in(STATUS, 1);
    }

    @Override
    public void status(int status) {
        out(STATUS, 1, status);
    }

    @Override
    public long deviceFeatures() {
        return in(HOST_FEATURES, 4) & 0xffffffffL;
    }

    @Override
    public void driverFeatures(long features) {
        out(GUEST_FEATURES, 4, features & 0xffffffffL);
    }

    /** The legacy interface has no generation counter (§4.1.4.10 has none). */
    @Override
    public int generation() {
        return 0;
    }

    @Override
    public void readConfig(int offset, byte[] dst, int dstOffset, int length) {
        int cfg = configOffset();
        for (int i = 0; i < length; i++) {
            dst[dstOffset + i] = (byte) in(cfg + offset + i, 1);
        }
    }

    @Override
    public void writeConfig(int offset, byte[] src) {
        int cfg = configOffset();
        if (src.length == 4) {
            long v = (src[0] & 0xffL) | (src[1] & 0xffL) << 8 | (src[2] & 0xffL) << 16 | (src[3] & 0xffL) << 24;
            out(cfg + offset, 4, v);
            return;
        }
        for (int i = 0; i < src.length; i++) {
            out(cfg + offset + i, 1, src[i] & 0xff);
        }
    }

    /** Legacy has no queue count; probe until a queue reads size 0. */
    @Override
    public int numQueues() {
        int n = 0;
        while (n < 1024) {
            selectQueue(n);
            if (queueMaxSize() == 0) {
                break;
            }
            n++;
        }
        return n;
    }

    @Override
    public void selectQueue(int queue) {
        out(QUEUE_SEL, 2, queue);
    }

    @Override
    public int queueMaxSize() {
        return (int) in(QUEUE_NUM, 2);
    }

    @Override
    public SplitLayout layout(int size) {
        return SplitLayout.legacy(size, QUEUE_ALIGN);
    }

    @Override
    public void queue(int size, RingAddresses a) throws TransportException {
        // §4.1.4.10: the size is the device's; the ring is one block at a page frame number.
        if (size != queueMaxSize()) {
            throw new TransportException("legacy queues cannot be resized (" + size + " != " + queueMaxSize() + ")");
        }
        if (a.descTable() % QUEUE_ALIGN != 0 || a.descTable() / QUEUE_ALIGN > 0xffffffffL) {
            throw new TransportException(String.format("legacy ring at 0x%x is not a 32-bit page frame", a.descTable()));
        }
        if (in(QUEUE_PFN, 4) != 0) {
            throw new TransportException("legacy queue already has a ring");
        }
        out(QUEUE_PFN, 4, a.descTable() / QUEUE_ALIGN);
    }

    @Override
    public void queueVector(int vector) {
        out(QUEUE_VECTOR, 2, vector);
    }

    @Override
    public int queueVector() {
        return (int) in(QUEUE_VECTOR, 2);
    }

    @Override
    public void configVector(int vector) {
        out(CONFIG_VECTOR, 2, vector);
    }

    @Override
    public int configVector() {
        return (int) in(CONFIG_VECTOR, 2);
    }

    @Override
    public void enableQueue() {
        // a legacy queue is live once its page frame number is written
    }

    @Override
    public void releaseQueue() {
        out(QUEUE_PFN, 4, 0);
    }

    @Override
    public Doorbell doorbell(int queue) {
        return () -> host.pioWrite(base + QUEUE_NOTIFY, 2, queue);
    }

    @Override
    public int readIsr() {
        return (int) in(ISR, 1);
    }

    @Override
    public String kind() {
        return "legacy";
    }
}
