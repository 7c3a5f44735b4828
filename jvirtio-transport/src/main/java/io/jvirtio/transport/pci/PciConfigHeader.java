package io.jvirtio.transport.pci;

import io.jvirtio.core.spec.DeviceType;

import static io.jvirtio.transport.pci.VirtioPciCap.*;

/**
 * The PCI configuration space of a virtio-pci function (PCI 3.0 §6.1, VIRTIO 1.2 §4.1.2–§4.1.4): the header
 * with its ids, COMMAND and STATUS, the BAR registers and where the BARs are, and the capability list —
 * MSI-X and the five virtio capabilities — with the fields a driver may write. The layout is QEMU's: BAR0 the
 * legacy I/O BAR of a transitional device, BAR1 the MSI-X table and PBA, BAR4 (64-bit) the virtio structures.
 * Not thread-safe: the function calls it under its own lock.
 */
final class PciConfigHeader {
    static final int LEGACY_BAR = 0;
    static final int MSIX_BAR = 1;
    static final int VIRTIO_BAR = 4;
    static final long VIRTIO_BAR_SIZE = 0x4000;
    static final int COMMON_OFFSET = 0x0000;
    static final int ISR_OFFSET = 0x1000;
    static final int DEVICE_OFFSET = 0x2000;
    static final int NOTIFY_OFFSET = 0x3000;
    static final int NOTIFY_MULTIPLIER = 4;
    static final int NOTIFY_LENGTH = 0x1000;

    static final int CAP_MSIX = 0x40;
    static final int CAP_COMMON = 0x50;
    static final int CAP_ISR = 0x60;
    static final int CAP_DEVICE = 0x70;
    static final int CAP_NOTIFY = 0x80;
    static final int CAP_PCI_CFG = 0x98;

    private final byte[] config = new byte[Pci.CONFIG_SPACE_SIZE];
    private final long[] barAddress = new long[Pci.BAR_COUNT];
    private final boolean transitional;
    private final int msixEntries;
    private final long legacyBarSize;
    /**
     * BAR1: the MSI-X table from 0, the PBA from the middle — 4 KiB and 0x800 up to 128 vectors, then twice the
     * table rounded up to a power of two (QEMU's msix_init_exclusive_bar), so 2048 vectors' table never runs
     * into the PBA.
     */
    private final long msixBarSize;

    /**
     * @param msixEntries MSI-X table size, 0 for no MSI-X capability
     * @param configSize  the device configuration's size (the legacy BAR holds it after its registers)
     */
    PciConfigHeader(DeviceType type, boolean transitional, int msixEntries, int configSize) {
        this.transitional = transitional;
        this.msixEntries = msixEntries;
        this.legacyBarSize = transitional ? Math.max(32, Long.highestOneBit(24 + configSize - 1) << 1) : 0;
        long table = (long) msixEntries * Pci.MSIX_ENTRY_SIZE;
        this.msixBarSize = Math.max(0x1000, 2 * (table <= 1 ? 1 : Long.highestOneBit(table - 1) << 1));
        build(type);
    }

    private void build(DeviceType type) {
        put16(Pci.VENDOR_ID, Pci.VIRTIO_VENDOR);
        if (transitional) {
            // §4.1.2.3: transitional ids, revision 0, the device type in the subsystem id
            put16(Pci.DEVICE_ID, legacyDeviceId(type));
            put16(Pci.SUBSYSTEM_ID, type.id());
        } else {
            put16(Pci.DEVICE_ID, Pci.VIRTIO_MODERN_BASE + type.id());
            put16(Pci.SUBSYSTEM_ID, 0x1100);
            config[Pci.REVISION_ID] = 1; // §4.1.2.1: non-transitional devices SHOULD have revision ≥ 1
        }
        int cls = switch (type) {
            case NET -> 0x020000;
            case BLOCK -> 0x010000;
            case CONSOLE -> 0x078000;
            default -> 0xff0000;
        };
        config[Pci.CLASS_PROG] = (byte) cls;
        config[Pci.CLASS_PROG + 1] = (byte) (cls >> 8);
        config[Pci.CLASS_PROG + 2] = (byte) (cls >> 16);
        put16(Pci.STATUS, Pci.STATUS_CAP_LIST);
        put16(Pci.SUBSYSTEM_VENDOR_ID, Pci.VIRTIO_VENDOR);
        config[Pci.CAPABILITY_LIST] = (byte) (msixEntries > 0 ? CAP_MSIX : CAP_COMMON);
        config[Pci.INTERRUPT_PIN] = 1; // INTA#

        if (msixEntries > 0) {
            // MSI-X: table size N-1, table in BAR1 at 0, PBA in BAR1's second half
            config[CAP_MSIX] = Pci.CAP_ID_MSIX;
            config[CAP_MSIX + 1] = (byte) CAP_COMMON;
            put16(CAP_MSIX + Pci.MSIX_CONTROL, msixEntries - 1);
            put32(CAP_MSIX + Pci.MSIX_TABLE, MSIX_BAR);
            put32(CAP_MSIX + Pci.MSIX_PBA, (int) pbaOffset() | MSIX_BAR);
        }

        virtioCap(CAP_COMMON, CAP_ISR, COMMON_CFG, VIRTIO_BAR, COMMON_OFFSET, 0x1000, SIZE);
        virtioCap(CAP_ISR, CAP_DEVICE, ISR_CFG, VIRTIO_BAR, ISR_OFFSET, 0x1000, SIZE);
        virtioCap(CAP_DEVICE, CAP_NOTIFY, DEVICE_CFG, VIRTIO_BAR, DEVICE_OFFSET, 0x1000, SIZE);
        virtioCap(CAP_NOTIFY, CAP_PCI_CFG, NOTIFY_CFG, VIRTIO_BAR, NOTIFY_OFFSET, NOTIFY_LENGTH, SIZE + 4);
        put32(CAP_NOTIFY + NOTIFY_OFF_MULTIPLIER, NOTIFY_MULTIPLIER);
        virtioCap(CAP_PCI_CFG, 0, PCI_CFG, 0, 0, 0, SIZE + 4);
    }

