package io.jvirtio.core.memory;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;

/**
 * A dirty-page log for live migration (vhost-user LOG_SHMFD, Linux vhost's log): one bit per 4 KiB page of
 * guest-physical memory, bit {@code n} in byte {@code n / 8}, shared with the front-end, which reads and
 * clears it while the guest runs. The device marks each page it writes <em>after</em> the write (so the
 * front-end, having cleared a bit, cannot miss data written before it), with an atomic OR on the 64-bit word
 * holding the bit — the front-end clears words with atomic exchanges, and a plain store could lose its clear
 * or ours. Pages beyond the log (a front-end that mapped less than its memory) are not marked.
 */
public final class DirtyLog {
    public static final int PAGE_SHIFT = 12;
    private static final VarHandle WORD = ValueLayout.JAVA_LONG.varHandle();

    private final MemorySegment bitmap;
    private final long words;

    /** A log over {@code bitmap} (8-byte aligned, as an mmapped log is). */
    public DirtyLog(MemorySegment bitmap) {
        if ((bitmap.address() & 7) != 0) {
            throw new IllegalArgumentException("dirty log at 0x" + Long.toHexString(bitmap.address()) + " is not 8-byte aligned");
        }
        this.bitmap = bitmap;
        this.words = bitmap.byteSize() / 8;
    }

    /** Marks every page of {@code [gpa, gpa + length)} dirty; call it after the bytes are written. */
    public void mark(long gpa, long length) {
        if (length <= 0) {
            return;
        }
        long first = gpa >>> PAGE_SHIFT;
        long last = (gpa + length - 1) >>> PAGE_SHIFT;
        for (long page = first; page <= last; ) {
            long word = page >>> 6;
            if (word >= words) {
                return;
            }
            long end = Math.min(last, (word << 6) + 63);
            int lo = (int) (page & 63);
            int hi = (int) (end & 63);
            long bits = (hi == 63 ? -1L : (1L << (hi + 1)) - 1) & (-1L << lo);
            WORD.getAndBitwiseOr(bitmap, word * 8, bits);
            page = end + 1;
        }
    }

    /** Whether {@code page} is marked (tests and tools). */
    public boolean isDirty(long page) {
        long word = page >>> 6;
        return word < words && ((long) WORD.getVolatile(bitmap, word * 8) & (1L << (page & 63))) != 0;
    }
}
