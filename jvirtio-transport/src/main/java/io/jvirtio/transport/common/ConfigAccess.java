package io.jvirtio.transport.common;

/**
 * How a driver reads one device-configuration field (§4.1.3.1 pci-drv-3, §4.2.2.2 mmio-drv-2): with an
 * access of the field's own width — 8-bit fields with 8-bit accesses, 16-bit with 16-bit, 32-bit with
 * 32-bit, 64-bit as two 32-bit halves — and byte arrays (a MAC address) byte by byte. The width comes from
 * the field, never from the alignment of its offset.
 */
public final class ConfigAccess {
    private ConfigAccess() {
    }

    /** The access width for a field of {@code length} bytes. */
    public static int width(int length) {
        return switch (length) {
            case 1, 2, 4 -> length;
            case 8 -> 4;
            default -> 1;
        };
    }
}
