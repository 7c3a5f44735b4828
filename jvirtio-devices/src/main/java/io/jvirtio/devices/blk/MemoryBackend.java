package io.jvirtio.devices.blk;

import io.jvirtio.core.spec.Blk;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/** A disk in off-heap memory, for tests and benchmarks; gone when closed. */
public final class MemoryBackend implements BlockBackend, SyncBlockBackend {
    private final Arena arena = Arena.ofShared();
    private final MemorySegment disk;
    private final boolean readOnly;

    public MemoryBackend(long bytes, boolean readOnly) {
        this.disk = arena.allocate(bytes & ~(Blk.SECTOR_SIZE - 1L), 4096);
        this.readOnly = readOnly;
    }

    public MemorySegment contents() {
        return disk;
    }

    /** Requests run on the queue's thread: memory never blocks. */
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
        return disk.byteSize();
    }

    @Override
    public boolean readOnly() {
        return readOnly;
    }

    @Override
    public String id() {
        return "jvirtio-memory";
    }

    @Override
    public void read(long offset, MemorySegment dst) {
        MemorySegment.copy(disk, offset, dst, 0, dst.byteSize());
    }

    @Override
    public void write(long offset, MemorySegment src) {
        MemorySegment.copy(src, 0, disk, offset, src.byteSize());
    }

    @Override
    public void flush() {
    }

    @Override
    public void writeZeroes(long offset, long length, boolean unmap) {
        disk.asSlice(offset, length).fill((byte) 0);
    }

    @Override
    public void discard(long offset, long length) {
        writeZeroes(offset, length, true);
    }

    @Override
    public void close() {
        arena.close();
    }
}
