package io.jvirtio.transport.pci;

import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.device.VirtioDeviceModel;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.spec.DeviceStatus;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.transport.common.FeatureRegisters;
import io.jvirtio.transport.common.QueueRegisters;
import io.jvirtio.transport.common.StatusRegister;

import java.lang.System.Logger.Level;
import java.lang.System.Logger;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static io.jvirtio.transport.pci.PciConfigHeader.*;
import static io.jvirtio.transport.pci.VirtioPciCap.*;

/**
 * The device side of virtio over PCI (VIRTIO 1.2 §4.1): a modern virtio-pci function that carries any
 * {@link VirtioDeviceModel}. This is the VMM's register emulation, like QEMU's {@code virtio-pci}.
 *
 * <p>Layout (the same as QEMU's): BAR0, on a transitional device, is the legacy I/O BAR of §4.1.4.10;
 * BAR1 holds the MSI-X table (offset 0) and PBA (offset 0x800); BAR4
 * (64-bit) holds the common configuration (0x0000), ISR (0x1000), device configuration (0x2000) and the
 * notification area (0x3000, {@code notify_off_multiplier} 4, queue {@code n} notifies at 0x3000 + 4n).
 * The capability list carries MSI-X and the five virtio capabilities of §4.1.4, the last being the
 * PCI configuration access capability (§4.1.4.9).
 */
public final class VirtioPciDevice implements PciFunction {
    private static final Logger LOG = System.getLogger(VirtioPciDevice.class.getName());

    private final VirtioDeviceModel model;
    private final GuestMemory memory;
    private final String name;
    private final int numQueues;
    private final int msixEntries;
    private final boolean transitional;
    /** The configuration space: header, BARs, capabilities (under this function's lock). */
    private final PciConfigHeader header;

    /** The MSI-X table and PBA, under this function's lock. */
    private final MsixTable msix;

    // virtio common configuration
    private final FeatureRegisters features = new FeatureRegisters();
    private volatile int configVector = NO_VECTOR;
    private volatile int status;
    private int queueSelect;
    private final int[] queueVector;
    private final QueueRegisters rings;
    private volatile boolean active;

    private volatile int isr;
    private volatile PciInterrupts interrupts = new PciInterrupts() {
        public void msi(long address, int data) { }
        public void intx(boolean asserted) { }
    };

    /**
     * @param model  the device
     * @param memory guest memory the device's queues live in
     * @param name   for logs, e.g. the slot
     */
    public VirtioPciDevice(VirtioDeviceModel model, GuestMemory memory, String name) {
        this(model, memory, name, model.numQueues() + 1, false);
    }

    /**
     * @param msixVectors MSI-X table size; fewer than queues + 1 makes drivers share vectors, 0 leaves
     *                    out the MSI-X capability so drivers fall back to INTx
     * @param transitional also offer the legacy interface: a transitional device id (§4.1.2.3) and the
     *                     legacy I/O BAR (§4.1.4.10) next to the modern capabilities
     */
    public VirtioPciDevice(VirtioDeviceModel model, GuestMemory memory, String name, int msixVectors,
                           boolean transitional) {
        if (msixVectors < 0 || msixVectors > 2048) {
            throw new IllegalArgumentException("MSI-X vectors " + msixVectors + " not in 0..2048");
        }
        this.model = model;
        this.memory = memory;
        this.name = name;
        this.numQueues = model.numQueues();
        if ((long) numQueues * NOTIFY_MULTIPLIER > NOTIFY_LENGTH) {
            // pci-dev-17: every queue's doorbell, 32 bits wide with NOTIFICATION_DATA, inside the notify region
            throw new IllegalArgumentException(name + ": " + numQueues + " queues do not fit the notify region");
        }
        this.msixEntries = msixVectors;
        this.transitional = transitional;
        this.msix = new MsixTable(msixEntries, PBA_OFFSET);
        this.queueVector = new int[numQueues];
        this.rings = new QueueRegisters(numQueues);
        this.header = new PciConfigHeader(model.type(), transitional, msixEntries, model.config().size());
        resetRegisters();
        model.config().onChange(this::configChanged);
    }

