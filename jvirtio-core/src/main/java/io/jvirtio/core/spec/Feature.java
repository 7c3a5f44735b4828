package io.jvirtio.core.spec;

import java.util.StringJoiner;

/**
 * Feature bits: the device-independent ("reserved") bits of VIRTIO 1.2 §6 and the device-specific bits
 * of the device types jvirtio implements (§5.1.3 net, §5.2.3 block, §5.3.3 console; entropy has none).
 * A device-specific bit means something only together with its {@link #deviceType()}.
 */
public enum Feature {
    // §6 Reserved Feature Bits (24..41)
    NOTIFY_ON_EMPTY(null, 24, true),
    ANY_LAYOUT(null, 27, true),
    INDIRECT_DESC(null, 28, false),
    EVENT_IDX(null, 29, false),
    VERSION_1(null, 32, false),
    ACCESS_PLATFORM(null, 33, false),
    RING_PACKED(null, 34, false),
    IN_ORDER(null, 35, false),
    ORDER_PLATFORM(null, 36, false),
    SR_IOV(null, 37, false),
    NOTIFICATION_DATA(null, 38, false),
    NOTIF_CONFIG_DATA(null, 39, false),
    RING_RESET(null, 40, false),

    // §5.1.3 Network device
    NET_CSUM(DeviceType.NET, 0, false),
    NET_GUEST_CSUM(DeviceType.NET, 1, false),
    NET_CTRL_GUEST_OFFLOADS(DeviceType.NET, 2, false),
    NET_MTU(DeviceType.NET, 3, false),
    NET_MAC(DeviceType.NET, 5, false),
    NET_GSO(DeviceType.NET, 6, true),
    NET_GUEST_TSO4(DeviceType.NET, 7, false),
    NET_GUEST_TSO6(DeviceType.NET, 8, false),
    NET_GUEST_ECN(DeviceType.NET, 9, false),
    NET_GUEST_UFO(DeviceType.NET, 10, false),
    NET_HOST_TSO4(DeviceType.NET, 11, false),
    NET_HOST_TSO6(DeviceType.NET, 12, false),
    NET_HOST_ECN(DeviceType.NET, 13, false),
    NET_HOST_UFO(DeviceType.NET, 14, false),
    NET_MRG_RXBUF(DeviceType.NET, 15, false),
    NET_STATUS(DeviceType.NET, 16, false),
    NET_CTRL_VQ(DeviceType.NET, 17, false),
    NET_CTRL_RX(DeviceType.NET, 18, false),
    NET_CTRL_VLAN(DeviceType.NET, 19, false),
    NET_CTRL_RX_EXTRA(DeviceType.NET, 20, false),
    NET_GUEST_ANNOUNCE(DeviceType.NET, 21, false),
    NET_MQ(DeviceType.NET, 22, false),
    NET_CTRL_MAC_ADDR(DeviceType.NET, 23, false),
    // GUEST_USO4/6: VIRTIO 1.3 §5.1.3 (virtio-spec issue 120), what Linux 6.2+ and QEMU 8.2+ negotiate
    NET_GUEST_USO4(DeviceType.NET, 54, false),
    NET_GUEST_USO6(DeviceType.NET, 55, false),
    NET_HOST_USO(DeviceType.NET, 56, false),
    NET_HASH_REPORT(DeviceType.NET, 57, false),
    NET_GUEST_HDRLEN(DeviceType.NET, 59, false),
    NET_RSS(DeviceType.NET, 60, false),
    NET_RSC_EXT(DeviceType.NET, 61, false),
    NET_STANDBY(DeviceType.NET, 62, false),
    NET_SPEED_DUPLEX(DeviceType.NET, 63, false),

    // §5.2.3 Block device
    BLK_BARRIER(DeviceType.BLOCK, 0, true),
    BLK_SIZE_MAX(DeviceType.BLOCK, 1, false),
    BLK_SEG_MAX(DeviceType.BLOCK, 2, false),
    BLK_GEOMETRY(DeviceType.BLOCK, 4, false),
    BLK_RO(DeviceType.BLOCK, 5, false),
    BLK_BLK_SIZE(DeviceType.BLOCK, 6, false),
    BLK_SCSI(DeviceType.BLOCK, 7, true),
    BLK_FLUSH(DeviceType.BLOCK, 9, false),
    BLK_TOPOLOGY(DeviceType.BLOCK, 10, false),
    BLK_CONFIG_WCE(DeviceType.BLOCK, 11, false),
    BLK_MQ(DeviceType.BLOCK, 12, false),
    BLK_DISCARD(DeviceType.BLOCK, 13, false),
    BLK_WRITE_ZEROES(DeviceType.BLOCK, 14, false),
    BLK_LIFETIME(DeviceType.BLOCK, 15, false),
    BLK_SECURE_ERASE(DeviceType.BLOCK, 16, false),

    // §5.3.3 Console device
    CONSOLE_SIZE(DeviceType.CONSOLE, 0, false),
    CONSOLE_MULTIPORT(DeviceType.CONSOLE, 1, false),
    CONSOLE_EMERG_WRITE(DeviceType.CONSOLE, 2, false);

    /** First and last device-independent bit (§6): bits 0–23 and 42–49 are device-specific, 50–127 likewise. */
    public static final int RESERVED_FIRST = 24;
    public static final int RESERVED_LAST = 41;

    private final DeviceType deviceType;
    private final int bit;
    private final boolean legacyOnly;

    Feature(DeviceType deviceType, int bit, boolean legacyOnly) {
        this.deviceType = deviceType;
        this.bit = bit;
        this.legacyOnly = legacyOnly;
    }

    /** The device type this bit belongs to, or null for a device-independent bit. */
    public DeviceType deviceType() {
        return deviceType;
    }

    public int bit() {
        return bit;
    }

    public long mask() {
        return 1L << bit;
    }

    /** Only meaningful with the legacy interface; a modern device does not offer it. */
    public boolean legacyOnly() {
        return legacyOnly;
    }

    /** The spec's name, e.g. {@code VIRTIO_F_VERSION_1}, {@code VIRTIO_BLK_F_FLUSH}. */
    public String specName() {
        String n = name();
        if (deviceType == null) {
            return "VIRTIO_F_" + n;
        }
        int u = n.indexOf('_');
        return "VIRTIO_" + n.substring(0, u) + "_F_" + n.substring(u + 1);
    }

    public boolean isSet(long features) {
        return (features & mask()) != 0;
    }

    /** True when {@code bit} is device-independent (§6). */
    public static boolean isReserved(int bit) {
        return bit >= RESERVED_FIRST && bit <= RESERVED_LAST;
    }

    /** Bitwise OR of the given features. */
    public static long maskOf(Feature... features) {
        long m = 0;
        for (Feature f : features) {
            m |= f.mask();
        }
        return m;
    }

    /** Names every set bit for {@code type}, unknown bits as {@code bit N}. */
    public static String describe(DeviceType type, long features) {
        StringJoiner j = new StringJoiner(" ");
        for (int bit = 0; bit < 64; bit++) {
            if ((features & (1L << bit)) == 0) {
                continue;
            }
            Feature match = null;
            for (Feature f : values()) {
                if (f.bit == bit && (f.deviceType == null ? isReserved(bit) : f.deviceType == type)) {
                    match = f;
                    break;
                }
            }
            j.add(match != null ? match.specName() : "bit" + bit);
        }
        return j.toString();
    }
}
