package io.jvirtio.transport.common;

import java.util.concurrent.TimeUnit;
import java.util.function.IntSupplier;

/**
 * After writing 0 to device_status the driver waits for it to read back 0 before it re-initialises the
 * device (§2.4.2 basic-drv-10, §4.1.4.3.2 pci-drv-15). The wait is bounded in time, not in polls: a device
 * that never completes its reset fails the probe with a clear error instead of being driven half-reset.
 */
public final class ResetWait {
    /** How long a device may take to reset. QEMU's and jvirtio's complete before the write returns. */
    public static final long TIMEOUT_MS = 1000;

    private ResetWait() {
    }

    /**
     * Polls {@code status} until it reads 0: briefly spinning, then once a millisecond.
     *
     * @throws IllegalStateException naming {@code device} and the last status when it never does
     */
    public static void await(IntSupplier status, String device) {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(TIMEOUT_MS);
        int s;
        for (int spins = 0; (s = status.getAsInt()) != 0; spins++) {
            if (System.nanoTime() - deadline > 0) {
                throw new IllegalStateException(String.format("%s did not complete its reset within %d ms "
                        + "(device_status still reads 0x%02x)", device, TIMEOUT_MS, s));
            }
            if (spins < 1000) {
                Thread.onSpinWait();
            } else {
                try {
                    Thread.sleep(1);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IllegalStateException(device + ": interrupted while waiting for its reset", e);
                }
            }
        }
    }
}