    /** Where the MSI-X pending-bit array starts in BAR1. */
    long pbaOffset() {
        return msixBarSize / 2;
    }

    /** §4.1.2.3 Transitional PCI Device ID table. */
    static int legacyDeviceId(DeviceType type) {
        return switch (type) {
            case NET -> 0x1000;
            case BLOCK -> 0x1001;
            case BALLOON -> 0x1002;
            case CONSOLE -> 0x1003;
            case SCSI -> 0x1004;
            case ENTROPY -> 0x1005;
            case NINEP -> 0x1009;
            default -> throw new IllegalArgumentException(type + " has no transitional device id");
        };
    }

    private void virtioCap(int at, int next, int type, int bar, int offset, int length, int len) {
        config[at] = Pci.CAP_ID_VNDR;
        config[at + 1] = (byte) next;
        config[at + CAP_LEN] = (byte) len;
        config[at + CFG_TYPE] = (byte) type;
        config[at + BAR] = (byte) bar;
        put32(at + OFFSET, offset);
        put32(at + LENGTH, length);
    }

    /** A read of the header and capabilities (BAR registers composed from their addresses). */
    int read(int offset, int size) {
        if (offset < 0 || offset + size > Pci.CONFIG_SPACE_SIZE) {
            return -1;
        }
        if (offset >= Pci.BAR0 && offset < Pci.BAR0 + 4 * Pci.BAR_COUNT) {
            int v = 0;
            for (int i = 0; i < size; i++) {
                int reg = (offset + i - Pci.BAR0) / 4;
                int shift = 8 * ((offset + i - Pci.BAR0) % 4);
                v |= ((barRegister(reg) >>> shift) & 0xff) << (8 * i);
            }
            return v;
        }
        int v = 0;
        for (int i = 0; i < size; i++) {
            v |= (config[offset + i] & 0xff) << (8 * i);
        }
        return v;
    }

    /** A byte the driver writes: only the writable fields change (the rest is read-only). */
    void writeByte(int at, int b) {
        if (at >= Pci.BAR0 && at < Pci.BAR0 + 4 * Pci.BAR_COUNT) {
            int reg = (at - Pci.BAR0) / 4;
            int shift = 8 * ((at - Pci.BAR0) % 4);
            writeBarByte(reg, shift, b);
            return;
        }
        switch (at) {
            case Pci.COMMAND -> config[at] = (byte) (b & (Pci.COMMAND_IO | Pci.COMMAND_MEMORY | Pci.COMMAND_MASTER));
            case Pci.COMMAND + 1 -> config[at] = (byte) (b & (Pci.COMMAND_INTX_DISABLE >> 8));
            case Pci.INTERRUPT_LINE -> config[at] = (byte) b;
            case CAP_MSIX + Pci.MSIX_CONTROL + 1 -> {
                if (msixEntries > 0) {
                    config[at] = (byte) ((config[at] & 0x3f) | (b & 0xc0)); // enable and function mask
                }
            }
            case CAP_PCI_CFG + BAR, CAP_PCI_CFG + OFFSET, CAP_PCI_CFG + OFFSET + 1, CAP_PCI_CFG + OFFSET + 2,
                 CAP_PCI_CFG + OFFSET + 3, CAP_PCI_CFG + LENGTH, CAP_PCI_CFG + LENGTH + 1,
                 CAP_PCI_CFG + LENGTH + 2, CAP_PCI_CFG + LENGTH + 3 -> config[at] = (byte) b;
            default -> {
                // read-only
            }
        }
    }

