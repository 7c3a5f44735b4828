package io.jvirtio.core.queue;

import io.jvirtio.core.memory.DirtyLog;
import io.jvirtio.core.spec.Feature;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Dirty logging for live migration at the ring (vhost-user LOG_ALL): what a device queue writes into guest
 * memory — the data of used buffers up to their used length, and with the ring flag its own ring writes — is
 * marked in the bitmap; nothing else is, and nothing at all once logging stops. Both ring formats.
 */
class RingDirtyLogTest {
    static final long PAGES = (Rings.SIZE >> DirtyLog.PAGE_SHIFT) + (Rings.BASE >> DirtyLog.PAGE_SHIFT);

    @Test
    void pagesAreMarkedWordByWordAndNothingBeyondTheLog() {
        try (Arena a = Arena.ofConfined()) {
            DirtyLog log = new DirtyLog(a.allocate(16, 8)); // 128 pages
            log.mark(4096 * 3 + 100, 1);
            log.mark(4096 * 60, 4096 * 10); // pages 60..69, across a word
            log.mark(4096 * 127, 4096 * 10); // runs past the end: only page 127
            log.mark(0, 0);
            log.mark(4096 * 20, -1);
            for (int p = 0; p < 128; p++) {
                boolean want = p == 3 || (p >= 60 && p < 70) || p == 127;
                assertThat(log.isDirty(p)).as("page %d", p).isEqualTo(want);
            }
            assertThat(log.isDirty(128)).as("beyond the log").isFalse();
        }
    }

    static long page(long gpa) {
        return gpa >>> DirtyLog.PAGE_SHIFT;
    }

    @ParameterizedTest(name = "packed={0}")
    @ValueSource(booleans = {false, true})
    void theDataUpToTheUsedLengthAndTheRingsOwnWritesAreMarked(boolean packed) throws Exception {
        long features = Feature.EVENT_IDX.mask() | (packed ? Feature.RING_PACKED.mask() : 0);
        try (Rings r = new Rings(8, features, 0); Arena a = Arena.ofConfined()) {
            DirtyLog log = new DirtyLog(a.allocate(PAGES / 8 + 8, 8));
            r.device.logTo(log, true);
            long data = r.allocator.allocate(3 * 4096, 4096);
            r.driver.addBuf(new Scatterlist().addWritable(data, 4096).addWritable(data + 4096, 8192), 1);
            DescriptorChain c = new DescriptorChain();
            assertThat(r.device.pop(c)).isTrue();
            r.device.addUsed(c, 4096 + 10); // the first buffer and 10 bytes of the second
            r.device.publishUsed();
            r.device.disableNotifications();
            assertThat(log.isDirty(page(data))).isTrue();
            assertThat(log.isDirty(page(data + 4096))).isTrue();
            assertThat(log.isDirty(page(data + 8192))).as("beyond the used length").isFalse();
            RingAddresses ring = r.driver.addresses();
            // split: the used ring (element, idx, avail_event); packed: the used descriptor and the device area
            assertThat(log.isDirty(page(packed ? ring.descTable() : ring.usedRing()))).as("the ring's own writes").isTrue();
            assertThat(log.isDirty(page(ring.usedRing()))).isTrue();
            assertThat(r.driver.getBuf()).isEqualTo(1);

            // without the ring flag only data; after logTo(null), nothing
            MemorySegment bits = a.allocate(PAGES / 8 + 8, 8);
            DirtyLog second = new DirtyLog(bits);
            r.device.logTo(second, false);
            r.driver.addBuf(new Scatterlist().addWritable(data + 8192, 100), 2);
            r.device.pop(c);
            r.device.addUsed(c, 100);
            r.device.publishUsed();
            r.device.enableNotifications();
            assertThat(second.isDirty(page(data + 8192))).isTrue();
            assertThat(second.isDirty(page(ring.usedRing()))).as("ring writes without the flag").isFalse();
            assertThat(second.isDirty(page(ring.descTable()))).isFalse();
            bits.fill((byte) 0);
            r.device.logTo(null, true);
            r.driver.getBuf();
            r.driver.addBuf(new Scatterlist().addWritable(data, 100), 3);
            r.device.pop(c);
            r.device.addUsed(c, 100);
            r.device.publishUsed();
            for (long p = page(Rings.BASE); p < PAGES; p++) {
                assertThat(second.isDirty(p)).as("page %d with logging off", p).isFalse();
            }
        }
    }
}
