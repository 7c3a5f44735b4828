package io.jvirtio.core.memory;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class GuestMemoryTest {

    @Test
    void translatesInsideEachRegionAndRejectsGapsAndEdges() throws Exception {
        try (GuestMemory mem = GuestMemory.builder().anonymous(0x1000, 0x1000).anonymous(0x10000, 0x2000).build()) {
            mem.writeU32(0x1ffc, 0xdeadbeef);
            assertThat(mem.readU32(0x1ffc)).isEqualTo(0xdeadbeef);
            assertThat(mem.slice(0x10000, 0x2000).byteSize()).isEqualTo(0x2000);
            assertThat(mem.regionIndex(0x11000, 16)).isEqualTo(1);
            // straddles the end of region 0
            assertThatThrownBy(() -> mem.readU32(0x1ffe)).isInstanceOf(GuestMemoryException.class)
                    .hasMessageContaining("0x1ffe");
            // in the gap between regions
            assertThatThrownBy(() -> mem.slice(0x2000, 1)).isInstanceOf(GuestMemoryException.class);
            // below the first region
            assertThatThrownBy(() -> mem.slice(0xfff, 2)).isInstanceOf(GuestMemoryException.class);
            // one byte past the second region
            assertThatThrownBy(() -> mem.slice(0x10000, 0x2001)).isInstanceOf(GuestMemoryException.class);
        }
    }

    @Test
    void rejectsRangesThatWrapSixtyFourBits() {
        try (GuestMemory mem = GuestMemory.allocate(0x1000, 0x1000)) {
            // address + length overflows to a small number that would land inside the region
            assertThatThrownBy(() -> mem.slice(0xffff_ffff_ffff_f000L, 0x2100)).isInstanceOf(GuestMemoryException.class);
            assertThatThrownBy(() -> mem.slice(0x1800, Long.MAX_VALUE)).isInstanceOf(GuestMemoryException.class);
            assertThatThrownBy(() -> mem.slice(0x1800, -1L)).isInstanceOf(GuestMemoryException.class);
        }
    }

    @Test
    void regionAtTheTopOfTheAddressSpace() throws Exception {
        long base = 0xffff_ffff_ffff_0000L;
        try (GuestMemory mem = GuestMemory.allocate(base, 0x10000)) {
            mem.writeU64(0xffff_ffff_ffff_fff8L, 42);
            assertThat(mem.readU64(0xffff_ffff_ffff_fff8L)).isEqualTo(42);
            assertThatThrownBy(() -> mem.readU64(0xffff_ffff_ffff_fffcL)).isInstanceOf(GuestMemoryException.class);
        }
    }

    @Test
    void rejectsOverlappingRegions() {
        assertThatThrownBy(() -> GuestMemory.builder().anonymous(0, 0x2000).anonymous(0x1000, 0x1000).build())
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("overlap");
    }

    @Test
    void littleEndianOnTheWire() throws Exception {
        try (GuestMemory mem = GuestMemory.allocate(0, 64)) {
            mem.writeU32(0, 0x11223344);
            byte[] b = new byte[4];
            mem.read(0, b, 0, 4);
            assertThat(b).containsExactly(0x44, 0x33, 0x22, 0x11);
        }
    }

    @Test
    void sliceIsZeroCopyAndGuestAddressOfInvertsIt() throws Exception {
        try (GuestMemory mem = GuestMemory.builder().anonymous(0x4000, 0x1000).anonymous(0x9000, 0x1000).build()) {
            MemorySegment s = mem.slice(0x9100, 16);
            s.set(GuestMemory.U16, 0, (short) 0x1234);
            assertThat(mem.readU16(0x9100)).isEqualTo((short) 0x1234);
            assertThat(mem.guestAddressOf(s)).isEqualTo(0x9100);
            assertThatThrownBy(() -> mem.guestAddressOf(MemorySegment.ofArray(new byte[4])))
                    .isInstanceOf(IllegalArgumentException.class);
        }
    }

    @Test
    void memfdRegionIsSharedThroughItsFileDescriptor() throws Exception {
        try (GuestMemory mem = GuestMemory.memfd(0x100000, 1 << 20)) {
            MemoryRegion r = mem.region(0);
            assertThat(r.shareable()).isTrue();
            // A second, independent mapping of the same fd — what a vhost-user backend does.
            try (GuestMemory view = GuestMemory.builder().mapFd(0, 1 << 20, r.fd(), 0).build()) {
                mem.writeU64(0x100000 + 4096, 0x0102030405060708L);
                assertThat(view.readU64(4096)).isEqualTo(0x0102030405060708L);
                view.writeU32(8, 77);
                assertThat(mem.readU32(0x100008)).isEqualTo(77);
            }
        }
    }

    @Test
    void fileBackedMemoryWritesThroughToTheFile(@TempDir Path dir) throws Exception {
        Path ram = dir.resolve("ram");
        try (GuestMemory mem = GuestMemory.builder().file(0, 8192, ram).build()) {
            mem.write(4096, "virtio".getBytes(), 0, 6);
        }
        byte[] content = Files.readAllBytes(ram);
        assertThat(content).hasSize(8192);
        assertThat(new String(content, 4096, 6)).isEqualTo("virtio");
    }

    @Test
    void allocatorAlignsZeroesAndRunsOut() throws Exception {
        try (GuestMemory mem = GuestMemory.allocate(0x1000, 0x3000)) {
            mem.slice(0x1000, 0x3000).fill((byte) 0xff);
            GuestAllocator alloc = new GuestAllocator(mem, 0x1001, 0x2fff);
            long a = alloc.allocate(100, 4096);
            assertThat(a).isEqualTo(0x2000);
            assertThat(mem.slice(a, 100).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE)).containsOnly(0);
            assertThatThrownBy(() -> alloc.allocate(0x2000, 16)).isInstanceOf(IllegalStateException.class)
                    .hasMessageContaining("exhausted");
        }
    }
}