    /** The value a BAR register reads as: address bits above the size, plus its type bits. */
    private long barRegister(int reg) {
        return switch (reg) {
            case LEGACY_BAR -> transitional ? ((barAddress[LEGACY_BAR] & ~(legacyBarSize - 1)) & 0xffffffffL) | Pci.BAR_IO : 0;
            case MSIX_BAR -> msixEntries > 0 ? (barAddress[MSIX_BAR] & ~(msixBarSize - 1)) & 0xffffffffL : 0;
            case VIRTIO_BAR -> ((barAddress[VIRTIO_BAR] & ~(VIRTIO_BAR_SIZE - 1)) & 0xffffffffL)
                    | Pci.BAR_MEM_TYPE_64 | Pci.BAR_PREFETCH;
            case VIRTIO_BAR + 1 -> barAddress[VIRTIO_BAR] >>> 32;
            default -> 0;
        };
    }

    private void writeBarByte(int reg, int shift, int b) {
        switch (reg) {
            case LEGACY_BAR -> barAddress[LEGACY_BAR] = replaceByte(barAddress[LEGACY_BAR], shift, b) & 0xffffffffL;
            case MSIX_BAR -> barAddress[MSIX_BAR] = replaceByte(barAddress[MSIX_BAR], shift, b) & 0xffffffffL;
            case VIRTIO_BAR -> barAddress[VIRTIO_BAR] = replaceByte(barAddress[VIRTIO_BAR], shift, b);
            case VIRTIO_BAR + 1 -> barAddress[VIRTIO_BAR] = replaceByte(barAddress[VIRTIO_BAR], shift + 32, b);
            default -> {
                // unimplemented BARs are hard-wired to zero
            }
        }
    }

    private static long replaceByte(long v, int shift, int b) {
        return (v & ~(0xffL << shift)) | ((long) (b & 0xff) << shift);
    }

    /** Where BAR {@code bar} is decoded, or -1 while it is not (unassigned, or decoding off in COMMAND). */
    long barAddress(int bar) {
        int cmd = config[Pci.COMMAND];
        int decode = barIsIo(bar) ? Pci.COMMAND_IO : Pci.COMMAND_MEMORY;
        if ((cmd & decode) == 0 || barSize(bar) == 0) {
            return -1;
        }
        long a = barAddress[bar] & ~(barSize(bar) - 1);
        return a == 0 ? -1 : a;
    }

    long barSize(int bar) {
        return switch (bar) {
            case LEGACY_BAR -> legacyBarSize;
            case MSIX_BAR -> msixEntries > 0 ? msixBarSize : 0;
            case VIRTIO_BAR -> VIRTIO_BAR_SIZE;
            default -> 0;
        };
    }

    boolean barIsIo(int bar) {
        return bar == LEGACY_BAR && transitional;
    }

    /** MSI-X Enable in the capability's Message Control. */
    boolean msixEnabled() {
        return msixEntries > 0 && (config[CAP_MSIX + Pci.MSIX_CONTROL + 1] & (Pci.MSIX_CONTROL_ENABLE >> 8)) != 0;
    }

    /** MSI-X Function Mask: every vector masked. */
    boolean msixFunctionMasked() {
        return (get16(CAP_MSIX + Pci.MSIX_CONTROL) & Pci.MSIX_CONTROL_MASKALL) != 0;
    }

    /** COMMAND's Interrupt Disable: INTx may not be asserted. */
    boolean intxDisabled() {
        return (get16(Pci.COMMAND) & Pci.COMMAND_INTX_DISABLE) != 0;
    }

    /** STATUS's Interrupt Status bit (pci-dev-21: set while an INTx interrupt is pending, disabled or not). */
    void interruptStatus(boolean pending) {
        int st = get16(Pci.STATUS);
        put16(Pci.STATUS, pending ? st | Pci.STATUS_INTERRUPT : st & ~Pci.STATUS_INTERRUPT);
    }

    /** The PCI configuration access capability's window (§4.1.4.9): bar, offset, length. */
    int pciCfgBar() {
        return config[CAP_PCI_CFG + BAR] & 0xff;
    }

    long pciCfgOffset() {
        return get32(CAP_PCI_CFG + OFFSET) & 0xffffffffL;
    }

    int pciCfgLength() {
        return get32(CAP_PCI_CFG + LENGTH);
    }

    void put16(int at, int v) {
        config[at] = (byte) v;
        config[at + 1] = (byte) (v >> 8);
    }

    private void put32(int at, int v) {
        put16(at, v);
        put16(at + 2, v >> 16);
    }

    int get16(int at) {
        return (config[at] & 0xff) | (config[at + 1] & 0xff) << 8;
    }

    int get32(int at) {
        return get16(at) | get16(at + 2) << 16;
    }
}
