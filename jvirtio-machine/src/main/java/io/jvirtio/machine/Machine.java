package io.jvirtio.machine;

import io.jvirtio.core.device.VirtioDeviceModel;
import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.os.NativeException;
import io.jvirtio.transport.pci.Pci;
import io.jvirtio.transport.pci.PciFunction;
import io.jvirtio.transport.pci.PciHost;
import io.jvirtio.transport.pci.PciInterrupts;
import io.jvirtio.transport.pci.VirtioPciDevice;
import io.jvirtio.transport.mmio.MmioHost;
import io.jvirtio.transport.mmio.VirtioMmio;
import io.jvirtio.transport.mmio.VirtioMmioDevice;

import java.util.ArrayList;
import java.util.List;

/**
 * The in-process machine: guest RAM (a memfd, so a vhost-user peer could map it), a PCI bus 0 whose
 * slots hold virtio-pci functions, a 64-bit MMIO window where BARs are placed, and an interrupt
 * controller whose vCPU thread runs the drivers' interrupt handlers.
 *
 * <p>It is the {@link PciHost} the driver side sees: configuration accesses go to the function in the
 * slot; MMIO accesses go to whichever function decodes the address in one of its BARs, exactly as on a
 * real host bridge; MSI writes to {@link #MSI_ADDRESS} raise the vector in their data.
 */
public final class Machine implements PciHost, MmioHost, AutoCloseable {
    /** Guest-physical base of RAM. */
    public static final long RAM_BASE = 0x1_0000_0000L;
    /** Where firmware places memory BARs (above RAM, 64-bit). */
    public static final long MMIO_BASE = 0xE000_0000L;
    public static final long MMIO_SIZE = 0x1000_0000L;
    /** The MSI doorbell address, as on x86 (the local APIC window). */
    public static final long MSI_ADDRESS = 0xFEE0_0000L;
    /** Where virtio-mmio devices sit, one 0x200 window each (below the PCI window). */
    public static final long MMIO_DEVICES_BASE = 0xD000_0000L;
    public static final int MMIO_DEVICE_SLOTS = 32;

    private final GuestMemory memory;
    private final GuestAllocator dma;
    private final InterruptController irq = new InterruptController();
    private final PciFunction[] slots = new PciFunction[32];
    private final int[] intxVector = new int[32];
    private final boolean[] intxLevel = new boolean[32];
    private volatile Window[] decode = new Window[0];
    private volatile Window[] ioDecode = new Window[0];
    private final VirtioMmioDevice[] mmioDevices = new VirtioMmioDevice[MMIO_DEVICE_SLOTS];
    private final int[] mmioIrqVector = new int[MMIO_DEVICE_SLOTS];
    private final boolean[] mmioIrqLevel = new boolean[MMIO_DEVICE_SLOTS];
    private long nextMmio = MMIO_BASE;
    private long nextPio = 0xc000;

    /** What answers accesses to one window of the address space. */
    private interface Region {
        long read(long offset, int size);

        void write(long offset, int size, long value);
    }

    /** One decoded window: a PCI BAR or a virtio-mmio register window. */
    private record Window(long base, long size, Region region) {
    }

    /** Where a virtio-mmio device is, as a device tree would describe it. */
    public record MmioSlot(long base, int irq) {
    }

    /** A machine with {@code ramBytes} of guest RAM at {@link #RAM_BASE}. */
    public Machine(long ramBytes) throws NativeException {
        this.memory = GuestMemory.memfd(RAM_BASE, ramBytes);
        this.dma = new GuestAllocator(memory, RAM_BASE, ramBytes);
        java.util.Arrays.fill(intxVector, -1);
        java.util.Arrays.fill(mmioIrqVector, -1);
    }

    /** Plugs a virtio device into the next virtio-mmio window, with its own interrupt line. */
    public synchronized MmioSlot plugMmio(VirtioDeviceModel model) {
        for (int n = 0; n < MMIO_DEVICE_SLOTS; n++) {
            if (mmioDevices[n] == null) {
                int line = n;
                long base = MMIO_DEVICES_BASE + (long) n * VirtioMmio.WINDOW;
                mmioDevices[n] = new VirtioMmioDevice(model, memory, String.format("virtio-mmio@0x%x", base),
                        level -> setMmioIrq(line, level));
                remap();
                return new MmioSlot(base, n);
            }
        }
        throw new IllegalStateException("no free virtio-mmio slot");
    }

