package io.jvirtio.devices.blk;

import io.jvirtio.core.spec.Blk;
import java.lang.foreign.MemorySegment;

/** Reads zeroes, drops writes: measures the virtio path without any storage (like QEMU's null-co). */
public final class NullBackend implements BlockBackend, SyncBlockBackend {
    private final long capacity;

    public NullBackend(long bytes) {
        this.capacity = bytes & ~(Blk.SECTOR_SIZE - 1L);
    }

    /** Requests run on the queue's thread: nothing here blocks. */
    @Override
    public BlockQueue open(int queueIndex, int depth, BlockCompletion completion) {
        return new InlineQueue(this, depth, completion);
    }

    /** Writes reach the store at once; FLUSH has nothing to do, like a disk with its write cache on. */
    @Override
    public boolean writeCache() {
        return true;
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
    public void writeZeroes(long offset, long length, boolean unmap) {
    }

    @Override
    public void close() {
    }
}
