package io.jvirtio.transport.pci;

import io.jvirtio.bus.ConfigOps;
import io.jvirtio.bus.QueueSpec;
import io.jvirtio.bus.TransportException;
import io.jvirtio.bus.VirtioBus;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.bus.VirtioDevice;
import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.spec.DeviceStatus;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

import static io.jvirtio.transport.pci.VirtioPciCap.ISR_CONFIG;
import static io.jvirtio.transport.pci.VirtioPciCap.ISR_QUEUE;
import static io.jvirtio.transport.pci.VirtioPciCap.NO_VECTOR;

/**
 * {@link ConfigOps} over virtio-pci registers — modern (§4.1.4) or legacy (§4.1.4.10), whichever
 * {@link Registers} it is given — with MSI-X set up as Linux's {@code vp_find_vqs} does: one vector per
 * queue plus one for configuration changes; if the table is too small or the device refuses a vector,
 * one shared queue vector plus the config vector; failing that, INTx with the ISR register.
 */
final class VirtioPciConfigOps implements ConfigOps {
    /** Descriptors per indirect table a driver queue can use. */
    static final int MAX_INDIRECT = 64;

    private final PciHost host;
    private final int slot;
    private final Registers regs;
    private final int msixCap;
    private VirtioBus bus;
    private VirtioDevice dev;
    private long negotiated;
    private final List<DriverQueue<Object>> queues = new ArrayList<>();
    private final List<PciHost.MsiVector> vectors = new ArrayList<>();
    private List<Runnable> intxCallbacks = List.of();
    private boolean intxAttached;
    private String interruptMode = "none";

    VirtioPciConfigOps(PciHost host, int slot, Registers regs, int msixCap) {
        this.host = host;
        this.slot = slot;
        this.regs = regs;
        this.msixCap = msixCap;
    }

    void attach(VirtioBus bus, VirtioDevice dev) {
        this.bus = bus;
        this.dev = dev;
    }

    @Override
    public int getStatus() {
        return regs.status();
    }

    @Override
    public void setStatus(int status) {
        regs.status(status);
    }

    @Override
    public void reset() {
        regs.status(0);
        io.jvirtio.transport.common.ResetWait.await(regs::status, busInfo());
    }

    /** A modern interface's notifications carry VIRTIO_F_NOTIFICATION_DATA (32-bit writes, §4.1.5.2). */
    @Override
    public long transportFeatures() {
        return VirtioBus.TRANSPORT_FEATURES | (modern() ? Feature.NOTIFICATION_DATA.mask() : 0);
    }

    @Override
    public boolean modern() {
        return !regs.kind().equals("legacy");
    }

    @Override
    public long getFeatures() {
        return regs.deviceFeatures();
    }

    @Override
    public void finalizeFeatures(long features) {
        negotiated = features;
        regs.driverFeatures(features);
    }

    @Override
    public int generation() {
        return regs.generation();
    }

    @Override
    public void readConfig(int offset, byte[] dst, int dstOffset, int length) {
        regs.readConfig(offset, dst, dstOffset, length);
    }

    @Override
    public void writeConfig(int offset, byte[] src) {
        regs.writeConfig(offset, src);
    }

    @Override
    public synchronized List<DriverQueue<Object>> findQueues(List<QueueSpec> specs) throws TransportException {
        int available = regs.numQueues();
        if (specs.size() > available) {
            throw new TransportException("driver wants " + specs.size() + " queues, device has " + available);
        }
        int withCallback = (int) specs.stream().filter(s -> s.callback() != null).count();
        int tableSize = msixCap == 0 ? 0 : (host.configRead(slot, msixCap + Pci.MSIX_CONTROL, 2) & 0x7ff) + 1;
        TransportException last = null;
        for (Mode mode : Mode.values()) {
            if (mode == Mode.PER_QUEUE && tableSize < withCallback + 1 || mode == Mode.SHARED && tableSize < 2) {
                continue;
            }
            try {
                return setup(specs, mode);
            } catch (TransportException e) {
                teardown();
                if (last != null) {
                    e.addSuppressed(last);
                }
                last = e;
            }
        }
        throw last;
    }

