package io.jvirtio.core.queue;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.memory.GuestMemoryException;

import java.lang.foreign.MemorySegment;

/**
 * Translates one part of a ring (a table, a ring, an event area) from guest-physical memory into a host
 * segment, once, checking that it lies inside guest memory and at its alignment — which also makes the
 * acquire/release accesses to its index and flag fields naturally aligned.
 */
public final class RingPart {
    private RingPart() {
    }

    /**
     * @throws VirtqueueException with {@link RingError.RingOutsideMemory} or {@link RingError.RingMisaligned}
     */
    public static MemorySegment map(GuestMemory memory, int queueIndex, String name, long address, long length,
                                    int alignment) throws VirtqueueException {
        if ((address & (alignment - 1)) != 0) {
            throw new VirtqueueException(queueIndex, new RingError.RingMisaligned(name, address, alignment));
        }
        try {
            MemorySegment s = memory.slice(address, length);
            if ((s.address() & (alignment - 1)) != 0) {
                // Guest alignment is what the spec demands; host alignment is what atomic access needs.
                throw new VirtqueueException(queueIndex, new RingError.RingMisaligned(name + " (host)", s.address(), alignment));
            }
            return s;
        } catch (GuestMemoryException e) {
            throw new VirtqueueException(queueIndex, new RingError.RingOutsideMemory(name, address, length));
        }
    }
}
