package io.jvirtio.devices.blk;

import java.lang.foreign.MemorySegment;

/** Reads zeroes, drops writes: measures the virtio path without any storage (like QEMU's null-co). */
public final class NullBackend implements BlockBackend {
    private final long capacity;

    public NullBackend(long bytes) {
        this.capacity = bytes & ~(Blk.SECTOR_SIZE - 1L);
    }

    @Override
    public long capacity() {
        return capacity;
    }

    @Override
    public boolean readOnly() {
        return false;
    }

    @Override
    public String id() {
        return "jvirtio-null";
    }

    @Override
    public void read(long offset, MemorySegment dst) {
        dst.fill((byte) 0);
    }

    @Override
    public void write(long offset, MemorySegment src) {
    }

    @Override
    public void flush() {
    }

    @Override
    public void writeZeroes(long offset, long length) {
    }
}
