package io.jvirtio.core.memory;

import io.jvirtio.core.os.NativeException;
import io.jvirtio.core.os.Posix;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/**
 * A guest-physical address space: a sorted set of non-overlapping {@link MemoryRegion}s.
 *
 * <p>Everything a guest hands over is a guest-physical address; {@link #slice} and
 * {@link #regionIndex} are the only ways from such an address to host memory, and both refuse any range
 * that leaves a region or wraps past 2<sup>64</sup>. Fields are little-endian as VIRTIO 1.2 §1.4 requires
 * for modern devices. Acquire/release accessors exist for the ring indices and flags that the two sides
 * of a virtqueue publish to each other (§2.7.13).
 *
 * <p>Memory comes from an {@link Arena} (private to this process) or from a shared mapping of a memfd or
 * a file, whose descriptor a second process (a vhost-user backend) can map to see the same bytes.
 * Closing the {@code GuestMemory} unmaps everything and closes every descriptor it created.
 */
public final class GuestMemory implements AutoCloseable {
    public static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    public static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    public static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** Aligned little-endian views whose var handles support acquire/release access. */
    private static final VarHandle U16_ATOMIC =
            ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN).varHandle();
    private static final VarHandle U64_ATOMIC =
            ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN).varHandle();

    private final MemoryRegion[] regions;
    private final Arena arena;
    private final int[] ownedFds;

    private GuestMemory(MemoryRegion[] regions, Arena arena, int[] ownedFds) {
        this.regions = regions;
        this.arena = arena;
        this.ownedFds = ownedFds;
    }

    /** Private memory: one region of {@code size} bytes at guest address {@code base}, zero-filled. */
    public static GuestMemory allocate(long base, long size) {
        try (Builder b = builder()) {
            return b.anonymous(base, size).build();
        }
    }

    /** Shared memory: one memfd-backed region, mappable by another process through its fd. */
    public static GuestMemory memfd(long base, long size) throws NativeException {
        try (Builder b = builder()) {
            return b.memfd(base, size).build();
        }
    }

    /** A memory of several regions; close the builder (try-with-resources) so a failure leaves nothing mapped. */
    public static Builder builder() {
        return new Builder();
    }

    /** Regions in ascending guest-address order. */
    public List<MemoryRegion> regions() {
        return List.of(regions);
    }

    public MemoryRegion region(int index) {
        return regions[index];
    }

    /**
     * Index of the region that wholly contains {@code [address, address+length)}.
     *
     * @throws GuestMemoryException if no single region contains the range
     */
    public int regionIndex(long address, long length) throws GuestMemoryException {
        MemoryRegion[] rs = regions;
        for (int i = 0; i < rs.length; i++) {
            if (rs[i].contains(address, length)) {
                return i;
            }
        }
        throw new GuestMemoryException(address, length);
    }

    /** True when {@code [address, address+length)} lies inside one region. */
    public boolean contains(long address, long length) {
        for (MemoryRegion r : regions) {
            if (r.contains(address, length)) {
                return true;
            }
        }
        return false;
    }

    /** Zero-copy view of {@code [address, address+length)}; writes through it are seen by the guest. */
    public MemorySegment slice(long address, long length) throws GuestMemoryException {
        MemoryRegion r = regions[regionIndex(address, length)];
        return r.segment().asSlice(address - r.guestAddress(), length);
    }

    /**
     * The guest-physical address of a host segment that lies inside one of the regions — how a driver
     * turns a buffer it holds back into an address for a descriptor.
     */
    public long guestAddressOf(MemorySegment buffer) {
        long host = buffer.address();
        for (MemoryRegion r : regions) {
            long off = host - r.segment().address();
            if (off >= 0 && buffer.byteSize() <= r.size() - off) {
                return r.guestAddress() + off;
            }
        }
        throw new IllegalArgumentException("segment at host 0x" + Long.toHexString(host) + " of "
                + buffer.byteSize() + " bytes is not inside guest memory");
    }

    public short readU16(long address) throws GuestMemoryException {
        return slice(address, 2).get(U16, 0);
    }

    public int readU32(long address) throws GuestMemoryException {
        return slice(address, 4).get(U32, 0);
    }

    public long readU64(long address) throws GuestMemoryException {
        return slice(address, 8).get(U64, 0);
    }

    public void writeU16(long address, short value) throws GuestMemoryException {
        slice(address, 2).set(U16, 0, value);
    }

    public void writeU32(long address, int value) throws GuestMemoryException {
        slice(address, 4).set(U32, 0, value);
    }

    public void writeU64(long address, long value) throws GuestMemoryException {
        slice(address, 8).set(U64, 0, value);
    }

    public void read(long address, byte[] dst, int offset, int length) throws GuestMemoryException {
        MemorySegment.copy(slice(address, length), ValueLayout.JAVA_BYTE, 0, dst, offset, length);
    }

    public void write(long address, byte[] src, int offset, int length) throws GuestMemoryException {
        MemorySegment.copy(src, offset, slice(address, length), ValueLayout.JAVA_BYTE, 0, length);
    }

    /**
     * Load-acquire of a little-endian u16 at {@code offset} of an already translated segment: the
     * reader's side of a ring-index publication. {@code offset} must be 2-byte aligned in host memory.
     */
    public static int getU16Acquire(MemorySegment segment, long offset) {
        return Short.toUnsignedInt((short) U16_ATOMIC.getAcquire(segment, offset));
    }

    /** Store-release of a little-endian u16: everything written before it is visible to an acquiring reader. */
    public static void setU16Release(MemorySegment segment, long offset, int value) {
        U16_ATOMIC.setRelease(segment, offset, (short) value);
    }

    /**
     * Store-release of a little-endian u64, written as one access: a reader that sees any of its bytes after an
     * acquire sees all of them. {@code offset} must be 8-byte aligned in host memory.
     */
    public static void setU64Release(MemorySegment segment, long offset, long value) {
        U64_ATOMIC.setRelease(segment, offset, value);
    }

    /** Unmaps every region and closes the descriptors this memory created. */
    @Override
    public void close() {
        arena.close();
        for (int fd : ownedFds) {
            try {
                Posix.close(fd);
            } catch (NativeException e) {
                System.getLogger(GuestMemory.class.getName()).log(System.Logger.Level.WARNING, e.getMessage());
            }
        }
    }

    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder("GuestMemory[");
        for (MemoryRegion r : regions) {
            sb.append(String.format("0x%x-0x%x%s ", r.guestAddress(), r.lastAddress(), r.shareable() ? " (shared)" : ""));
        }
        return sb.append(']').toString();
    }

    /** Collects regions; {@link #build()} checks that none overlap. */
    public static final class Builder implements AutoCloseable {
        private final Arena arena = Arena.ofShared();
        private final List<MemoryRegion> regions = new ArrayList<>();
        private final List<Integer> fds = new ArrayList<>();
        private boolean built;

        private Builder() {
        }

        /** Private, zero-filled memory from the arena (page aligned). */
        public Builder anonymous(long base, long size) {
            regions.add(new MemoryRegion(base, size, arena.allocate(size, 4096), -1, 0));
            return this;
        }

        /**
         * Memory the caller owns and frees (for example from an automatic arena, for short-lived rings in
         * tests): closing the {@code GuestMemory} does not free it.
         */
        public Builder segment(long base, MemorySegment memory) {
            regions.add(new MemoryRegion(base, memory.byteSize(), memory, -1, 0));
            return this;
        }

        /** A fresh memfd of {@code size} bytes, mapped shared. */
        public Builder memfd(long base, long size) throws NativeException {
            int fd = Posix.memfdCreate("jvirtio-guest-ram");
            fds.add(fd);
            Posix.ftruncate(fd, size);
            regions.add(new MemoryRegion(base, size, Posix.mmapShared(fd, 0, size, arena), fd, 0));
            return this;
        }

        /** A file (created if absent, grown to {@code size}) mapped shared: the guest's RAM is the file. */
        public Builder file(long base, long size, Path path) throws NativeException {
            int fd = Posix.openReadWrite(path.toString());
            fds.add(fd);
            Posix.ftruncate(fd, size);
            regions.add(new MemoryRegion(base, size, Posix.mmapShared(fd, 0, size, arena), fd, 0));
            return this;
        }

        /**
         * An fd somebody else owns (for example received over a socket), mapped shared from
         * {@code fdOffset}; it must be a file or memfd that covers the range (see {@link Posix#mmapPeerFd}).
         * The caller keeps ownership of {@code fd}.
         */
        public Builder mapFd(long base, long size, int fd, long fdOffset) throws NativeException {
            MemorySegment seg = Posix.mmapPeerFd(fd, fdOffset, size, arena);
            regions.add(new MemoryRegion(base, size, seg, fd, fdOffset));
            return this;
        }

        /** The memory, which from now on owns every mapping and created descriptor. */
        public GuestMemory build() {
            MemoryRegion[] rs = regions.toArray(MemoryRegion[]::new);
            Arrays.sort(rs, Comparator.comparing(MemoryRegion::guestAddress, Long::compareUnsigned));
            for (int i = 1; i < rs.length; i++) {
                if (Long.compareUnsigned(rs[i].guestAddress(), rs[i - 1].lastAddress()) <= 0) {
                    throw new IllegalArgumentException(String.format(
                            "regions overlap: 0x%x-0x%x and 0x%x-0x%x", rs[i - 1].guestAddress(),
                            rs[i - 1].lastAddress(), rs[i].guestAddress(), rs[i].lastAddress()));
                }
            }
            if (rs.length == 0) {
                throw new IllegalArgumentException("guest memory needs at least one region");
            }
            built = true;
            return new GuestMemory(rs, arena, fds.stream().mapToInt(Integer::intValue).toArray());
        }

        /**
         * Releases everything mapped or created so far unless {@link #build} succeeded: a memory that
         * fails half-way leaves no mapping and no descriptor behind (all or nothing).
         */
        @Override
        public void close() {
            if (built) {
                return;
            }
            arena.close();
            for (int fd : fds) {
                try {
                    Posix.close(fd);
                } catch (NativeException e) {
                    // already reported by the call that failed; nothing more to release
                }
            }
        }
    }
}
