package io.jvirtio.vhostuser;

import io.jvirtio.core.os.NativeException;
import io.jvirtio.core.os.Posix;
import io.jvirtio.core.queue.split.InflightRegion;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * The in-flight buffer (GET/SET_INFLIGHT_FD, the split-ring layout of vhost-user.rst): shared memory the
 * front-end keeps across back-end restarts, one region per queue on a 64-byte boundary, in which the rings
 * record the requests they took and have not answered.
 */
final class InflightBuffer implements AutoCloseable {
    /** Each queue's region starts on a 64-byte boundary of the shared buffer. */
    static final long ALIGN = 64;

    private final Arena arena;
    private final MemorySegment buffer;
    final int queues;
    final int queueSize;

    private InflightBuffer(Arena arena, MemorySegment buffer, int queues, int queueSize) {
        this.arena = arena;
        this.buffer = buffer;
        this.queues = queues;
        this.queueSize = queueSize;
    }

    static long queueBytes(int queueSize) {
        return (InflightRegion.bytes(queueSize) + ALIGN - 1) & -ALIGN;
    }

    static long bytes(int queues, int queueSize) {
        return queueBytes(queueSize) * queues;
    }

    /** Maps {@code size} bytes of {@code fd} at {@code offset} (checked against the file first). */
    static InflightBuffer map(int fd, long offset, long size, int queues, int queueSize) throws NativeException {
        Arena arena = Arena.ofShared();
        try {
            return new InflightBuffer(arena, Posix.mmapPeerFd(fd, offset, size, arena), queues, queueSize);
        } catch (NativeException | RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    /** Formats every queue's region empty (a fresh buffer from GET_INFLIGHT_FD). */
    void format() {
        for (int i = 0; i < queues; i++) {
            InflightRegion.format(buffer.asSlice(queueBytes(queueSize) * i), queueSize);
        }
    }

    /** Ring {@code index}'s region, or null when the buffer does not cover a ring of {@code num} entries there. */
    InflightRegion region(int index, int num) {
        if (index >= queues || num != queueSize) {
            return null;
        }
        return InflightRegion.attach(buffer.asSlice(queueBytes(queueSize) * index), num);
    }

    @Override
    public void close() {
        arena.close();
    }
}