    private enum Mode { PER_QUEUE, SHARED, INTX }

    private List<DriverQueue<Object>> setup(List<QueueSpec> specs, Mode mode) throws TransportException {
        List<Runnable> sharedCallbacks = new ArrayList<>();
        int sharedVector = NO_VECTOR;
        if (mode != Mode.INTX) {
            enableMsix(true);
            int configVec = addVector(this::configInterrupt);
            regs.configVector(configVec);
            if (regs.configVector() != configVec) {
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
            regs.selectQueue(i);
            int max = regs.queueMaxSize();
            if (max == 0) {
                throw new TransportException("queue " + i + " (" + spec.name() + ") is not available");
            }
            int size = spec.size() <= 0 || regs.kind().equals("legacy") ? max
                    : Math.min(Integer.highestOneBit(spec.size()), max);
            DriverQueue<Object> q = DriverQueue.allocate(host.dma(), i, regs.layout(size), negotiated,
                    MAX_INDIRECT, regs.doorbell(i));
            queues.add(q);
            regs.queue(size, q.addresses());
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
                    regs.queueVector(vector);
                    if (regs.queueVector() != vector) {
                        throw new TransportException("device refused MSI-X vector " + vector + " for queue " + i);
                    }
                }
            }
        }
        // Enable last (as Linux does): once a modern queue is enabled only a reset takes it back, so every
        // vector must be accepted first for the fallback to another interrupt mode to work.
        for (int i = 0; i < specs.size(); i++) {
            regs.selectQueue(i);
            regs.enableQueue();
        }
        intxCallbacks = sharedCallbacks;
        interruptMode = switch (mode) {
            case PER_QUEUE -> "MSI-X, " + vectors.size() + " vectors (config + one per queue)";
            case SHARED -> "MSI-X, 2 vectors (config + shared queue vector)";
            case INTX -> "INTx with ISR";
        };
        return List.copyOf(queues);
    }

    private void intxInterrupt() {
        // §4.1.5.4: reading the ISR tells which and de-asserts the line.
        int status = regs.readIsr();
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
        int reg = Pci.BAR0 + 4 * bir;
        long lo = host.configRead(slot, reg, 4) & 0xfffffff0L;
        long hi = (host.configRead(slot, reg, 4) & 0x6) == Pci.BAR_MEM_TYPE_64
                ? (host.configRead(slot, reg + 4, 4) & 0xffffffffL) << 32 : 0;
        return (hi | lo) + (table & ~0x7);
    }

    private void enableMsix(boolean on) {
        if (msixCap == 0) {
            return;
        }
        int ctl = host.configRead(slot, msixCap + Pci.MSIX_CONTROL, 2);
        ctl = on ? (ctl | Pci.MSIX_CONTROL_ENABLE) & ~Pci.MSIX_CONTROL_MASKALL : ctl & ~Pci.MSIX_CONTROL_ENABLE;
        host.configWrite(slot, msixCap + Pci.MSIX_CONTROL, 2, ctl);
    }

    @Override
    public synchronized void deleteQueues() {
        teardown();
    }

    private void teardown() {
        if ((regs.status() & DeviceStatus.DRIVER_OK) != 0) {
            reset();
        }
        for (int i = 0; i < queues.size(); i++) {
            regs.selectQueue(i);
            if (!vectors.isEmpty()) {
                regs.queueVector(NO_VECTOR);
            }
            regs.releaseQueue();
        }
        if (!vectors.isEmpty()) {
            regs.configVector(NO_VECTOR);
        }
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
    public GuestAllocator dma() {
        return host.dma();
    }

    @Override
    public String busInfo() {
        return Pci.bdf(slot, 0);
    }

    @Override
    public synchronized String interruptMode() {
        return interruptMode + " (" + regs.kind() + ")";
    }
}
