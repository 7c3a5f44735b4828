package io.jvirtio.vhostuser;

import io.jvirtio.core.os.NativeException;
import io.jvirtio.core.os.Posix;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.spec.Feature;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * The in-flight buffer (GET/SET_INFLIGHT_FD, "Inflight I/O tracking" in vhost-user.rst): shared memory the
 * front-end keeps across back-end restarts, one region per queue on a 64-byte boundary, in which the rings
 * record the requests they took and have not answered — in the split or the packed layout, by the features
 * negotiated when the buffer was sized. A fresh buffer is all zero (version 0): each ring formats its region
 * when it first starts over it.
 */
final class InflightBuffer implements AutoCloseable {
    /** Each queue's region starts on a 64-byte boundary of the shared buffer. */
    static final long ALIGN = 64;

    private final Arena arena;
    private final MemorySegment buffer;
    final int queues;
    final int queueSize;
    /** The features the regions are laid out for (RING_PACKED matters). */
    final long features;

    private InflightBuffer(Arena arena, MemorySegment buffer, int queues, int queueSize, long features) {
        this.arena = arena;
        this.buffer = buffer;
        this.queues = queues;
        this.queueSize = queueSize;
        this.features = features;
    }

    static long queueBytes(long features, int queueSize) {
        return (DeviceQueue.inflightBytes(features, queueSize) + ALIGN - 1) & -ALIGN;
    }

    static long bytes(long features, int queues, int queueSize) {
        return queueBytes(features, queueSize) * queues;
    }

    /** Maps {@code size} bytes of {@code fd} at {@code offset} (checked against the file first). */
    static InflightBuffer map(int fd, long offset, long size, int queues, int queueSize, long features)
            throws NativeException {
        Arena arena = Arena.ofShared();
        try {
            return new InflightBuffer(arena, Posix.mmapPeerFd(fd, offset, size, arena), queues, queueSize, features);
        } catch (NativeException | RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    /**
     * Ring {@code index}'s region, or null when the buffer does not cover a ring of {@code num} entries there
     * in the layout of {@code ringFeatures}.
     */
    MemorySegment region(int index, int num, long ringFeatures) {
        boolean packed = Feature.RING_PACKED.isSet(features);
        if (index >= queues || num != queueSize || packed != Feature.RING_PACKED.isSet(ringFeatures)) {
            return null;
        }
        long each = queueBytes(features, queueSize);
        return buffer.asSlice(each * index, each);
    }

    @Override
    public void close() {
        arena.close();
    }
}
