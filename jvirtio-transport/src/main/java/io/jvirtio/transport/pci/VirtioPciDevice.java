package io.jvirtio.transport.pci;

import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.device.VirtioDeviceModel;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.spec.DeviceStatus;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.transport.common.InterruptStatus;

import java.lang.System.Logger.Level;
import java.lang.System.Logger;
import java.util.ArrayList;
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

    /** The virtio registers, and the two layouts a driver reaches them through (under this function's lock). */
    private final FunctionRegisters regs;
    private final CommonConfig common;
    private final LegacyInterface legacy;

    private final InterruptStatus isr = new InterruptStatus();
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
        this.header = new PciConfigHeader(model.type(), transitional, msixEntries, model.config().size());
        this.msix = new MsixTable(msixEntries, header.pbaOffset());
        this.regs = new FunctionRegisters(model, msixEntries);
        this.common = new CommonConfig(regs, name);
        this.legacy = new LegacyInterface(regs, this::needsReset);
        model.config().onChange(this::configChanged);
    }

    public VirtioDeviceModel model() {
        return model;
    }

    /** The device status byte as the device sees it. */
    public int status() {
        return regs.status;
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
        if (!insideBar(bar, offset, size)) {
            return 0;
        }
        if (bar == LEGACY_BAR && transitional) {
            return legacyRead((int) offset, size);
        }
        if (bar == MSIX_BAR) {
            return msixRead(offset, size);
        }
        if (bar != VIRTIO_BAR) {
            return 0;
        }
        if (offset < ISR_OFFSET) {
            synchronized (this) {
                return common.read((int) offset, size);
            }
        }
        if (offset < DEVICE_OFFSET) {
            // §4.1.4.5: reading the ISR clears it and de-asserts INTx.
            if (offset != ISR_OFFSET) {
                return 0;
            }
            int v = isr.readAndClear();
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
        if (!insideBar(bar, offset, size)) {
            return;
        }
        if (bar == LEGACY_BAR && transitional) {
            legacyWrite((int) offset, size, value);
            return;
        }
        if (bar == MSIX_BAR) {
            msixWrite(offset, size, value);
            return;
        }
        if (bar != VIRTIO_BAR) {
            return;
        }
        if (offset < ISR_OFFSET) {
            FunctionRegisters.Effect effect;
            synchronized (this) {
                effect = common.write((int) offset, size, value);
            }
            apply(effect);
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

    /**
     * Whether an access lies wholly inside a BAR the function has: the machine's dispatch already keeps
     * accesses there, but the PCI configuration access window (§4.1.4.9) takes any 32-bit offset the driver
     * writes into it.
     */
    private boolean insideBar(int bar, long offset, int size) {
        return bar >= 0 && bar < Pci.BAR_COUNT && offset >= 0 && offset + size <= header.barSize(bar);
    }

    /** §4.1.4.4: a write to queue n's notification address. The hot path: no lock, no allocation. */
    private void notify(int queue) {
        if (regs.active && queue < numQueues && regs.rings.enabled[queue]) {
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
            return legacy.read(off);
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
        FunctionRegisters.Effect effect;
        synchronized (this) {
            effect = legacy.write(off, value);
        }
        apply(effect);
    }

    /** What a register write asked for, done outside the lock: the model's reset and start call back in. */
    private void apply(FunctionRegisters.Effect effect) {
        switch (effect) {
            case RESET -> reset();
            case ACTIVATE -> activate();
            case NONE -> {
            }
        }
    }

    private void activate() {
        List<DeviceQueue> queues;
        List<Interrupt> irqs = new ArrayList<>(numQueues);
        long negotiated;
        synchronized (this) {
            negotiated = regs.features.driver();
            try {
                queues = regs.rings.create(memory, negotiated);
            } catch (IllegalArgumentException e) {
                needsReset(e.getMessage());
                return;
            }
            for (int i = 0; i < numQueues; i++) {
                int qi = i;
                irqs.add(() -> signalQueue(qi));
            }
            regs.active = true;
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
            regs.active = false;
        }
        model.reset();
        synchronized (this) {
            regs.reset();
            isr.clear();
        }
        updateIntx();
    }

    /** DEVICE_NEEDS_RESET (§2.1.2) plus a configuration change notification. */
    void needsReset(String reason) {
        LOG.log(Level.WARNING, "{0}: device needs reset: {1}", name, reason);
        synchronized (this) {
            regs.status |= DeviceStatus.DEVICE_NEEDS_RESET;
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
            deliverVector(regs.queueVector[q]);
        } else {
            raiseIsr(InterruptStatus.USED_BUFFER);
        }
    }

    /** Configuration change notification (§4.1.5.3). */
    private void configChanged() {
        int status = regs.status;
        if ((status & DeviceStatus.DRIVER_OK) == 0 && (status & DeviceStatus.DEVICE_NEEDS_RESET) == 0) {
            return;
        }
        if (msixEnabled()) {
            isr.raise(InterruptStatus.CONFIG_CHANGE);
            deliverVector(regs.configVector);
        } else {
            raiseIsr(InterruptStatus.CONFIG_CHANGE);
        }
    }

    private void raiseIsr(int bit) {
        isr.raise(bit);
        updateIntx();
    }

    private void updateIntx() {
        boolean level = intxLevel();
        interrupts.intx(level);
        if (!level && intxLevel()) {
            interrupts.intx(true); // raised between the decision and the line going down
        }
    }

    private synchronized boolean intxLevel() {
        // pci-dev-21: without MSI-X, Status.Interrupt is the OR of the ISR bits; Interrupt Disable only
        // keeps the line from being asserted (PCI 3.0 §6.2.3), it does not hide the status.
        boolean pending = isr.get() != 0 && !msixEnabled();
        header.interruptStatus(pending);
        return pending && !header.intxDisabled();
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
