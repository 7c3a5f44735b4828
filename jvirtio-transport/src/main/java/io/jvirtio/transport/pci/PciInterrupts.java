package io.jvirtio.transport.pci;

/** A PCI function's interrupt outputs: MSI-X message writes and its INTx pin. */
public interface PciInterrupts {
    /** A message-signalled interrupt: a DWORD write of {@code data} to {@code address}. */
    void msi(long address, int data);

    /** The level of the function's INTx line. */
    void intx(boolean asserted);
}
