package io.jvirtio.core.spec;

/**
 * The block device's wire format, VIRTIO 1.2 §5.2: configuration layout, request header, request types and
 * status values — defined once, for the device model and the driver.
 */
public final class Blk {
    public static final int SECTOR_SIZE = 512;

    // struct virtio_blk_config (§5.2.4)
    public static final int CFG_CAPACITY = 0;
    public static final int CFG_SIZE_MAX = 8;
    public static final int CFG_SEG_MAX = 12;
    public static final int CFG_BLK_SIZE = 20;
    public static final int CFG_PHYSICAL_BLOCK_EXP = 24;
    public static final int CFG_ALIGNMENT_OFFSET = 25;
    public static final int CFG_MIN_IO_SIZE = 26;
    public static final int CFG_OPT_IO_SIZE = 28;
    public static final int CFG_WRITEBACK = 32;
    public static final int CFG_NUM_QUEUES = 34;
    public static final int CFG_MAX_DISCARD_SECTORS = 36;
    public static final int CFG_MAX_DISCARD_SEG = 40;
    public static final int CFG_DISCARD_SECTOR_ALIGNMENT = 44;
    public static final int CFG_MAX_WRITE_ZEROES_SECTORS = 48;
    public static final int CFG_MAX_WRITE_ZEROES_SEG = 52;
    public static final int CFG_WRITE_ZEROES_MAY_UNMAP = 56;
    public static final int CONFIG_SIZE = 60;

    // struct virtio_blk_req (§5.2.6): le32 type, le32 reserved, le64 sector, data, u8 status
    public static final int HEADER_SIZE = 16;
    public static final int T_IN = 0;
    public static final int T_OUT = 1;
    public static final int T_FLUSH = 4;
    public static final int T_GET_ID = 8;
    public static final int T_DISCARD = 11;
    public static final int T_WRITE_ZEROES = 13;

    public static final int S_OK = 0;
    public static final int S_IOERR = 1;
    public static final int S_UNSUPP = 2;

    /** GET_ID answers with a 20-byte, NUL-padded serial (§5.2.6). */
    public static final int ID_BYTES = 20;

    /** struct virtio_blk_discard_write_zeroes: le64 sector, le32 num_sectors, le32 flags (bit 0: unmap). */
    public static final int DWZ_SEGMENT_SIZE = 16;
    public static final int DWZ_FLAG_UNMAP = 1;

    private Blk() {
    }
}
