package io.jvirtio.transport.pci;

/**
 * The legacy virtio-pci register block in I/O BAR0 (VIRTIO 1.2 §4.1.4.10) — defined once, for the device
 * ({@link VirtioPciDevice}) and the driver ({@link LegacyRegisters}).
 */
final class LegacyLayout {
    static final int HOST_FEATURES = 0;
    static final int GUEST_FEATURES = 4;
    static final int QUEUE_PFN = 8;
    static final int QUEUE_NUM = 12;
    static final int QUEUE_SEL = 14;
    static final int QUEUE_NOTIFY = 16;
    static final int STATUS = 18;
    static final int ISR = 19;
    /** Present only while MSI-X is enabled; the device configuration then starts after the two vectors. */
    static final int CONFIG_VECTOR = 20;
    static final int QUEUE_VECTOR = 22;
    /** The legacy ring layout's alignment, and the unit of QUEUE_PFN. */
    static final int QUEUE_ALIGN = 4096;

    /** Where the device configuration starts: after ISR, or after the MSI-X vector registers (§4.1.4.10). */
    static int configOffset(boolean msixEnabled) {
        return msixEnabled ? 24 : 20;
    }

    private LegacyLayout() {
    }
}