    public GuestMemory memory() {
        return memory;
    }

    /** Plugs a virtio device into the first free slot (from 3, as QEMU leaves 0–2 to the chipset). */
    public synchronized int plug(VirtioDeviceModel model) {
        return plug(model, model.numQueues() + 1);
    }

    /** Plugs a device with an MSI-X table of {@code msixVectors} entries (0: no MSI-X, INTx only). */
    public synchronized int plug(VirtioDeviceModel model, int msixVectors) {
        return plug(model, msixVectors, false);
    }

    /**
     * Plugs a device; a {@code transitional} one also answers on the legacy I/O BAR with a transitional
     * device id, as QEMU's {@code disable-legacy=off}.
     */
    public synchronized int plug(VirtioDeviceModel model, int msixVectors, boolean transitional) {
        for (int slot = 3; slot < 32; slot++) {
            if (slots[slot] == null) {
                plug(slot, new VirtioPciDevice(model, memory, Pci.bdf(slot, 0), msixVectors, transitional));
                return slot;
            }
        }
        throw new IllegalStateException("no free PCI slot");
    }

    public synchronized void plug(int slot, PciFunction function) {
        if (slots[slot] != null) {
            throw new IllegalStateException("slot " + slot + " is occupied");
        }
        slots[slot] = function;
        function.connect(new PciInterrupts() {
            @Override
            public void msi(long address, int data) {
                if (address == MSI_ADDRESS) {
                    irq.raise(data);
                }
            }

            @Override
            public void intx(boolean asserted) {
                setIntx(slot, asserted);
            }
        });
        remap();
    }

    @Override
    public synchronized void attachIrq(int line, Runnable handler) {
        // Level-triggered, like INTx: while the line stays asserted after the handler ran, run it again.
        int[] self = new int[1];
        self[0] = irq.allocate(() -> {
            handler.run();
            if (mmioIrqLevel[line]) {
                irq.raise(self[0]);
            }
        });
        mmioIrqVector[line] = self[0];
        if (mmioIrqLevel[line]) {
            irq.raise(self[0]);
        }
    }

    @Override
    public synchronized void detachIrq(int line) {
        if (mmioIrqVector[line] >= 0) {
            irq.free(mmioIrqVector[line]);
            mmioIrqVector[line] = -1;
        }
    }

    private void setMmioIrq(int line, boolean level) {
        int v;
        synchronized (this) {
            mmioIrqLevel[line] = level;
            v = mmioIrqVector[line];
        }
        if (level && v >= 0) {
            irq.raise(v);
        }
    }

    /** Removes the function in {@code slot} (after its driver let go): it is reset and disappears. */
    public synchronized void unplug(int slot) {
        PciFunction f = slots[slot];
        if (f instanceof VirtioPciDevice v) {
            v.reset();
        }
        slots[slot] = null;
        remap();
    }

    public synchronized PciFunction function(int slot) {
        return slots[slot];
    }

    /** Interrupts delivered so far. */
    public long interruptsDelivered() {
        return irq.delivered();
    }

    // ---- PciHost ---------------------------------------------------------------------------------

    @Override
    public int configRead(int device, int offset, int size) {
        PciFunction f = device >= 0 && device < 32 ? slots[device] : null;
        if (f == null) {
            return size == 4 ? -1 : (1 << (8 * size)) - 1; // no device: all ones
        }
        return f.configRead(offset, size);
    }

    @Override
    public void configWrite(int device, int offset, int size, int value) {
        PciFunction f = device >= 0 && device < 32 ? slots[device] : null;
        if (f == null) {
            return;
        }
        f.configWrite(offset, size, value);
        if (offset < Pci.BAR0 + 4 * Pci.BAR_COUNT && offset + size > Pci.COMMAND) {
            remap();
        }
    }

    /** The window of {@code table} that decodes all of {@code [address, address+size)}, or null. */
    private static Window decode(Window[] table, long address, int size) {
        for (Window w : table) {
            long off = address - w.base;
            if (off >= 0 && off + size <= w.size) {
                return w;
            }
        }
        return null;
    }

