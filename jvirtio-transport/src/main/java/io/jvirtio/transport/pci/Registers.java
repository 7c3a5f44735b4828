package io.jvirtio.transport.pci;

import io.jvirtio.bus.TransportException;
import io.jvirtio.core.queue.Doorbell;
import io.jvirtio.core.queue.RingAddresses;
import io.jvirtio.core.queue.split.SplitLayout;

/**
 * The virtio registers of one PCI function as the driver reaches them: the modern common configuration
 * structure (§4.1.4.3) or the legacy I/O BAR (§4.1.4.10). {@link VirtioPciConfigOps} does the rest —
 * queue allocation, MSI-X, interrupt fallback — the same way for both.
 */
interface Registers {
    int status();

    void status(int status);

    long deviceFeatures();

    void driverFeatures(long features);

    int generation();

    void readConfig(int offset, byte[] dst, int dstOffset, int length);

    void writeConfig(int offset, byte[] src);

    int numQueues();

    void selectQueue(int queue);

    /** The selected queue's maximum size; 0 when it does not exist. */
    int queueMaxSize();

    /** The ring layout for a queue of {@code size} entries (legacy rings are one contiguous block). */
    SplitLayout layout(int size);

    /** Programs the selected queue's size and ring addresses. */
    void queue(int size, RingAddresses addresses) throws TransportException;

    void queueVector(int vector);

    int queueVector();

    void configVector(int vector);

    int configVector();

    /** Makes the selected queue live (modern queue_enable; legacy queues are live once addressed). */
    void enableQueue();

    /** Detaches the selected queue's ring where the interface allows it (legacy: page frame 0). */
    void releaseQueue();

    /** How the driver notifies queue {@code queue}. */
    Doorbell doorbell(int queue) throws TransportException;

    /** Reads (and so clears) the ISR status. */
    int readIsr();

    /** {@code "modern"} or {@code "legacy"}. */
    String kind();
}
