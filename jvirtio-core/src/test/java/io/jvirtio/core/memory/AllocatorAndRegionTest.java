package io.jvirtio.core.memory;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The guest allocator's exact placement and coalescing, and the edges of regions and address lookup. */
class AllocatorAndRegionTest {
    static final long BASE = 0x10_0000;

    @Test
    void allocationsArePackedAlignedZeroedAndFreesCoalesce() throws Exception {
        try (GuestMemory mem = GuestMemory.allocate(BASE, 0x1000)) {
            mem.slice(BASE, 0x1000).fill((byte) 0x77);
            GuestAllocator a = new GuestAllocator(mem, BASE, 0x1000);
            assertThat(a.remaining()).isEqualTo(0x1000);
            long x = a.allocate(10, 1);
            assertThat(x).isEqualTo(BASE);
            long y = a.allocate(16, 16);
            assertThat(y).as("aligned up, the 6-byte gap kept").isEqualTo(BASE + 16);
            long z = a.allocate(6, 1);
            assertThat(z).as("the gap is used first").isEqualTo(BASE + 10);
            assertThat(a.used()).isEqualTo(32);
            assertThat(a.remaining()).isEqualTo(0x1000 - 32);
            assertThat(mem.slice(y, 16).toArray(ValueLayout.JAVA_BYTE)).containsOnly(0);
            assertThat(mem.slice(BASE + 32, 1).get(ValueLayout.JAVA_BYTE, 0)).as("nothing beyond is zeroed").isEqualTo((byte) 0x77);
            // exactly what is left fits; one byte more does not
            long rest = a.allocate(0x1000 - 32, 1);
            assertThat(rest).isEqualTo(BASE + 32);
            assertThat(a.remaining()).isZero();
            assertThatThrownBy(() -> a.allocate(1, 1)).isInstanceOf(IllegalStateException.class).hasMessageContaining("exhausted");
            // free in an order that needs both neighbours merged
            a.free(x, 10);
            a.free(y, 16);
            a.free(z, 6);
            assertThat(a.used()).isEqualTo(0x1000 - 32);
            assertThat(a.allocate(32, 1)).as("the three pieces became one").isEqualTo(BASE);
            a.free(BASE, 32);
            a.free(rest, 0x1000 - 32);
            assertThat(a.allocate(0x1000, 0x1000)).as("everything merged back").isEqualTo(BASE);
            a.free(BASE, 0x1000);
            assertThatThrownBy(() -> a.free(BASE, 16)).as("double free").isInstanceOf(IllegalArgumentException.class);
        }
    }

    @Test
    void alignmentPaddingIsNeverLargerThanTheHole() throws Exception {
        try (GuestMemory mem = GuestMemory.allocate(BASE, 0x2000)) {
            GuestAllocator a = new GuestAllocator(mem, BASE + 1, 0x1fff);
            assertThat(a.allocate(0x1000, 0x1000)).isEqualTo(BASE + 0x1000);
            assertThatThrownBy(() -> a.allocate(0x1000, 0x1000)).isInstanceOf(IllegalStateException.class);
            assertThat(a.allocate(0xfff, 1)).isEqualTo(BASE + 1);
            assertThatThrownBy(() -> a.allocate(8, 3)).isInstanceOf(IllegalArgumentException.class);
            assertThatThrownBy(() -> a.allocate(0, 8)).isInstanceOf(IllegalArgumentException.class);
        }
    }

    @Test
    void regionsRefuseSizeMismatchesAndWrapsButMayEndAtTheTop() {
        MemorySegment seg = Arena.ofAuto().allocate(4096);
        assertThatThrownBy(() -> new MemoryRegion(0, 4095, seg, -1, 0)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> new MemoryRegion(0, 0, MemorySegment.NULL, -1, 0)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> new MemoryRegion(-4095, 4096, seg, -1, 0)).isInstanceOf(IllegalArgumentException.class);
        MemoryRegion top = new MemoryRegion(-4096, 4096, seg, -1, 0);
        assertThat(top.lastAddress()).isEqualTo(-1L);
        assertThat(top.contains(-1L, 1)).isTrue();
        assertThat(top.shareable()).isFalse();
        assertThat(new MemoryRegion(0, 4096, seg, 0, 0).shareable()).as("fd 0 is a descriptor too").isTrue();
    }