    public VirtioDeviceModel model() {
        return model;
    }

    /** The device status byte as the device sees it. */
    public int status() {
        return status;
    }

    // ---- PCI configuration space --------------------------------------------------------------

    @Override
    public synchronized int configRead(int offset, int size) {
        if (offset < 0 || offset + size > Pci.CONFIG_SPACE_SIZE) {
            return -1;
        }
        if (offset >= CAP_PCI_CFG + PCI_CFG_DATA && offset < CAP_PCI_CFG + PCI_CFG_DATA + 4) {
            // the access's bytes sit in pci_cfg_data from its first byte; a narrower read gets its own part
            int shift = 8 * (offset - CAP_PCI_CFG - PCI_CFG_DATA);
            long data = pciCfgAccess(false, 0) >>> shift;
            return (int) (size == 4 ? data : data & ((1L << (8 * size)) - 1));
        }
        return header.read(offset, size);
    }

    @Override
    public void configWrite(int offset, int size, int value) {
        if (offset >= CAP_PCI_CFG + PCI_CFG_DATA && offset < CAP_PCI_CFG + PCI_CFG_DATA + 4) {
            pciCfgAccess(true, value << (8 * (offset - CAP_PCI_CFG - PCI_CFG_DATA)));
            return;
        }
        boolean unmasked;
        synchronized (this) {
            if (offset < 0 || offset + size > Pci.CONFIG_SPACE_SIZE) {
                return;
            }
            for (int i = 0; i < size; i++) {
                header.writeByte(offset + i, (value >>> (8 * i)) & 0xff);
            }
            unmasked = !header.msixFunctionMasked();
        }
        if (unmasked) {
            deliverPending();
        }
        if (offset <= Pci.COMMAND && offset + size > Pci.COMMAND) {
            updateIntx();
        }
    }

    @Override
    public synchronized long barAddress(int bar) {
        return header.barAddress(bar);
    }

    @Override
    public long barSize(int bar) {
        return header.barSize(bar);
    }

    @Override
    public boolean barIsIo(int bar) {
        return header.barIsIo(bar);
    }

    @Override
    public void connect(PciInterrupts interrupts) {
        this.interrupts = interrupts;
    }

    /** §4.1.4.9: an access through the window of the PCI configuration access capability. */
    private long pciCfgAccess(boolean write, int value) {
        int bar;
        long offset;
        int length;
        synchronized (this) {
            bar = header.pciCfgBar();
            offset = header.pciCfgOffset();
            length = header.pciCfgLength();
        }
        if (bar >= Pci.BAR_COUNT || (length != 1 && length != 2 && length != 4) || offset % length != 0) {
            return write ? 0 : 0xffffffffL;
        }
        if (write) {
            barWrite(bar, offset, length, value & 0xffffffffL);
            return 0;
        }
        return barRead(bar, offset, length);
    }

    // ---- BAR accesses --------------------------------------------------------------------------

    @Override
    public long barRead(int bar, long offset, int size) {
        if (bar == LEGACY_BAR && transitional) {
            return legacyRead((int) offset, size);
        }
        if (bar == MSIX_BAR) {
            return msixRead(offset, size);
        }
        if (bar != VIRTIO_BAR || offset < 0 || offset + size > VIRTIO_BAR_SIZE) {
            return 0;
        }
        if (offset < ISR_OFFSET) {
            return commonRead((int) offset, size);
        }
        if (offset < DEVICE_OFFSET) {
            // §4.1.4.5: reading the ISR clears it and de-asserts INTx.
            if (offset != ISR_OFFSET) {
                return 0;
            }
            int v;
            synchronized (this) {
                v = isr;
                isr = 0;
            }
            updateIntx();
            return v;
        }
        if (offset < NOTIFY_OFFSET) {
            byte[] b = new byte[size];
            model.config().read((int) offset - DEVICE_OFFSET, b, 0, size);
            long v = 0;
            for (int i = 0; i < size; i++) {
                v |= (b[i] & 0xffL) << (8 * i);
            }
            return v;
        }
        return 0;
    }

