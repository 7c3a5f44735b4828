package io.jvirtio.core.device;

import java.util.Arrays;

/**
 * A device configuration space: little-endian fields (§2.5) in a byte array, with the generation
 * counter a driver uses to read multi-field values consistently (§2.5.1, {@code config_generation}).
 * The device updates fields through {@link #update}, which bumps the generation; the driver side reads
 * and writes through the transport. Writes from the driver go to {@link Writer} so a device decides
 * which fields are writable (most are read-only).
 */
public final class ConfigSpace {
    private final byte[] bytes;
    private int generation;
    /** The driver read the generation since it last changed (initially: as if it had). */
    private boolean sampled = true;
    private final Writer writer;
    private volatile Runnable changeListener = () -> { };

    /** Whether and how a driver write to the configuration space lands. */
    @FunctionalInterface
    public interface Writer {
        /** Applies a driver write of {@code data} at {@code offset}, or ignores it (read-only fields). */
        void write(ConfigSpace space, int offset, byte[] data);
    }

    /** A read-only configuration space: driver writes are ignored, as §4.1.3.1 allows for RO fields. */
    public ConfigSpace(int size) {
        this(size, (s, o, d) -> { });
    }

    public ConfigSpace(int size, Writer writer) {
        this.bytes = new byte[size];
        this.writer = writer;
    }

    public int size() {
        return bytes.length;
    }

    /**
     * The driver reads {@code config_generation}. The counter is 8 bits wide on PCI, so it must never move
     * by 256 between two of the driver's reads of it: it changes at most once per read (§2.5.1, pci-dev-10,
     * mmio-dev-5) — once is enough, any number of updates since then being covered by that one change.
     */
    public synchronized int generation() {
        sampled = true;
        return generation & 0xff;
    }

    /** Reads {@code length} bytes at {@code offset}; bytes outside the space read as zero. */
    public synchronized void read(int offset, byte[] dst, int dstOffset, int length) {
        for (int i = 0; i < length; i++) {
            int at = offset + i;
            dst[dstOffset + i] = at >= 0 && at < bytes.length ? bytes[at] : 0;
        }
    }

    /** A driver write; what lands is the device's {@link Writer}'s decision. Out-of-range writes are dropped. */
    public void driverWrite(int offset, byte[] data) {
        if (offset < 0 || offset + data.length > bytes.length) {
            return;
        }
        writer.write(this, offset, data);
    }

    /**
     * Sets a field as the device: changes the generation so a driver's retry loop sees it, then tells
     * the transport, which sends a configuration change notification (§2.5).
     */
    public void update(int offset, long value, int width) {
        synchronized (this) {
            for (int i = 0; i < width; i++) {
                bytes[offset + i] = (byte) (value >>> (8 * i));
            }
            if (sampled) {
                generation++;
                sampled = false;
            }
        }
        changeListener.run();
    }

    /** The transport's hook for configuration change notifications. */
    public void onChange(Runnable listener) {
        this.changeListener = listener;
    }

    /** Stores bytes without touching the generation: for initial values and device-accepted writes. */
    public synchronized void store(int offset, long value, int width) {
        for (int i = 0; i < width; i++) {
            bytes[offset + i] = (byte) (value >>> (8 * i));
        }
    }

    public synchronized void store(int offset, byte[] data) {
        System.arraycopy(data, 0, bytes, offset, data.length);
    }

    public synchronized long load(int offset, int width) {
        long v = 0;
        for (int i = 0; i < width; i++) {
            v |= (bytes[offset + i] & 0xffL) << (8 * i);
        }
        return v;
    }

    @Override
    public synchronized String toString() {
        return "ConfigSpace" + Arrays.toString(bytes);
    }
}
