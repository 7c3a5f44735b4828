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
public final class Machine implements PciHost, AutoCloseable {
    /** Guest-physical base of RAM. */
    public static final long RAM_BASE = 0x1_0000_0000L;
    /** Where firmware places memory BARs (above RAM, 64-bit). */
    public static final long MMIO_BASE = 0xE000_0000L;
    public static final long MMIO_SIZE = 0x1000_0000L;
    /** The MSI doorbell address, as on x86 (the local APIC window). */
    public static final long MSI_ADDRESS = 0xFEE0_0000L;

    private final GuestMemory memory;
    private final GuestAllocator dma;
    private final InterruptController irq = new InterruptController();
    private final PciFunction[] slots = new PciFunction[32];
    private final int[] intxVector = new int[32];
    private final boolean[] intxLevel = new boolean[32];
    private volatile Bar[] decode = new Bar[0];
    private volatile Bar[] ioDecode = new Bar[0];
    private long nextMmio = MMIO_BASE;
    private long nextPio = 0xc000;

    /** One decoded BAR: the function behind {@code [base, base+size)}. */
    private record Bar(long base, long size, PciFunction function, int bar) {
    }

    /** A machine with {@code ramBytes} of guest RAM at {@link #RAM_BASE}. */
    public Machine(long ramBytes) throws NativeException {
        this.memory = GuestMemory.memfd(RAM_BASE, ramBytes);
        this.dma = new GuestAllocator(memory, RAM_BASE, ramBytes);
        java.util.Arrays.fill(intxVector, -1);
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

    /** The BAR of {@code table} that decodes all of {@code [address, address+size)}, or null. */
    private static Bar decode(Bar[] table, long address, int size) {
        for (Bar b : table) {
            long off = address - b.base;
            if (off >= 0 && off + size <= b.size) {
                return b;
            }
        }
        return null;
    }

    private static long read(Bar[] table, long address, int size) {
        Bar b = decode(table, address, size);
        // an address nobody decodes: the master abort reads all ones
        return b != null ? b.function.barRead(b.bar, address - b.base, size)
                : size == 8 ? -1L : (1L << (8 * size)) - 1;
    }

    private static void write(Bar[] table, long address, int size, long value) {
        Bar b = decode(table, address, size);
        if (b != null) {
            b.function.barWrite(b.bar, address - b.base, size, value);
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
        List<Bar> bars = new ArrayList<>();
        List<Bar> io = new ArrayList<>();
        for (PciFunction f : slots) {
            if (f == null) {
                continue;
            }
            for (int bar = 0; bar < Pci.BAR_COUNT; bar++) {
                long base = f.barAddress(bar);
                if (base >= 0) {
                    (f.barIsIo(bar) ? io : bars).add(new Bar(base, f.barSize(bar), f, bar));
                }
            }
        }
        decode = bars.toArray(Bar[]::new);
        ioDecode = io.toArray(Bar[]::new);
    }

    /** Resets every device (so device threads stop), stops the vCPU and unmaps guest RAM. */
    @Override
    public void close() {
        for (int slot = 0; slot < 32; slot++) {
            if (slots[slot] instanceof VirtioPciDevice v) {
                v.reset();
            }
        }
        irq.close();
        memory.close();
    }
}
