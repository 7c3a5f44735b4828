package io.jvirtio.devices.blk;

import io.jvirtio.core.os.IoUring;

import java.util.Locale;

/** How a {@link FileBackend} runs its requests. */
public enum AioEngine {
    /** io_uring where the kernel allows it, else threads. */
    AUTO,
    /** io_uring: requests in flight in the kernel, one system call per batch, completions without one. */
    IO_URING,
    /** A small pool of threads per queue doing positional I/O: for kernels or sandboxes without io_uring. */
    THREADS;

    /** Parses {@code auto}, {@code io_uring} or {@code threads}. */
    public static AioEngine parse(String s) {
        try {
            return valueOf(s.toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("aio engine '" + s + "' is not auto, io_uring or threads");
        }
    }

    /** {@link #AUTO} decided: io_uring when usable here, else threads. */
    public AioEngine resolve() {
        if (this != AUTO) {
            return this;
        }
        return IoUring.unavailableReason() == null ? IO_URING : THREADS;
    }

    public String label() {
        return name().toLowerCase(Locale.ROOT);
    }
}
