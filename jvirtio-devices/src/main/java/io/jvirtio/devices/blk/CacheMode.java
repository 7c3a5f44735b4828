package io.jvirtio.devices.blk;

import java.util.Locale;

/**
 * How an image file uses the host page cache, with QEMU's meaning of {@code cache=}. In every mode a
 * FLUSH ends with {@code fdatasync}, and a write the driver must see stable (no FLUSH negotiated, or the
 * guest turned the write cache off) is written with {@code RWF_DSYNC}.
 */
public enum CacheMode {
    /** O_DIRECT: no host page cache; the device still has a volatile write cache that FLUSH empties. */
    NONE,
    /** Through the page cache, FLUSH = fdatasync (the default). */
    WRITEBACK,
    /** Through the page cache, every write stable before it completes (the write cache starts off). */
    WRITETHROUGH;

    /** Parses {@code none}, {@code writeback} or {@code writethrough}. */
    public static CacheMode parse(String s) {
        try {
            return valueOf(s.toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("cache mode '" + s + "' is not none, writeback or writethrough");
        }
    }

    public String label() {
        return name().toLowerCase(Locale.ROOT);
    }
}
