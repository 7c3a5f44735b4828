package io.jvirtio.transport.pci;

import io.jvirtio.bus.ConfigOps;
import io.jvirtio.bus.QueueSpec;
import io.jvirtio.bus.TransportException;
import io.jvirtio.bus.VirtioBus;
import io.jvirtio.bus.VirtioDevice;
import io.jvirtio.core.queue.split.DriverQueue;
import io.jvirtio.core.queue.split.SplitLayout;
import io.jvirtio.core.spec.DeviceStatus;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

import static io.jvirtio.transport.pci.VirtioPciCap.*;

/**
 * {@link ConfigOps} over the modern virtio-pci registers (VIRTIO 1.2 §4.1.4, §4.1.5), with MSI-X set up
 * as Linux's {@code vp_find_vqs} does: one vector per queue plus one for configuration changes; if the
 * table is too small or the device refuses a vector, one shared queue vector plus the config vector;
 * failing that, INTx with the ISR register.
 */
final class VirtioPciConfigOps implements ConfigOps {
    /** Descriptors per indirect table a driver queue can use. */
    static final int MAX_INDIRECT = 64;
    private static final int RESET_POLLS = 100_000;

    private final PciHost host;
    private final int slot;
    private final VirtioPciDriver.Region common;
    private final VirtioPciDriver.Region isr;
    private final VirtioPciDriver.Region device;
    private final VirtioPciDriver.Region notify;
    private final int notifyMultiplier;
    private final int msixCap;
    private VirtioBus bus;
    private VirtioDevice dev;
    private long negotiated;
    private final List<DriverQueue<Object>> queues = new ArrayList<>();
    private final List<PciHost.MsiVector> vectors = new ArrayList<>();
    private boolean intxAttached;
    private String interruptMode = "none";

    VirtioPciConfigOps(PciHost host, int slot, VirtioPciDriver.Region common, VirtioPciDriver.Region isr,
                       VirtioPciDriver.Region device, VirtioPciDriver.Region notify, int notifyMultiplier, int msixCap) {
        this.host = host;
        this.slot = slot;
        this.common = common;
        this.isr = isr;
        this.device = device;
        this.notify = notify;
        this.notifyMultiplier = notifyMultiplier;
        this.msixCap = msixCap;
    }

    void attach(VirtioBus bus, VirtioDevice dev) {
        this.bus = bus;
        this.dev = dev;
    }

    private long read(int reg, int size) {
        return host.mmioRead(common.address() + reg, size);
    }

    private void write(int reg, int size, long value) {
        host.mmioWrite(common.address() + reg, size, value);
    }

    @Override
    public int getStatus() {
        return (int) read(DEVICE_STATUS, 1);
    }

    @Override
    public void setStatus(int status) {
        write(DEVICE_STATUS, 1, status);
    }

    @Override
    public void reset() {
        write(DEVICE_STATUS, 1, 0);
        // §4.1.4.3.2: after writing 0 the driver waits for device_status to read 0.
        for (int i = 0; i < RESET_POLLS && getStatus() != 0; i++) {
            Thread.onSpinWait();
        }
    }

    @Override
    public long getFeatures() {
        write(DEVICE_FEATURE_SELECT, 4, 0);
        long lo = read(DEVICE_FEATURE, 4);
        write(DEVICE_FEATURE_SELECT, 4, 1);
        long hi = read(DEVICE_FEATURE, 4);
        return (hi << 32) | lo;
    }

