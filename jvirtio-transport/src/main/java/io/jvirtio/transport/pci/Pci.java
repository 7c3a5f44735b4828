package io.jvirtio.transport.pci;

/** PCI Local Bus constants used by the virtio PCI transport (type 0 configuration header, capabilities). */
public final class Pci {
    public static final int VENDOR_ID = 0x00;
    public static final int DEVICE_ID = 0x02;
    public static final int COMMAND = 0x04;
    public static final int STATUS = 0x06;
    public static final int REVISION_ID = 0x08;
    public static final int CLASS_PROG = 0x09;
    public static final int HEADER_TYPE = 0x0e;
    public static final int BAR0 = 0x10;
    public static final int SUBSYSTEM_VENDOR_ID = 0x2c;
    public static final int SUBSYSTEM_ID = 0x2e;
    public static final int CAPABILITY_LIST = 0x34;
    public static final int INTERRUPT_LINE = 0x3c;
    public static final int INTERRUPT_PIN = 0x3d;
    public static final int CONFIG_SPACE_SIZE = 256;
    public static final int BAR_COUNT = 6;

    public static final int COMMAND_IO = 0x1;
    public static final int COMMAND_MEMORY = 0x2;
    public static final int COMMAND_MASTER = 0x4;
    public static final int COMMAND_INTX_DISABLE = 0x400;
    public static final int STATUS_INTERRUPT = 0x8;
    public static final int STATUS_CAP_LIST = 0x10;

    public static final int BAR_IO = 0x1;
    public static final int BAR_MEM_TYPE_64 = 0x4;
    public static final int BAR_PREFETCH = 0x8;

    public static final int CAP_ID_MSIX = 0x11;
    public static final int CAP_ID_VNDR = 0x09;

    /** MSI-X capability: message control at +2, table at +4, PBA at +8 (offset | BIR). */
    public static final int MSIX_CONTROL = 2;
    public static final int MSIX_TABLE = 4;
    public static final int MSIX_PBA = 8;
    public static final int MSIX_CONTROL_ENABLE = 0x8000;
    public static final int MSIX_CONTROL_MASKALL = 0x4000;
    public static final int MSIX_ENTRY_SIZE = 16;
    public static final int MSIX_ENTRY_VECTOR_CTRL_MASKBIT = 1;

    /** The Red Hat / virtio vendor id (§4.1.2). */
    public static final int VIRTIO_VENDOR = 0x1af4;
    /** Modern device ids are 0x1040 + virtio device id (§4.1.2). */
    public static final int VIRTIO_MODERN_BASE = 0x1040;
    /** Transitional device ids 0x1000..0x103f carry the device type in the subsystem id (§4.1.2.3). */
    public static final int VIRTIO_TRANSITIONAL_FIRST = 0x1000;
    public static final int VIRTIO_TRANSITIONAL_LAST = 0x103f;

    private Pci() {
    }

    /** {@code 0000:00:SS.F}, as lspci prints it. */
    public static String bdf(int device, int function) {
        return String.format("0000:00:%02x.%x", device, function);
    }
}
