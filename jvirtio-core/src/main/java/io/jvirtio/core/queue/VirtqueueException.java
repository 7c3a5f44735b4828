package io.jvirtio.core.queue;

/**
 * A queue met a {@link RingError}. Checked, so that a device worker cannot forget it: the worker turns it
 * into DEVICE_NEEDS_RESET rather than letting it escape its thread. Once thrown, the queue is broken and
 * throws the same error on every later use until it is reset.
 */
public final class VirtqueueException extends Exception {
    private final transient RingError error;
    private final int queueIndex;

    public VirtqueueException(int queueIndex, RingError error) {
        super("virtqueue " + queueIndex + ": " + error.message(), null, false, false);
        this.error = error;
        this.queueIndex = queueIndex;
    }

    public RingError error() {
        return error;
    }

    public int queueIndex() {
        return queueIndex;
    }
}
