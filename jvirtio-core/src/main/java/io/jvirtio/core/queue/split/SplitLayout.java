package io.jvirtio.core.queue.split;

import io.jvirtio.core.queue.RingAddresses;
/**
 * Where the three parts of a split virtqueue of {@code size} entries sit when placed in one allocation.
 *
 * <p>VIRTIO 1.2 §2.7: descriptor table 16-byte aligned, 16·size bytes; available ring 2-byte aligned,
 * 6 + 2·size bytes; used ring 4-byte aligned, 6 + 8·size bytes (both sizes include the event index
 * field). The legacy layout (§2.7.2) puts the used ring on the next {@code queueAlign} boundary after the
 * available ring, and the whole queue is one contiguous block.
 *
 * @param size        queue size, a power of two from 1 to 32768
 * @param availOffset offset of the available ring from the descriptor table
 * @param usedOffset  offset of the used ring from the descriptor table
 * @param totalBytes  bytes the whole queue occupies
 */
public record SplitLayout(int size, long availOffset, long usedOffset, long totalBytes) {

    public SplitLayout {
        checkSize(size);
    }

    /** The modern layout: each part at its own minimum alignment, back to back. */
    public static SplitLayout modern(int size) {
        checkSize(size);
        long avail = descTableBytes(size);
        long used = align(avail + availRingBytes(size), 4);
        return new SplitLayout(size, avail, used, used + usedRingBytes(size));
    }

    /** The legacy layout of §2.7.2: used ring on the next {@code queueAlign} boundary (4096 for PCI). */
    public static SplitLayout legacy(int size, int queueAlign) {
        checkSize(size);
        if (Integer.bitCount(queueAlign) != 1) {
            throw new IllegalArgumentException("queue align " + queueAlign + " is not a power of two");
        }
        long used = align(descTableBytes(size) + availRingBytes(size), queueAlign);
        return new SplitLayout(size, descTableBytes(size), used, align(used + usedRingBytes(size), queueAlign));
    }

    public static long descTableBytes(int size) {
        return (long) Virtq.DESC_SIZE * size;
    }

    /** flags + idx + ring[size] + used_event. */
    public static long availRingBytes(int size) {
        return 6 + 2L * size;
    }

    /** flags + idx + ring[size] + avail_event. */
    public static long usedRingBytes(int size) {
        return 6 + 8L * size;
    }

    /** Queue sizes are powers of two up to 32768 (§2.7). */
    public static void checkSize(int size) {
        if (size <= 0 || size > Virtq.MAX_QUEUE_SIZE || Integer.bitCount(size) != 1) {
            throw new IllegalArgumentException("queue size " + size + " is not a power of two in 1..32768");
        }
    }

    /** The three guest addresses of this layout placed at {@code base}. */
    public RingAddresses at(long base) {
        return new RingAddresses(base, base + availOffset, base + usedOffset);
    }

    private static long align(long v, long a) {
        return (v + a - 1) & -a;
    }
}