    @Override
    public void barWrite(int bar, long offset, int size, long value) {
        if (bar == LEGACY_BAR && transitional) {
            legacyWrite((int) offset, size, value);
            return;
        }
        if (bar == MSIX_BAR) {
            msixWrite(offset, size, value);
            return;
        }
        if (bar != VIRTIO_BAR || offset < 0 || offset + size > VIRTIO_BAR_SIZE) {
            return;
        }
        if (offset < ISR_OFFSET) {
            commonWrite((int) offset, size, value);
        } else if (offset >= DEVICE_OFFSET && offset < NOTIFY_OFFSET) {
            byte[] b = new byte[size];
            for (int i = 0; i < size; i++) {
                b[i] = (byte) (value >>> (8 * i));
            }
            model.config().driverWrite((int) offset - DEVICE_OFFSET, b);
        } else if (offset >= NOTIFY_OFFSET) {
            notify((int) (offset - NOTIFY_OFFSET) / NOTIFY_MULTIPLIER);
        }
    }

    /** §4.1.4.4: a write to queue n's notification address. The hot path: no lock, no allocation. */
    private void notify(int queue) {
        if (active && queue < numQueues && rings.enabled[queue]) {
            model.queueNotify(queue);
        }
    }

    // ---- legacy I/O BAR (§4.1.4.10) -------------------------------------------------------------


    /** Device configuration starts at 20, or at 24 when MSI-X is enabled (two vector registers in between). */
    private int legacyConfigOffset() {
        return LegacyLayout.configOffset(msixEnabled());
    }

    private long legacyRead(int off, int size) {
        int cfg = legacyConfigOffset();
        if (off >= cfg) {
            byte[] b = new byte[size];
            model.config().read(off - cfg, b, 0, size);
            long v = 0;
            for (int i = 0; i < size; i++) {
                v |= (b[i] & 0xffL) << (8 * i);
            }
            return v;
        }
        if (off == LegacyLayout.ISR) {
            return barRead(VIRTIO_BAR, ISR_OFFSET, 1);
        }
        synchronized (this) {
            int q = queueSelect;
            boolean qv = q < numQueues;
            return switch (off) {
                // Legacy features are 32 bits; VERSION_1 and above do not exist there.
                case LegacyLayout.HOST_FEATURES -> model.deviceFeatures() & 0xffffffffL;
                case LegacyLayout.GUEST_FEATURES -> features.driver() & 0xffffffffL;
                case LegacyLayout.QUEUE_PFN -> qv && rings.enabled[q] ? rings.desc[q] / LegacyLayout.QUEUE_ALIGN : 0;
                case LegacyLayout.QUEUE_NUM -> qv ? model.maxQueueSize(q) : 0;
                case LegacyLayout.QUEUE_SEL -> queueSelect;
                case LegacyLayout.STATUS -> status;
                case LegacyLayout.CONFIG_VECTOR -> configVector;
                case LegacyLayout.QUEUE_VECTOR -> qv ? queueVector[q] : NO_VECTOR;
                default -> 0;
            };
        }
    }

