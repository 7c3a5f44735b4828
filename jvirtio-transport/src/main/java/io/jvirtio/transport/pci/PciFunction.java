package io.jvirtio.transport.pci;

/**
 * The device side of one PCI function, as a bus sees it: configuration space accesses and accesses
 * to its BARs. Accesses are naturally aligned and 1, 2, 4 or (BARs only) 8 bytes wide, little-endian.
 */
public interface PciFunction {
    int configRead(int offset, int size);

    void configWrite(int offset, int size, int value);

    long barRead(int bar, long offset, int size);

    void barWrite(int bar, long offset, int size, long value);

    /**
     * Where BAR {@code bar} is currently decoded: its base address, or -1 when it is unassigned, not
     * implemented, or its decode (memory/IO enable in the command register) is off.
     */
    long barAddress(int bar);

    /** BAR size in bytes, 0 when not implemented. */
    long barSize(int bar);

    boolean barIsIo(int bar);

    /** Wires the function's interrupt outputs (done by the bus when the function is plugged). */
    void connect(PciInterrupts interrupts);
}
