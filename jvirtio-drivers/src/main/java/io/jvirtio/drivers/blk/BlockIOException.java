package io.jvirtio.drivers.blk;

import java.io.IOException;

/** A request the device completed with a status other than OK (§5.2.6: IOERR 1, UNSUPP 2). */
public final class BlockIOException extends IOException {
    /** VIRTIO_BLK_S_IOERR (§5.2.6). */
    public static final int S_IOERR = 1;

    private final int status;

    public BlockIOException(String request, int status) {
        super(request + " failed: " + switch (status) {
            case 1 -> "VIRTIO_BLK_S_IOERR";
            case 2 -> "VIRTIO_BLK_S_UNSUPP";
            default -> "status " + status;
        });
        this.status = status;
    }

    public int status() {
        return status;
    }
}
