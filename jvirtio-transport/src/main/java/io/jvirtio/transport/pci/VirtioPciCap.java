package io.jvirtio.transport.pci;

/**
 * The virtio PCI capability layout (VIRTIO 1.2 §4.1.4): {@code struct virtio_pci_cap} and the
 * {@code cfg_type} values, plus the common configuration structure's register offsets (§4.1.4.3).
 */
public final class VirtioPciCap {
    public static final int COMMON_CFG = 1;
    public static final int NOTIFY_CFG = 2;
    public static final int ISR_CFG = 3;
    public static final int DEVICE_CFG = 4;
    public static final int PCI_CFG = 5;

    /** struct virtio_pci_cap: cap_vndr, cap_next, cap_len, cfg_type, bar, id, padding[2], offset, length. */
    public static final int CAP_LEN = 2;
    public static final int CFG_TYPE = 3;
    public static final int BAR = 4;
    public static final int ID = 5;
    public static final int OFFSET = 8;
    public static final int LENGTH = 12;
    public static final int SIZE = 16;
    /** virtio_pci_notify_cap: notify_off_multiplier after the common part. */
    public static final int NOTIFY_OFF_MULTIPLIER = 16;
    /** virtio_pci_cfg_cap: pci_cfg_data[4] after the common part. */
    public static final int PCI_CFG_DATA = 16;

    // struct virtio_pci_common_cfg (§4.1.4.3)
    public static final int DEVICE_FEATURE_SELECT = 0;
    public static final int DEVICE_FEATURE = 4;
    public static final int DRIVER_FEATURE_SELECT = 8;
    public static final int DRIVER_FEATURE = 12;
    public static final int CONFIG_MSIX_VECTOR = 16;
    public static final int NUM_QUEUES = 18;
    public static final int DEVICE_STATUS = 20;
    public static final int CONFIG_GENERATION = 21;
    public static final int QUEUE_SELECT = 22;
    public static final int QUEUE_SIZE = 24;
    public static final int QUEUE_MSIX_VECTOR = 26;
    public static final int QUEUE_ENABLE = 28;
    public static final int QUEUE_NOTIFY_OFF = 30;
    public static final int QUEUE_DESC = 32;
    public static final int QUEUE_DRIVER = 40;
    public static final int QUEUE_DEVICE = 48;
    public static final int QUEUE_NOTIFY_DATA = 56;
    public static final int QUEUE_RESET = 58;
    public static final int COMMON_CFG_SIZE = 60;

    /** "No vector" for config_msix_vector / queue_msix_vector (§4.1.5.1.2). */
    public static final int NO_VECTOR = 0xffff;

    public static final int ISR_QUEUE = io.jvirtio.transport.common.InterruptStatus.USED_BUFFER;
    public static final int ISR_CONFIG = io.jvirtio.transport.common.InterruptStatus.CONFIG_CHANGE;

    private VirtioPciCap() {
    }
}
