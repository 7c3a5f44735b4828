package io.jvirtio.core.queue;

import java.util.Arrays;

/**
 * The buffers of one request for {@link DriverQueue#addBuf}: device-readable ("out") buffers first, then
 * device-writable ("in") ones, as §2.7.4.2 requires of a driver. Reusable: {@link #clear()} and refill,
 * so building a request allocates nothing once the arrays have grown to the request size.
 */
public final class Scatterlist {
    private long[] address = new long[4];
    private int[] length = new int[4];
    private int count;
    private int readable;

    public Scatterlist clear() {
        count = 0;
        readable = 0;
        return this;
    }

    /** Appends a device-readable buffer; it must come before every writable one. */
    public Scatterlist addReadable(long guestAddress, int len) {
        if (readable != count) {
            throw new IllegalStateException("a device-readable buffer may not follow a device-writable one (§2.7.4.2)");
        }
        add(guestAddress, len);
        readable++;
        return this;
    }

    /** Appends a device-writable buffer. */
    public Scatterlist addWritable(long guestAddress, int len) {
        add(guestAddress, len);
        return this;
    }

    private void add(long guestAddress, int len) {
        if (count == address.length) {
            address = Arrays.copyOf(address, count * 2);
            length = Arrays.copyOf(length, count * 2);
        }
        address[count] = guestAddress;
        length[count] = len;
        count++;
    }

    public int count() {
        return count;
    }

    public int readableCount() {
        return readable;
    }

    public long address(int i) {
        return address[i];
    }

    public int length(int i) {
        return length[i];
    }

    /**
     * Checks that this request could ever be added to a queue of {@code queueSize} entries whose indirect tables
     * hold {@code indirectMax} descriptors: at least one buffer, no chain longer than the queue — in an indirect
     * table either (§2.7.5.3.1 split-drv-8, §2.8.6) — and at most 2^32 bytes (§2.7.5.2 split-drv-4).
     *
     * @throws IllegalArgumentException if it never could
     */
    public void checkFits(int queueSize, int indirectMax) {
        if (count == 0) {
            throw new IllegalArgumentException("a buffer needs at least one segment");
        }
        if (count > queueSize) {
            throw new IllegalArgumentException(count + " buffers cannot form a chain in a queue of " + queueSize
                    + (indirectMax > 0 ? " (indirect tables hold " + indirectMax + ")" : ""));
        }
        long bytes = 0;
        for (int i = 0; i < count; i++) {
            bytes += Integer.toUnsignedLong(length[i]);
        }
        if (bytes > 1L << 32) {
            throw new IllegalArgumentException("a chain of " + bytes + " bytes; at most 2^32 are allowed");
        }
    }
}
