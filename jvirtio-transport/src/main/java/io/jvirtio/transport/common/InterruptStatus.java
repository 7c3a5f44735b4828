package io.jvirtio.transport.common;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * The interrupt status a device keeps for its driver, the same on both transports: the ISR status of virtio-pci
 * (§4.1.4.5, cleared by reading it) and InterruptStatus of virtio-mmio (§4.2.2, cleared by InterruptACK). Bit 0
 * says a queue has used buffers, bit 1 that the configuration changed. Lock-free: queue threads raise it while
 * the driver's accesses read and clear it.
 */
public final class InterruptStatus {
    /** A used-buffer notification (PCI: "queue interrupt"; MMIO: "Used Buffer Notification"). */
    public static final int USED_BUFFER = 0x1;
    /** A configuration change notification. */
    public static final int CONFIG_CHANGE = 0x2;

    private static final VarHandle BITS;

    static {
        try {
            BITS = MethodHandles.lookup().findVarHandle(InterruptStatus.class, "bits", int.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    @SuppressWarnings("unused") // through BITS
    private volatile int bits;

    public void raise(int cause) {
        BITS.getAndBitwiseOr(this, cause);
    }

    public int get() {
        return bits;
    }

    /** PCI: reading the ISR returns it and clears it, atomically, so no notification raised meanwhile is lost. */
    public int readAndClear() {
        return (int) BITS.getAndSet(this, 0);
    }

    /** MMIO InterruptACK: clears the bits in {@code ack}; returns whether any are still pending. */
    public boolean acknowledge(int ack) {
        return ((int) BITS.getAndBitwiseAnd(this, ~ack) & ~ack) != 0;
    }

    public void clear() {
        bits = 0;
    }
}