    private void legacyWrite(int off, int size, long value) {
        int cfg = legacyConfigOffset();
        if (off >= cfg) {
            byte[] b = new byte[size];
            for (int i = 0; i < size; i++) {
                b[i] = (byte) (value >>> (8 * i));
            }
            model.config().driverWrite(off - cfg, b);
            return;
        }
        if (off == LegacyLayout.QUEUE_NOTIFY) {
            notify((int) value & 0xffff);
            return;
        }
        boolean activate = false;
        boolean reset = false;
        synchronized (this) {
            int q = queueSelect;
            boolean qv = q < numQueues;
            switch (off) {
                case LegacyLayout.GUEST_FEATURES -> {
                    if (!active) {
                        features.writeLegacy(value);
                    }
                }
                case LegacyLayout.QUEUE_PFN -> {
                    if (qv && !active) {
                        if (value == 0) {
                            rings.enabled[q] = false;
                        } else {
                            // §2.7.2: the legacy layout, contiguous from the page frame the driver gave.
                            int n = model.maxQueueSize(q);
                            io.jvirtio.core.queue.split.SplitLayout l =
                                    io.jvirtio.core.queue.split.SplitLayout.legacy(n, LegacyLayout.QUEUE_ALIGN);
                            long base = (value & 0xffffffffL) * LegacyLayout.QUEUE_ALIGN;
                            rings.size[q] = n;
                            rings.desc[q] = base;
                            rings.driver[q] = base + l.availOffset();
                            rings.device[q] = base + l.usedOffset();
                            rings.enabled[q] = true;
                        }
                    }
                }
                case LegacyLayout.QUEUE_SEL -> queueSelect = (int) value & 0xffff;
                case LegacyLayout.STATUS -> {
                    int next = (int) value & 0xff;
                    if (next == 0) {
                        reset = true;
                    } else {
                        int added = next & ~status;
                        status = next | (status & DeviceStatus.DEVICE_NEEDS_RESET);
                        // Legacy drivers have no FEATURES_OK step: DRIVER_OK starts the device.
                        activate = (added & DeviceStatus.DRIVER_OK) != 0 && (next & DeviceStatus.FAILED) == 0
                                && legacyFeaturesAcceptable();
                    }
                }
                case LegacyLayout.CONFIG_VECTOR -> configVector = validVector((int) value & 0xffff);
                case LegacyLayout.QUEUE_VECTOR -> {
                    if (qv) queueVector[q] = validVector((int) value & 0xffff);
                }
                default -> {
                }
            }
        }
        if (reset) {
            reset();
        } else if (activate) {
            activate();
        }
    }

    private boolean legacyFeaturesAcceptable() {
        String problem = QueueRegisters.featuresProblem(model, model.deviceFeatures() & 0xffffffffL, features.driver(), false);
        if (problem != null) {
            needsReset("legacy driver: " + problem);
            return false;
        }
        return true;
    }

    // ---- common configuration (§4.1.4.3) -------------------------------------------------------

    private synchronized long commonRead(int offset, int size) {
        long v = 0;
        for (int i = 0; i < size; i++) {
            v |= (long) commonByte(offset + i) << (8 * i);
        }
        return v;
    }

    private int commonByte(int at) {
        int q = queueSelect;
        boolean qv = q < numQueues;
        long field;
        int start;
        if (at < 4) { field = features.deviceSelect(); start = DEVICE_FEATURE_SELECT; }
        else if (at < 8) { field = features.deviceWindow(QueueRegisters.offered(model)); start = DEVICE_FEATURE; }
        else if (at < 12) { field = features.driverSelect(); start = DRIVER_FEATURE_SELECT; }
        else if (at < 16) { field = features.driverWindow(); start = DRIVER_FEATURE; }
        else if (at < 18) { field = configVector; start = CONFIG_MSIX_VECTOR; }
        else if (at < 20) { field = numQueues; start = NUM_QUEUES; }
        else if (at == 20) { field = status; start = DEVICE_STATUS; }
        else if (at == 21) { field = model.config().generation(); start = CONFIG_GENERATION; }
        else if (at < 24) { field = queueSelect; start = QUEUE_SELECT; }
        else if (at < 26) { field = qv ? rings.size[q] : 0; start = QUEUE_SIZE; }
        else if (at < 28) { field = qv ? queueVector[q] : NO_VECTOR; start = QUEUE_MSIX_VECTOR; }
        else if (at < 30) { field = qv && rings.enabled[q] ? 1 : 0; start = QUEUE_ENABLE; }
        else if (at < 32) { field = qv ? q : 0; start = QUEUE_NOTIFY_OFF; }
        else if (at < 40) { field = qv ? rings.desc[q] : 0; start = QUEUE_DESC; }
        else if (at < 48) { field = qv ? rings.driver[q] : 0; start = QUEUE_DRIVER; }
        else if (at < 56) { field = qv ? rings.device[q] : 0; start = QUEUE_DEVICE; }
        else if (at < 58) { field = qv ? q : 0; start = QUEUE_NOTIFY_DATA; }
        else { field = 0; start = QUEUE_RESET; }
        return (int) ((field >>> (8 * (at - start))) & 0xff);
    }

