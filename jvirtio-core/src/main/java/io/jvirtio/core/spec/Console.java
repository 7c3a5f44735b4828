package io.jvirtio.core.spec;

/**
 * The console device's wire format, VIRTIO 1.2 §5.3: the configuration layout — defined once, for the device
 * model and the driver.
 */
public final class Console {
    // struct virtio_console_config (§5.3.4): le16 cols, le16 rows, le32 max_nr_ports, le32 emerg_wr
    public static final int CFG_COLS = 0;
    public static final int CFG_ROWS = 2;
    public static final int CFG_MAX_NR_PORTS = 4;
    public static final int CFG_EMERG_WR = 8;
    public static final int CONFIG_SIZE = 12;

    private Console() {
    }
}
