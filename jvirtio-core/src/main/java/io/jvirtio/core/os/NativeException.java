package io.jvirtio.core.os;

import java.io.IOException;

/** A failed system call: names the call and carries {@code errno}. */
public final class NativeException extends IOException {
    private final String call;
    private final int errno;

    NativeException(String call, int errno, String detail) {
        super(call + " failed: errno " + errno + " (" + Posix.strerror(errno) + ")"
                + (detail.isEmpty() ? "" : ": " + detail));
        this.call = call;
        this.errno = errno;
    }

    /** The system call that failed, e.g. {@code "memfd_create"}. */
    public String call() {
        return call;
    }

    public int errno() {
        return errno;
    }
}