    private void commonWrite(int offset, int size, long value) {
        boolean activate = false;
        boolean reset = false;
        synchronized (this) {
            int q = queueSelect;
            boolean qv = q < numQueues;
            // Queue registers may only change while the queue is disabled (§4.1.4.3.2).
            boolean qw = qv && !rings.enabled[q];
            switch (offset) {
                case DEVICE_FEATURE_SELECT -> features.selectDevice((int) value);
                case DRIVER_FEATURE_SELECT -> features.selectDriver((int) value);
                case DRIVER_FEATURE -> features.writeDriverWindow(value, (status & DeviceStatus.FEATURES_OK) != 0);
                case CONFIG_MSIX_VECTOR -> configVector = validVector((int) value & 0xffff);
                case DEVICE_STATUS -> {
                    int next = (int) value & 0xff;
                    if (next == 0) {
                        reset = true;
                    } else {
                        activate = writeStatus(next);
                    }
                }
                case QUEUE_SELECT -> queueSelect = (int) value & 0xffff;
                case QUEUE_SIZE -> {
                    if (qw) rings.size[q] = (int) value & 0xffff;
                }
                case QUEUE_MSIX_VECTOR -> {
                    if (qv) queueVector[q] = validVector((int) value & 0xffff);
                }
                case QUEUE_ENABLE -> {
                    // §4.1.4.3.2: the driver MUST NOT write 0; enabling is one-way until reset.
                    if (qv && value == 1) rings.enabled[q] = true;
                }
                case QUEUE_DESC -> { if (qw) rings.desc[q] = merge(rings.desc[q], value, size, 0); }
                case QUEUE_DESC + 4 -> { if (qw) rings.desc[q] = merge(rings.desc[q], value, size, 32); }
                case QUEUE_DRIVER -> { if (qw) rings.driver[q] = merge(rings.driver[q], value, size, 0); }
                case QUEUE_DRIVER + 4 -> { if (qw) rings.driver[q] = merge(rings.driver[q], value, size, 32); }
                case QUEUE_DEVICE -> { if (qw) rings.device[q] = merge(rings.device[q], value, size, 0); }
                case QUEUE_DEVICE + 4 -> { if (qw) rings.device[q] = merge(rings.device[q], value, size, 32); }
                default -> {
                    // read-only registers
                }
            }
        }
        if (reset) {
            reset();
        } else if (activate) {
            activate();
        }
    }

    private static long merge(long old, long value, int size, int shift) {
        long mask = size >= 8 ? -1L : ((1L << (8 * size)) - 1) << shift;
        return (old & ~mask) | ((value << shift) & mask);
    }

    /** A vector the table does not have reads back as NO_VECTOR, telling the driver it failed (§4.1.5.1.2). */
    private int validVector(int v) {
        return v < msixEntries ? v : NO_VECTOR;
    }

    /** Applies a non-zero status write; returns true when it completes DRIVER_OK. */
    private boolean writeStatus(int next) {
        StatusRegister w = StatusRegister.write(name, status, next,
                () -> QueueRegisters.featuresProblem(model, QueueRegisters.offered(model), features.driver(), true));
        status = w.status();
        return w.activate();
    }