    @Test
    void hostSegmentsMapBackToGuestAddressesOnlyWhenWhollyInside() throws Exception {
        try (GuestMemory mem = GuestMemory.builder().anonymous(BASE, 0x1000).anonymous(BASE + 0x10000, 0x1000).build()) {
            MemorySegment second = mem.slice(BASE + 0x10000, 0x1000);
            assertThat(mem.guestAddressOf(second)).isEqualTo(BASE + 0x10000);
            assertThat(mem.guestAddressOf(second.asSlice(0xfff, 1))).isEqualTo(BASE + 0x10fff);
            assertThat(mem.guestAddressOf(mem.slice(BASE + 0x800, 0x800))).isEqualTo(BASE + 0x800);
            MemorySegment outside = Arena.ofAuto().allocate(16);
            assertThatThrownBy(() -> mem.guestAddressOf(outside)).isInstanceOf(IllegalArgumentException.class);
            // a segment that starts inside but runs past the region's end
            MemorySegment over = MemorySegment.ofAddress(second.address() + 0xff0).reinterpret(32);
            assertThatThrownBy(() -> mem.guestAddressOf(over)).isInstanceOf(IllegalArgumentException.class);
            MemorySegment before = MemorySegment.ofAddress(second.address() - 1).reinterpret(1);
            assertThatThrownBy(() -> mem.guestAddressOf(before)).isInstanceOf(IllegalArgumentException.class);
            assertThat(mem.regions()).hasSize(2);
            assertThat(mem.regions().getFirst().guestAddress()).as("sorted").isEqualTo(BASE);
            assertThat(mem.toString()).contains("100000");
        }
    }

    @Test
    void closingReleasesTheMappingsAndTheDescriptorsItCreated() throws Exception {
        GuestMemory mem = GuestMemory.memfd(BASE, 0x1000);
        MemorySegment seg = mem.slice(BASE, 16);
        int fd = mem.region(0).fd();
        assertThat(java.nio.file.Files.exists(java.nio.file.Path.of("/proc/self/fd/" + fd))).isTrue();
        mem.close();
        assertThatThrownBy(() -> seg.get(ValueLayout.JAVA_BYTE, 0)).as("unmapped").isInstanceOf(IllegalStateException.class);
        assertThat(java.nio.file.Files.exists(java.nio.file.Path.of("/proc/self/fd/" + fd))).as("fd closed").isFalse();
    }

    @Test
    void aBuilderThatFailsHalfWayLeavesNothingMapped() throws Exception {
        GuestMemory.Builder b = GuestMemory.builder();
        b.memfd(BASE, 0x1000);
        int fd = -1;
        try (b) {
            b.anonymous(BASE + 0x800, 0x1000);
            fd = b.build().region(0).fd();
        } catch (IllegalArgumentException expected) {
            assertThat(expected).hasMessageContaining("overlap");
        }
        assertThat(fd).isEqualTo(-1);
        long fds;
        try (var s = java.nio.file.Files.list(java.nio.file.Path.of("/proc/self/fd"))) {
            fds = s.filter(p -> {
                try {
                    return java.nio.file.Files.readSymbolicLink(p).toString().contains("jvirtio-guest-ram");
                } catch (java.io.IOException e) {
                    return false;
                }
            }).count();
        }
        assertThat(fds).as("the memfd the builder made was closed").isZero();
    }

    @Test
    void callerOwnedSegmentsBecomeRegions() throws Exception {
        MemorySegment own = Arena.ofAuto().allocate(0x1000, 4096);
        try (GuestMemory.Builder b = GuestMemory.builder()) {
            GuestMemory mem = b.segment(BASE, own).build();
            mem.writeU32(BASE + 4, 0xdeadbeef);
            assertThat(own.get(ValueLayout.JAVA_INT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN), 4)).isEqualTo(0xdeadbeef);
        }
    }

    @Test
    void sliceServesExactlyTheWindowAndRefusesAByteMore() throws Exception {
        try (GuestMemory mem = GuestMemory.allocate(BASE, 0x2000)) {
            GuestAllocator a = new GuestAllocator(mem, BASE + 0x100, 0x1000);
            assertThat(a.slice(BASE + 0x100, 0x1000).byteSize()).as("the whole window").isEqualTo(0x1000);
            assertThat(a.slice(BASE + 0x1100, 0).byteSize()).as("empty, at its end").isZero();
            assertThat(a.slice(BASE + 0x10ff, 1).byteSize()).isEqualTo(1);
            assertThatThrownBy(() -> a.slice(BASE + 0x10ff, 2)).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("outside the allocator's window");
            assertThatThrownBy(() -> a.slice(BASE + 0xff, 1)).as("a byte below").isInstanceOf(IllegalArgumentException.class);
            assertThatThrownBy(() -> a.slice(BASE + 0x1101, 0)).as("past the end").isInstanceOf(IllegalArgumentException.class);
            assertThatThrownBy(() -> a.slice(BASE + 0x100, -1)).isInstanceOf(IllegalArgumentException.class);
            assertThatThrownBy(() -> a.slice(BASE + 0x200, Long.MAX_VALUE)).as("a length that wraps")
                    .isInstanceOf(IllegalArgumentException.class);
        }
    }
}