    @Override
    public void finalizeFeatures(long features) {
        negotiated = features;
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
        // §4.1.3.1: natural-width accesses; 64-bit fields as two 32-bit reads.
        int done = 0;
        while (done < length) {
            int at = offset + done;
            int w = (length - done >= 4 && at % 4 == 0) ? 4 : (length - done >= 2 && at % 2 == 0) ? 2 : 1;
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
        long v = 0;
        for (int i = 0; i < src.length && i < 8; i++) {
            v |= (src[i] & 0xffL) << (8 * i);
        }
        if (src.length == 1 || src.length == 2 || src.length == 4) {
            host.mmioWrite(device.address() + offset, src.length, v);
        } else {
            for (int i = 0; i < src.length; i++) {
                host.mmioWrite(device.address() + offset + i, 1, src[i] & 0xff);
            }
        }
    }

    @Override
    public synchronized List<DriverQueue<Object>> findQueues(List<QueueSpec> specs) throws TransportException {
        int available = (int) read(NUM_QUEUES, 2);
        if (specs.size() > available) {
            throw new TransportException("driver wants " + specs.size() + " queues, device has " + available);
        }
        int withCallback = (int) specs.stream().filter(s -> s.callback() != null).count();
        int tableSize = msixCap == 0 ? 0 : (host.configRead(slot, msixCap + Pci.MSIX_CONTROL, 2) & 0x7ff) + 1;
        TransportException last = null;
        if (tableSize >= withCallback + 1) {
            try {
                return setup(specs, Mode.PER_QUEUE);
            } catch (TransportException e) {
                last = e;
                teardown();
            }
        }
        if (tableSize >= 2) {
            try {
                return setup(specs, Mode.SHARED);
            } catch (TransportException e) {
                last = e;
                teardown();
            }
        }
        try {
            return setup(specs, Mode.INTX);
        } catch (TransportException e) {
            teardown();
            if (last != null) {
                e.addSuppressed(last);
            }
            throw e;
        }
    }

    private enum Mode { PER_QUEUE, SHARED, INTX }

    private List<DriverQueue<Object>> setup(List<QueueSpec> specs, Mode mode) throws TransportException {
        List<Runnable> sharedCallbacks = new ArrayList<>();
        int sharedVector = NO_VECTOR;
        if (mode != Mode.INTX) {
            enableMsix(true);
            int configVec = addVector(this::configInterrupt);
            write(CONFIG_MSIX_VECTOR, 2, configVec);
            if (read(CONFIG_MSIX_VECTOR, 2) != configVec) {
                throw new TransportException("device refused config MSI-X vector " + configVec);
            }
            if (mode == Mode.SHARED) {
                sharedVector = addVector(() -> sharedCallbacks.forEach(Runnable::run));
            }
        } else {
            enableMsix(false);
            host.attachIntx(slot, this::intxInterrupt);
            intxAttached = true;
        }
        for (int i = 0; i < specs.size(); i++) {
            QueueSpec spec = specs.get(i);
            write(QUEUE_SELECT, 2, i);
            int max = (int) read(QUEUE_SIZE, 2);
            if (max == 0) {
                throw new TransportException("queue " + i + " (" + spec.name() + ") is not available");
            }
            int size = spec.size() <= 0 ? max : Math.min(Integer.highestOneBit(spec.size()), max);
            long notifyOff = read(QUEUE_NOTIFY_OFF, 2) * (long) notifyMultiplier;
            if (notifyOff + 2 > notify.length()) {
                throw new TransportException("queue " + i + " notify offset " + notifyOff + " is outside the notify region");
            }
            long doorbell = notify.address() + notifyOff;
            int index = i;
            DriverQueue<Object> q = DriverQueue.allocate(host.dma(), i, SplitLayout.modern(size), negotiated,
                    MAX_INDIRECT, () -> host.mmioWrite(doorbell, 2, index));
            queues.add(q);
            write(QUEUE_SIZE, 2, size);
            write32x2(QUEUE_DESC, q.addresses().descTable());
            write32x2(QUEUE_DRIVER, q.addresses().availRing());
            write32x2(QUEUE_DEVICE, q.addresses().usedRing());
            Consumer<DriverQueue<Object>> cb = spec.callback();
            if (cb != null) {
                Runnable handler = () -> {
                    // Linux vring_interrupt: only call back when there is something used.
                    if (q.hasUsed()) {
                        cb.accept(q);
                    }
                };
                int vector = switch (mode) {
                    case PER_QUEUE -> addVector(handler);
                    case SHARED -> {
                        sharedCallbacks.add(handler);
                        yield sharedVector;
                    }
                    case INTX -> {
                        sharedCallbacks.add(handler);
                        yield NO_VECTOR;
                    }
                };
                if (mode != Mode.INTX) {
                    write(QUEUE_MSIX_VECTOR, 2, vector);
                    if (read(QUEUE_MSIX_VECTOR, 2) != vector) {
                        throw new TransportException("device refused MSI-X vector " + vector + " for queue " + i);
                    }
                }
            }
        }
        // Enable last (as Linux does): once a queue is enabled only a reset takes it back, so every
        // vector must be accepted first for the fallback to another interrupt mode to work.
        for (int i = 0; i < specs.size(); i++) {
            write(QUEUE_SELECT, 2, i);
            write(QUEUE_ENABLE, 2, 1);
        }
        intxCallbacks = sharedCallbacks;
        interruptMode = switch (mode) {
            case PER_QUEUE -> "MSI-X, " + vectors.size() + " vectors (config + one per queue)";
            case SHARED -> "MSI-X, 2 vectors (config + shared queue vector)";
            case INTX -> "INTx with ISR";
        };
        return List.copyOf(queues);
    }

    private List<Runnable> intxCallbacks = List.of();

    private void intxInterrupt() {
        // §4.1.5.4: reading the ISR tells which and de-asserts the line.
        int status = (int) host.mmioRead(isr.address(), 1);
        if ((status & ISR_QUEUE) != 0) {
            intxCallbacks.forEach(Runnable::run);
        }
        if ((status & ISR_CONFIG) != 0) {
            configInterrupt();
        }
    }

    private void configInterrupt() {
        if (bus != null && dev != null) {
            bus.configChanged(dev);
        }
    }

    private int addVector(Runnable handler) {
        int v = vectors.size();
        PciHost.MsiVector m = host.allocateMsi(handler);
        vectors.add(m);
        long entry = msixTable() + (long) v * Pci.MSIX_ENTRY_SIZE;
        host.mmioWrite(entry, 4, m.address() & 0xffffffffL);
        host.mmioWrite(entry + 4, 4, m.address() >>> 32);
        host.mmioWrite(entry + 8, 4, m.data());
        host.mmioWrite(entry + 12, 4, 0); // unmask
        return v;
    }

    private long msixTable() {
        int table = host.configRead(slot, msixCap + Pci.MSIX_TABLE, 4);
        int bir = table & 0x7;
        long barLo = host.configRead(slot, Pci.BAR0 + 4 * bir, 4) & 0xfffffff0L;
        long barHi = (host.configRead(slot, Pci.BAR0 + 4 * bir, 4) & 0x6) == Pci.BAR_MEM_TYPE_64
                ? (host.configRead(slot, Pci.BAR0 + 4 * bir + 4, 4) & 0xffffffffL) << 32 : 0;
        return (barHi | barLo) + (table & ~0x7);
    }

    private void enableMsix(boolean on) {
        if (msixCap == 0) {
            return;
        }
        int ctl = host.configRead(slot, msixCap + Pci.MSIX_CONTROL, 2);
        ctl = on ? (ctl | Pci.MSIX_CONTROL_ENABLE) & ~Pci.MSIX_CONTROL_MASKALL : ctl & ~Pci.MSIX_CONTROL_ENABLE;
        host.configWrite(slot, msixCap + Pci.MSIX_CONTROL, 2, ctl);
    }

    private void write32x2(int reg, long value) {
        write(reg, 4, value & 0xffffffffL);
        write(reg + 4, 4, value >>> 32);
    }

    @Override
    public synchronized void deleteQueues() {
        teardown();
    }

    private void teardown() {
        if ((getStatus() & DeviceStatus.DRIVER_OK) != 0) {
            reset();
        }
        for (int i = 0; i < queues.size(); i++) {
            write(QUEUE_SELECT, 2, i);
            write(QUEUE_MSIX_VECTOR, 2, NO_VECTOR);
        }
        write(CONFIG_MSIX_VECTOR, 2, NO_VECTOR);
        for (DriverQueue<Object> q : queues) {
            q.release();
        }
        queues.clear();
        for (PciHost.MsiVector v : vectors) {
            host.freeMsi(v);
        }
        vectors.clear();
        enableMsix(false);
        if (intxAttached) {
            host.detachIntx(slot);
            intxAttached = false;
        }
        intxCallbacks = List.of();
        interruptMode = "none";
    }

    @Override
    public io.jvirtio.core.memory.GuestAllocator dma() {
        return host.dma();
    }

    @Override
    public String busInfo() {
        return Pci.bdf(slot, 0);
    }

    @Override
    public synchronized String interruptMode() {
        return interruptMode;
    }
}
