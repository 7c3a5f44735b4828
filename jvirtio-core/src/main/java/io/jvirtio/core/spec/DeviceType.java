package io.jvirtio.core.spec;

import java.util.Optional;

/** Virtio device IDs, VIRTIO 1.2 §5 "Device Types". */
public enum DeviceType {
    NET(1, "network card"),
    BLOCK(2, "block device"),
    CONSOLE(3, "console"),
    ENTROPY(4, "entropy source"),
    BALLOON(5, "memory balloon (traditional)"),
    SCSI(8, "SCSI host"),
    NINEP(9, "9P transport"),
    RPROC_SERIAL(11, "rproc serial"),
    CAIF(12, "virtio CAIF"),
    GPU(16, "GPU device"),
    INPUT(18, "input device"),
    VSOCK(19, "socket device"),
    CRYPTO(20, "crypto device"),
    IOMMU(23, "IOMMU device"),
    MEMORY(24, "memory device"),
    SOUND(25, "sound device"),
    FS(26, "file system device"),
    PMEM(27, "PMEM device"),
    RPMB(28, "RPMB device"),
    WATCHDOG(35, "watchdog"),
    CAN(36, "CAN device"),
    SCMI(32, "SCMI device"),
    I2C(34, "I2C adapter"),
    GPIO(41, "GPIO device");

    private final int id;
    private final String description;

    DeviceType(int id, String description) {
        this.id = id;
        this.description = description;
    }

    public int id() {
        return id;
    }

    public String description() {
        return description;
    }

    public static Optional<DeviceType> of(int id) {
        for (DeviceType t : values()) {
            if (t.id == id) {
                return Optional.of(t);
            }
        }
        return Optional.empty();
    }
}
