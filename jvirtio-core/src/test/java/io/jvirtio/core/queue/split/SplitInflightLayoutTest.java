package io.jvirtio.core.queue.split;

import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.VirtqueueException;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The in-flight log byte for byte, as QEMU's vhost-user-blk and libvhost-user lay it out (QueueRegionSplit
 * with DescStateSplit entries): a front-end hands it from one back-end to the next, so every field must be
 * where the other implementations look for it.
 */
class SplitInflightLayoutTest {
    static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    static long entry(int head) {
        return 16 + 16L * head;
    }

    @Test
    @io.jvirtio.core.spec.Conformance("vu-inflight-1")
    void theRegionIsWrittenWhereQemuReadsIt() throws Exception {
        MemorySegment log = Arena.ofAuto().allocate(SplitInflight.bytes(8));
        log.fill((byte) 0x5a);
        log.set(U16, 8, (short) 0); // version 0: never used, formatted whatever else it holds
        try (RingFixture f = new RingFixture(8, 0)) {
            f.device.trackInflight(log);
            assertThat(log.get(U16, 8)).as("version").isEqualTo((short) 1);
            assertThat(log.get(U16, 10)).as("desc_num").isEqualTo((short) 8);
            assertThat(log.get(U64, entry(7) + 8)).as("formatted entries are zero").isZero();
            long b = f.buffer(8);
            for (int i = 0; i < 3; i++) {
                f.driver.addOutBuf(b, 8, i);
            }
            DescriptorChain c = new DescriptorChain();
            for (int i = 0; i < 3; i++) {
                f.device.pop(c);
                assertThat(log.get(ValueLayout.JAVA_BYTE, entry(c.head()))).as("inflight flag of %d", c.head()).isEqualTo((byte) 1);
                assertThat(log.get(U64, entry(c.head()) + 8)).as("counter: order taken").isEqualTo(i + 1);
            }
            f.device.addUsed(2, 0);
            f.device.addUsed(0, 0);
            assertThat(log.get(U16, 12)).as("last_batch_head").isEqualTo((short) 0);
            assertThat(log.get(U16, entry(0) + 6)).as("0 links to 2, the batch's previous head").isEqualTo((short) 2);
            assertThat(log.get(U16, entry(2) + 6)).as("2 starts the batch: links to itself").isEqualTo((short) 2);
            f.device.publishUsed();
            assertThat(log.get(U16, 14)).as("used_idx").isEqualTo((short) 2);
            assertThat(log.get(ValueLayout.JAVA_BYTE, entry(0))).isZero();
            assertThat(log.get(ValueLayout.JAVA_BYTE, entry(2))).isZero();
            assertThat(log.get(ValueLayout.JAVA_BYTE, entry(1))).as("still in flight").isEqualTo((byte) 1);
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("vu-inflight-3")
    void attachChecksTheHeaderAndResumesTheCounter() throws Exception {
        MemorySegment log = Arena.ofAuto().allocate(SplitInflight.bytes(8));
        assertThat(SplitInflight.attach(log, 8, 0).fresh()).as("all zero: formatted").isTrue();
        assertThat(log.get(U16, 8)).isEqualTo((short) 1);
        assertThat(SplitInflight.attach(log, 8, 0).fresh()).as("a version-1 log is a previous device's").isFalse();
        assertThatThrownBy(() -> SplitInflight.attach(log.asSlice(0, 64), 16, 3)).isInstanceOf(VirtqueueException.class)
                .hasMessageContaining("virtqueue 3").hasMessageContaining("64 bytes");
        MemorySegment big = Arena.ofAuto().allocate(SplitInflight.bytes(16));
        MemorySegment.copy(log, 0, big, 0, log.byteSize());
        assertThatThrownBy(() -> SplitInflight.attach(big, 16, 0)).isInstanceOf(VirtqueueException.class)
                .hasMessageContaining("8 descriptors");
        log.set(U16, 8, (short) 2);
        assertThatThrownBy(() -> SplitInflight.attach(log, 8, 0)).isInstanceOf(VirtqueueException.class)
                .hasMessageContaining("version 2");
        log.set(U16, 8, (short) 1);
        // three heads in flight taken in the order 5, 1, 3 (counters 7, 8, 9): recovered oldest first
        for (int[] hc : new int[][] {{5, 7}, {1, 8}, {3, 9}}) {
            log.set(ValueLayout.JAVA_BYTE, entry(hc[0]), (byte) 1);
            log.set(U64, entry(hc[0]) + 8, hc[1]);
        }
        SplitInflight r = SplitInflight.attach(log, 8, 0);
        assertThat(r.recover(0)).containsExactly(5, 1, 3);
        r.begin(6);
        assertThat(log.get(U64, entry(6) + 8)).as("the counter goes on after the highest").isEqualTo(10);
    }

    @Test
    @io.jvirtio.core.spec.Conformance("vu-inflight-1")
    void recoveryClearsTheLastBatchWhenTheRingIsAheadOfTheLog() {
        MemorySegment log = Arena.ofAuto().allocate(SplitInflight.bytes(8));
        SplitInflight r = SplitInflight.format(log, 8);
        for (int h : new int[] {0, 1, 2, 3}) {
            r.begin(h);
        }
        r.batchAdd(1);
        r.batchAdd(3);
        // the device died after publishing used.idx 2 but before logging it: 1 and 3 are done
        assertThat(r.recover(2)).containsExactly(0, 2);
        assertThat(log.get(U16, 14)).isEqualTo((short) 2);
        // a log that already matches the ring clears nothing
        MemorySegment again = Arena.ofAuto().allocate(SplitInflight.bytes(8));
        SplitInflight s = SplitInflight.format(again, 8);
        s.begin(4);
        s.batchAdd(4);
        assertThat(s.recover(0)).containsExactly(4);
    }
}