    private void activate() {
        List<DeviceQueue> queues;
        List<Interrupt> irqs = new ArrayList<>(numQueues);
        long negotiated;
        synchronized (this) {
            negotiated = features.driver();
            try {
                queues = rings.create(memory, negotiated);
            } catch (IllegalArgumentException e) {
                needsReset(e.getMessage());
                return;
            }
            for (int i = 0; i < numQueues; i++) {
                int qi = i;
                irqs.add(() -> signalQueue(qi));
            }
            active = true;
        }
        model.activate(new DeviceContext(memory, negotiated, queues, irqs, this::needsReset));
    }

    /**
     * Device reset (§2.4, §4.1.4.3.2): everything virtio returns to its initial state and the model stops
     * touching guest memory. The driver triggers it by writing 0 to {@code device_status}; the machine
     * calls it directly at power-off and unplug.
     */
    public void reset() {
        synchronized (this) {
            active = false;
        }
        model.reset();
        synchronized (this) {
            resetRegisters();
            isr = 0;
        }
        updateIntx();
    }

    private void resetRegisters() {
        status = 0;
        features.reset();
        configVector = NO_VECTOR;
        queueSelect = 0;
        rings.reset(model, false);
        Arrays.fill(queueVector, NO_VECTOR);
    }

    /** DEVICE_NEEDS_RESET (§2.1.2) plus a configuration change notification. */
    void needsReset(String reason) {
        LOG.log(Level.WARNING, "{0}: device needs reset: {1}", name, reason);
        synchronized (this) {
            status |= DeviceStatus.DEVICE_NEEDS_RESET;
        }
        configChanged();
    }

    // ---- interrupts ----------------------------------------------------------------------------

    private boolean msixEnabled() {
        return header.msixEnabled();
    }

    /** Used-buffer notification for queue {@code q} (§4.1.5.4). */
    void signalQueue(int q) {
        if (msixEnabled()) {
            deliverVector(queueVector[q]);
        } else {
            raiseIsr(ISR_QUEUE);
        }
    }

    /** Configuration change notification (§4.1.5.3). */
    private void configChanged() {
        if ((status & DeviceStatus.DRIVER_OK) == 0 && (status & DeviceStatus.DEVICE_NEEDS_RESET) == 0) {
            return;
        }
        if (msixEnabled()) {
            synchronized (this) {
                isr |= ISR_CONFIG;
            }
            deliverVector(configVector);
        } else {
            raiseIsr(ISR_CONFIG);
        }
    }

    private void raiseIsr(int bit) {
        synchronized (this) {
            isr |= bit;
        }
        updateIntx();
    }

    private void updateIntx() {
        boolean level;
        synchronized (this) {
            // pci-dev-21: without MSI-X, Status.Interrupt is the OR of the ISR bits; Interrupt Disable only
            // keeps the line from being asserted (PCI 3.0 §6.2.3), it does not hide the status.
            boolean pending = isr != 0 && !msixEnabled();
            level = pending && !header.intxDisabled();
            header.interruptStatus(pending);
        }
        interrupts.intx(level);
    }

    private void deliverVector(int v) {
        if (v == NO_VECTOR || v >= msixEntries) {
            return;
        }
        long address;
        int data;
        synchronized (this) {
            if (!msix.sendable(v, functionMasked())) {
                return;
            }
            address = msix.address(v);
            data = msix.data(v);
        }
        interrupts.msi(address, data);
    }

    private boolean functionMasked() {
        return header.msixFunctionMasked();
    }

    private void deliverPending() {
        for (int v = 0; v < msixEntries; v++) {
            boolean fire;
            synchronized (this) {
                fire = msix.takePending(v, msixEnabled() && !functionMasked());
            }
            if (fire) {
                deliverVector(v);
            }
        }
    }

    private synchronized long msixRead(long offset, int size) {
        return msix.read(offset, size);
    }

    private void msixWrite(long offset, int size, long value) {
        synchronized (this) {
            msix.write(offset, size, value);
        }
        deliverPending();
    }

    // ---- little helpers ------------------------------------------------------------------------

    @Override
    public String toString() {
        return name + " virtio-pci " + model.type().name().toLowerCase();
    }
}
