package io.jvirtio.core.spec;

/**
 * The network device's wire format, VIRTIO 1.2 §5.1: configuration layout, the frame header and the control
 * queue's commands — defined once, for the device model and the driver.
 */
public final class Net {
    // struct virtio_net_config (§5.1.4)
    public static final int CFG_MAC = 0;
    public static final int CFG_STATUS = 6;
    public static final int CFG_MAX_VIRTQUEUE_PAIRS = 8;
    public static final int CFG_MTU = 10;
    public static final int CONFIG_SIZE = 12;
    public static final int S_LINK_UP = 1;

    /** struct virtio_net_hdr with VERSION_1: 12 bytes, num_buffers included (§5.1.6). */
    public static final int HDR_SIZE = 12;
    public static final int HDR_FLAGS = 0;
    public static final int HDR_GSO_TYPE = 1;
    public static final int HDR_NUM_BUFFERS = 10;
    /** gso_type: not a segmentation offload (a frame within the MTU). */
    public static final int HDR_GSO_NONE = 0;

    // control virtqueue (§5.1.6.5): u8 class, u8 command, data, u8 ack
    public static final int CTRL_RX = 0;
    public static final int CTRL_RX_PROMISC = 0;
    public static final int CTRL_RX_ALLMULTI = 1;
    public static final int CTRL_MAC = 1;
    public static final int CTRL_MAC_TABLE_SET = 0;
    public static final int CTRL_MAC_ADDR_SET = 1;
    public static final int CTRL_MQ = 4;
    public static final int CTRL_MQ_VQ_PAIRS_SET = 0;
    /** §5.1.6.5.6: le64 offloads, the GUEST_* feature bits the driver takes from now on. */
    public static final int CTRL_GUEST_OFFLOADS = 5;
    public static final int CTRL_GUEST_OFFLOADS_SET = 0;
    public static final int OK = 0;
    public static final int ERR = 1;

    public static final int MAX_FRAME = 1514;
    public static final int MTU = 1500;

    private Net() {
    }
}
