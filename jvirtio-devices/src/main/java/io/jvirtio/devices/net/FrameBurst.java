package io.jvirtio.devices.net;

import io.jvirtio.devices.RxWorker;

import java.lang.foreign.MemorySegment;

/**
 * Frames handed on together, as DPDK's {@code rte_mbuf} bursts are: a sender collects up to {@link #CAPACITY}
 * frames — each {@code length} bytes at {@code offset} of a segment, where it lies (a guest's transmit buffer, a
 * traffic source's frame) — and passes them with one call ({@link NetBackend#transmit(int, FrameBurst)}); the
 * switch decides where a run of frames goes once per run, and a receiving NIC writes the run into its ring with
 * one set of checks ({@link NetBackend.Receiver#receive(FrameBurst, int, int)}). Per frame, what is left is what
 * each frame needs: its addresses, its header, its copy. Measured on the path from the switch's traffic source
 * into a front-end's receive ring, the per-frame calls through switch and NIC cost as much as the copy and the
 * ring together (docs/benchmarks.md).
 *
 * <p>The same rules as for one frame: the frames are valid only during the call, read-only, read once by
 * whoever relies on them. A burst belongs to its sender's thread and is reused: nothing is allocated per frame
 * or per burst.
 */
public final class FrameBurst implements RxWorker.Batch {
    /** Frames a burst holds: DPDK's usual burst is 32; a poller's round takes up to 32 from one ring. */
    public static final int CAPACITY = 64;

    private final MemorySegment[] data = new MemorySegment[CAPACITY];
    private final long[] offset = new long[CAPACITY];
    private final long[] length = new long[CAPACITY];
    private int count;

    /** Adds the {@code length} bytes at {@code offset} of {@code segment}; false (nothing added) when full. */
    public boolean add(MemorySegment segment, long offset, long length) {
        int n = count;
        if (n == CAPACITY) {
            return false;
        }
        this.data[n] = segment;
        this.offset[n] = offset;
        this.length[n] = length;
        count = n + 1;
        return true;
    }

    /** Empties the burst for the next frames (the segments stay referenced until overwritten: no store each). */
    public void clear() {
        count = 0;
    }

    public int count() {
        return count;
    }

    /** The segment frame {@code i} lies in. */
    @Override
    public MemorySegment data(int i) {
        return data[check(i)];
    }

    /** Where frame {@code i} starts in {@link #data(int)}. */
    @Override
    public long offset(int i) {
        return offset[check(i)];
    }

    /** Frame {@code i}'s bytes (with its virtio-net header on a port that carries one). */
    @Override
    public long length(int i) {
        return length[check(i)];
    }

    private int check(int i) {
        if (i < 0 || i >= count) {
            throw new IndexOutOfBoundsException("frame " + i + " of a burst of " + count);
        }
        return i;
    }
}
