package io.jvirtio.drivers.blk;

import io.jvirtio.core.spec.Blk;

import java.io.IOException;

/** A request the device completed with a status other than OK (§5.2.6: IOERR 1, UNSUPP 2). */
public final class BlockIOException extends IOException {
    private final int status;

    public BlockIOException(String request, int status) {
        super(request + " failed: " + switch (status) {
            case Blk.S_IOERR -> "VIRTIO_BLK_S_IOERR";
            case Blk.S_UNSUPP -> "VIRTIO_BLK_S_UNSUPP";
            default -> "status " + status;
        });
        this.status = status;
    }

    public int status() {
        return status;
    }
}