    private static long read(Window[] table, long address, int size) {
        Window w = decode(table, address, size);
        // an address nobody decodes: the master abort reads all ones
        return w != null ? w.region.read(address - w.base, size) : size == 8 ? -1L : (1L << (8 * size)) - 1;
    }

    private static void write(Window[] table, long address, int size, long value) {
        Window w = decode(table, address, size);
        if (w != null) {
            w.region.write(address - w.base, size, value);
        }
    }

    @Override
    public long mmioRead(long address, int size) {
        return read(decode, address, size);
    }

    @Override
    public void mmioWrite(long address, int size, long value) {
        write(decode, address, size, value);
    }

    @Override
    public long pioRead(long port, int size) {
        return read(ioDecode, port, size);
    }

    @Override
    public void pioWrite(long port, int size, long value) {
        write(ioDecode, port, size, value);
    }

    @Override
    public synchronized long allocateBarSpace(long size, boolean io) {
        if (io) {
            long at = (nextPio + size - 1) & -size;
            nextPio = at + size;
            return at;
        }
        long at = (nextMmio + size - 1) & -size;
        if (at + size > MMIO_BASE + MMIO_SIZE) {
            throw new IllegalStateException("MMIO window exhausted");
        }
        nextMmio = at + size;
        return at;
    }

    @Override
    public MsiVector allocateMsi(Runnable handler) {
        return new MsiVector(MSI_ADDRESS, irq.allocate(handler));
    }

    @Override
    public void freeMsi(MsiVector vector) {
        irq.free(vector.data());
    }

    @Override
    public synchronized void attachIntx(int device, Runnable handler) {
        // Level-triggered: while the line stays asserted after the handler ran, run it again.
        int[] self = new int[1];
        self[0] = irq.allocate(() -> {
            handler.run();
            if (intxLevel[device]) {
                irq.raise(self[0]);
            }
        });
        intxVector[device] = self[0];
        if (intxLevel[device]) {
            irq.raise(self[0]);
        }
    }

    @Override
    public synchronized void detachIntx(int device) {
        if (intxVector[device] >= 0) {
            irq.free(intxVector[device]);
            intxVector[device] = -1;
        }
    }

    private void setIntx(int slot, boolean level) {
        int v;
        synchronized (this) {
            intxLevel[slot] = level;
            v = intxVector[slot];
        }
        if (level && v >= 0) {
            irq.raise(v);
        }
    }

    @Override
    public GuestAllocator dma() {
        return dma;
    }

    /** Rebuilds the address decode table from every function's BARs and command register. */
    private synchronized void remap() {
        List<Window> mem = new ArrayList<>();
        List<Window> io = new ArrayList<>();
        for (PciFunction f : slots) {
            if (f == null) {
                continue;
            }
            for (int bar = 0; bar < Pci.BAR_COUNT; bar++) {
                long base = f.barAddress(bar);
                if (base >= 0) {
                    int b = bar;
                    Region r = new Region() {
                        public long read(long offset, int size) {
                            return f.barRead(b, offset, size);
                        }

                        public void write(long offset, int size, long value) {
                            f.barWrite(b, offset, size, value);
                        }
                    };
                    (f.barIsIo(bar) ? io : mem).add(new Window(base, f.barSize(bar), r));
                }
            }
        }
        for (int n = 0; n < MMIO_DEVICE_SLOTS; n++) {
            VirtioMmioDevice d = mmioDevices[n];
            if (d != null) {
                Region r = new Region() {
                    public long read(long offset, int size) {
                        return d.read(offset, size);
                    }

                    public void write(long offset, int size, long value) {
                        d.write(offset, size, value);
                    }
                };
                mem.add(new Window(MMIO_DEVICES_BASE + (long) n * VirtioMmio.WINDOW, VirtioMmio.WINDOW, r));
            }
        }
        decode = mem.toArray(Window[]::new);
        ioDecode = io.toArray(Window[]::new);
    }

    /** Resets every device (so device threads stop), stops the vCPU and unmaps guest RAM. */
    @Override
    public void close() {
        for (int slot = 0; slot < 32; slot++) {
            if (slots[slot] instanceof VirtioPciDevice v) {
                v.reset();
            }
        }
        for (VirtioMmioDevice d : mmioDevices) {
            if (d != null) {
                d.reset();
            }
        }
        irq.close();
        memory.close();
    }
}
