package io.jvirtio.core.queue.split;

import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.QueueState;
import io.jvirtio.core.queue.RingAddresses;
import io.jvirtio.core.queue.RingError;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.queue.VirtqueueException;
import io.jvirtio.core.spec.Feature;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The exact edges of the ring code: each limit one below, at and one above, and the bytes each side leaves
 * in guest memory. Written to kill the mutants PIT found alive (docs/conformance.md).
 */
class RingEdgesTest {
    static final int F_NEXT = 1;
    static final int F_WRITE = 2;
    static final int F_INDIRECT = 4;
    static final long EVENT_IDX = Feature.EVENT_IDX.mask();
    static final long INDIRECT = Feature.INDIRECT_DESC.mask();

    @Test
    void everyRingErrorNamesItsValues() {
        record Case(RingError error, String... parts) {
        }
        for (Case c : new Case[] {
                new Case(new RingError.RingOutsideMemory("used ring", 0x1000, 70), "used ring", "0x1000", "70"),
                new Case(new RingError.RingMisaligned("available ring", 0x1001, 2), "0x1001", "2-byte"),
                new Case(new RingError.AvailIndexJump(300, 10, 256), "avail idx 300", "290 entries", "of 10", "256"),
                new Case(new RingError.HeadOutOfRange(9, 8), "head 9", "size 8"),
                new Case(new RingError.NextOutOfRange(3, 8, 8, true), "head 3", "next 8", "indirect table of 8"),
                new Case(new RingError.NextOutOfRange(3, 9, 8, false), "descriptor table of 8"),
                new Case(new RingError.ChainLoop(2, 8, true), "head 2", "exceeds 8", "in its indirect table"),
                new Case(new RingError.ChainLoop(2, 8, false), "exceeds 8 descriptors (a loop)"),
                new Case(new RingError.BufferOutsideMemory(1, 0xabc, 16), "head 1", "0xabc", "16"),
                new Case(new RingError.ChainTooLong(4, 0x1_0000_0001L), "head 4", "4294967297"),
                new Case(new RingError.BadIndirectLength(5, 17), "head 5", "length 17"),
                new Case(new RingError.NestedIndirect(6), "head 6"),
                new Case(new RingError.IndirectWithNext(7), "head 7"),
                new Case(new RingError.IndirectNotNegotiated(1), "head 1", "INDIRECT_DESC"),
                new Case(new RingError.ReadableAfterWritable(2), "head 2"),
                new Case(new RingError.BufferTooSmall(3, 4, 12, "RULE"), "head 3", "4 writable", "RULE", "12"),
                new Case(new RingError.BadUsedId(9, 8), "id 9", "size 8"),
                new Case(new RingError.UsedIndexJump(20, 10, 3), "used idx 20", "10 ahead of 10", "3 buffers")}) {
            assertThat(c.error().message()).contains(c.parts());
        }
        assertThat(new VirtqueueException(3, new RingError.NestedIndirect(6)).getMessage()).startsWith("virtqueue 3: ");
    }

    @Test
    void queueStatesAreSixteenBitIndices() {
        assertThat(new QueueState(0xffff, 0xffff).nextAvail()).isEqualTo(0xffff);
        assertThatThrownBy(() -> new QueueState(0x10000, 0)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> new QueueState(0, 0x10000)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> new QueueState(-1, 0)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> new QueueState(0, -1)).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void everyWayToMakeALayoutChecksTheSize() {
        for (int bad : new int[] {0, 3, 65536, -8}) {
            assertThatThrownBy(() -> SplitLayout.modern(bad)).isInstanceOf(IllegalArgumentException.class);
            assertThatThrownBy(() -> SplitLayout.legacy(bad, 4096)).isInstanceOf(IllegalArgumentException.class);
            assertThatThrownBy(() -> new SplitLayout(bad, 0, 0, 0)).isInstanceOf(IllegalArgumentException.class);
        }
        assertThat(SplitLayout.modern(32768).size()).isEqualTo(32768);
        try (GuestMemory mem = GuestMemory.allocate(0, 1 << 20)) {
            assertThatThrownBy(() -> SplitRing.map(mem, 0, 6, new RingAddresses(0, 4096, 8192)))
                    .isInstanceOf(IllegalArgumentException.class);
        }
    }

    @Test
    void ringPartsAreCheckedAgainstTheirAlignmentExactly() throws Exception {
        try (GuestMemory mem = GuestMemory.allocate(0, 1 << 20)) {
            assertThat(SplitRing.map(mem, 0, 8, new RingAddresses(0x1000, 0x1082, 0x1104)).size()).isEqualTo(8);
            assertThatThrownBy(() -> SplitRing.map(mem, 0, 8, new RingAddresses(0x1008, 0x1080, 0x1100)))
                    .isInstanceOf(VirtqueueException.class).hasMessageContaining("16-byte");
            assertThatThrownBy(() -> SplitRing.map(mem, 0, 8, new RingAddresses(0x1000, 0x1081, 0x1100)))
                    .isInstanceOf(VirtqueueException.class).hasMessageContaining("2-byte");
            assertThatThrownBy(() -> SplitRing.map(mem, 0, 8, new RingAddresses(0x1000, 0x1080, 0x1102)))
                    .isInstanceOf(VirtqueueException.class).hasMessageContaining("4-byte");
            // the used ring of 8 entries is 70 bytes: ending exactly at the top is fine, one byte more is not
            long top = (1 << 20) - 70;
            assertThat(SplitRing.map(mem, 0, 8, new RingAddresses(0x1000, 0x1080, top & ~3)).size()).isEqualTo(8);
            assertThatThrownBy(() -> SplitRing.map(mem, 0, 8, new RingAddresses(0x1000, 0x1080, (1 << 20) - 68)))
                    .isInstanceOf(VirtqueueException.class).hasMessageContaining("outside");
        }
    }

    @Test
    void theDriverKnowsItsQueueAndGivesItsMemoryBack() throws Exception {
        try (GuestMemory mem = GuestMemory.allocate(RingFixture.BASE, 1 << 20)) {
            GuestAllocator alloc = new GuestAllocator(mem, RingFixture.BASE, 1 << 20);
            DriverQueue<Integer> q = DriverQueue.allocate(alloc, 5, SplitLayout.modern(16), INDIRECT, 4, () -> { });
            assertThat(q.index()).isEqualTo(5);
            assertThat(q.size()).isEqualTo(16);
            assertThat(alloc.used()).isPositive();
            q.release();
            assertThat(alloc.used()).as("ring and indirect tables returned").isZero();
            assertThatThrownBy(() -> q.addOutBuf(0, 1, 1)).isInstanceOf(IllegalStateException.class);
            assertThatThrownBy(q::getBuf).isInstanceOf(IllegalStateException.class);
            DriverQueue<Integer> one = DriverQueue.allocate(alloc, 0, SplitLayout.modern(8), INDIRECT, 1, () -> { });
            assertThat(alloc.used()).as("a table of one descriptor is pointless: no pool").isEqualTo(SplitLayout.modern(8).totalBytes());
            one.release();
        }
    }

    @Test
    void indirectTablesAtAnyHeadLieInTheirOwnSlot() throws Exception {
        try (RingFixture f = new RingFixture(8, INDIRECT, 4)) {
            long b = f.buffer(256);
            f.driver.addOutBuf(b, 8, 0); // head 0, direct
            Scatterlist sg = new Scatterlist();
            for (int i = 0; i < 4; i++) {
                sg.addReadable(b + 16 + 16L * i, 16);
            }
            f.driver.addBuf(sg, 1); // head 1, indirect, exactly indirectMax buffers
            assertThat(f.driver.numFree()).isEqualTo(6);
            sg.clear();
            for (int i = 0; i < 5; i++) {
                sg.addReadable(b + 100 + i, 1);
            }
            f.driver.addBuf(sg, 2); // one more than a table holds: five direct descriptors
            assertThat(f.driver.numFree()).isEqualTo(1);
            DescriptorChain c = new DescriptorChain();
            assertThat(f.device.pop(c)).isTrue();
            assertThat(c.count()).isEqualTo(1);
            assertThat(f.device.pop(c)).isTrue();
            assertThat(c.count()).isEqualTo(4);
            for (int i = 0; i < 4; i++) {
                assertThat(c.address(i)).isEqualTo(b + 16 + 16L * i);
                assertThat(c.length(i)).isEqualTo(16);
            }
            long head1 = f.driver.addresses().descTable() + 16;
            long table = f.memory.readU64(head1);
            assertThat(f.memory.readU32(head1 + 8)).isEqualTo(64);
            long pool = f.memory.readU64(f.driver.addresses().descTable() + 16L * 0);
            assertThat(table).as("head 1's table is the pool's second slot, not the first").isNotEqualTo(pool);
            assertThat(f.device.pop(c)).isTrue();
            assertThat(c.count()).isEqualTo(5);
            assertThat(c.address(4)).isEqualTo(b + 104);
        }
    }

    @Test
    void aChainFillingTheRingExactlyFitsAndFreeingItRestoresEveryDescriptor() throws Exception {
        try (RingFixture f = new RingFixture(4, 0)) {
            long b = f.buffer(64);
            Scatterlist four = new Scatterlist().addReadable(b, 1).addReadable(b, 1).addReadable(b, 1).addWritable(b, 1);
            assertThat(f.driver.addBuf(four, 1)).isTrue();
            assertThat(f.driver.numFree()).isZero();
            assertThat(f.driver.addOutBuf(b, 1, 2)).isFalse();
            DescriptorChain c = new DescriptorChain();
            f.device.pop(c);
            f.device.addUsed(c.head(), 1);
            f.device.publishUsed();
            assertThat(f.driver.hasUsed()).isTrue();
            assertThat(f.driver.getBuf()).isEqualTo(1);
            assertThat(f.driver.hasUsed()).isFalse();
            assertThat(f.driver.numFree()).isEqualTo(4);
            assertThat(f.driver.addBuf(four, 3)).as("all four descriptors are free again").isTrue();
        }
    }

    @Test
    void callbacksWithEventIdxMoveUsedEventToTheRightPlace() throws Exception {
        try (RingFixture f = new RingFixture(8, EVENT_IDX)) {
            long b = f.buffer(64);
            long usedEvent = f.driver.addresses().availRing() + 4 + 2 * 8;
            for (int i = 0; i < 8; i++) {
                f.driver.addOutBuf(b, 8, i);
            }
            f.driver.disableCallbacks();
            assertThat(f.memory.readU16(usedEvent) & 0xffff).as("half the index space away").isEqualTo(0x8000);
            assertThat(f.availFlags()).as("flags stay 0 with EVENT_IDX").isZero();
            assertThat(f.driver.enableCallbacksDelayed()).as("nothing used yet: wait").isTrue();
            assertThat(f.memory.readU16(usedEvent) & 0xffff).as("three quarters of 8 in flight").isEqualTo(6);
            DescriptorChain c = new DescriptorChain();
            for (int i = 0; i < 7; i++) {
                f.device.pop(c);
                f.device.addUsed(c.head(), 0);
            }
            f.device.publishUsed();
            assertThat(f.driver.enableCallbacksDelayed()).as("7 of 8 used already: more than 6").isFalse();
            assertThat(f.driver.enableCallbacksPrepare()).isEqualTo(0);
            assertThat(f.memory.readU16(usedEvent) & 0xffff).isZero();
            for (int i = 0; i < 7; i++) {
                f.driver.getBuf();
            }
            assertThat(f.memory.readU16(usedEvent) & 0xffff).as("after each reap: the next entry").isEqualTo(7);
            f.driver.disableCallbacks();
            assertThat(f.memory.readU16(usedEvent) & 0xffff).isEqualTo(7 + 0x8000);
            assertThat(f.driver.enableCallbacksPrepare()).isEqualTo(7);
            assertThat(f.memory.readU16(usedEvent) & 0xffff).isEqualTo(7);
        }
    }

    @Test
    void callbacksWithoutEventIdxUseTheFlag() throws Exception {
        try (RingFixture f = new RingFixture(8, 0)) {
            long b = f.buffer(64);
            for (int i = 0; i < 4; i++) {
                f.driver.addOutBuf(b, 8, i);
            }
            f.driver.disableCallbacks();
            assertThat(f.availFlags()).isEqualTo(1);
            assertThat(f.driver.enableCallbacksDelayed()).isTrue();
            assertThat(f.availFlags()).isZero();
            f.driver.disableCallbacks();
            assertThat(f.driver.enableCallbacksPrepare()).isZero();
            assertThat(f.availFlags()).isZero();
            DescriptorChain c = new DescriptorChain();
            f.device.pop(c);
            f.device.addUsed(c.head(), 0);
            f.device.publishUsed();
            assertThat(f.driver.poll(0)).isTrue();
            assertThat(f.driver.enableCallbacks()).as("one used already").isFalse();
        }
    }

    @Test
    void aUsedIdEqualToTheQueueSizeBreaksTheDriverQueue() throws Exception {
        try (RingFixture f = new RingFixture(8, 0)) {
            long b = f.buffer(8);
            f.driver.addOutBuf(b, 8, 1);
            long used = f.driver.addresses().usedRing();
            f.memory.writeU32(used + 4, 8); // id 8 in a queue of 8
            f.memory.writeU16(used + 2, (short) 1);
            assertThat(f.driver.isBroken()).isFalse();
            assertThatThrownBy(f.driver::getBuf).isInstanceOf(VirtqueueException.class).hasMessageContaining("id 8");
            assertThat(f.driver.isBroken()).isTrue();
        }
    }

    @Test
    void theDeviceSideEdges() throws Exception {
        try (RingFixture f = new RingFixture(8, EVENT_IDX)) {
            long b = f.buffer(8);
            f.driver.addOutBuf(b, 8, 1);
            f.driver.addOutBuf(b, 8, 2);
            DescriptorChain c = new DescriptorChain();
            assertThat(f.device.pop(c)).isTrue();
            assertThat(f.availEvent(8)).as("notifications on: avail_event follows each pop").isEqualTo(1);
            f.device.disableNotifications();
            assertThat(f.device.pop(c)).isTrue();
            assertThat(f.availEvent(8)).as("off: left behind").isEqualTo(1);
            assertThat(f.device.state()).isEqualTo(new QueueState(2, 0));
            f.device.undoPop();
            assertThat(f.device.state()).isEqualTo(new QueueState(1, 0));
            assertThat(f.device.pop(c)).isTrue();
            assertThat(c.head()).isEqualTo(1);
            assertThatThrownBy(() -> f.device.addUsed(8, 0)).isInstanceOf(IllegalArgumentException.class);
            assertThatThrownBy(() -> f.device.addUsed(-1, 0)).isInstanceOf(IllegalArgumentException.class);
            f.device.addUsed(7, 0); // the last head is a head
            assertThat(f.device.index()).isZero();
            assertThat(f.device.size()).isEqualTo(8);
        }
        try (RingFixture f = new RingFixture(8, 0)) {
            f.writeDesc(0, f.buffer(8), 8, 0, 0);
            f.makeAvailable(0, 8, 1, 8); // head 8 in a queue of 8
            assertThatThrownBy(() -> f.device.pop(new DescriptorChain())).isInstanceOf(VirtqueueException.class)
                    .hasMessageContaining("head 8");
        }
    }

    @Test
    void chainEdgesNextIndirectLengthAndTotalSize() throws Exception {
        try (RingFixture f = new RingFixture(8, INDIRECT)) {
            long b = f.buffer(64);
            f.writeDesc(0, b, 8, F_NEXT, 8); // next == table size
            f.makeAvailable(0, 0, 1, 8);
            assertThatThrownBy(() -> f.device.pop(new DescriptorChain())).hasMessageContaining("next 8");
        }
        try (RingFixture f = new RingFixture(8, INDIRECT)) {
            long table = f.buffer(32);
            long b = f.buffer(8);
            f.writeDescAt(table, b, 8, F_NEXT, 2); // next == indirect table size
            f.writeDescAt(table + 16, b, 8, 0, 0);
            f.writeDesc(0, table, 32, F_INDIRECT, 0);
            f.makeAvailable(0, 0, 1, 8);
            assertThatThrownBy(() -> f.device.pop(new DescriptorChain())).hasMessageContaining("next 2");
        }
        try (RingFixture f = new RingFixture(8, 0)) {
            long b = f.buffer(8);
            // exactly 2^32 bytes (two buffers of 2^31 over the same memory would be outside it; use lengths
            // that stay inside: 1 MiB region, so build the total from one big and check the boundary arithmetic)
            f.writeDesc(0, b, 8, F_NEXT | F_WRITE, 1);
            f.writeDesc(1, b, 0, F_WRITE, 0);
            f.makeAvailable(0, 0, 1, 8);
            DescriptorChain c = new DescriptorChain();
            assertThat(f.device.pop(c)).isTrue();
            assertThat(c.writableBytes()).isEqualTo(8);
            assertThat(c.isWritable(0)).isTrue();
            assertThat(c.isWritable(1)).isTrue();
            assertThatThrownBy(() -> c.isWritable(2)).isInstanceOf(IndexOutOfBoundsException.class);
            assertThatThrownBy(() -> c.length(-1)).isInstanceOf(IndexOutOfBoundsException.class);
        }
    }

    @Test
    void transfersStartAtAnyOffsetAndCrossBuffers() throws Exception {
        try (RingFixture f = new RingFixture(8, 0)) {
            long b = f.buffer(64);
            byte[] data = new byte[40];
            for (int i = 0; i < 40; i++) {
                data[i] = (byte) (i + 1);
            }
            f.memory.write(b, data, 0, 40);
            // readable: 10 + 10 + 20 bytes; writable: 8 + 8
            f.driver.addBuf(new Scatterlist().addReadable(b, 10).addReadable(b + 10, 10).addReadable(b + 20, 20)
                    .addWritable(b + 40, 8).addWritable(b + 48, 8), 1);
            DescriptorChain c = new DescriptorChain();
            f.device.pop(c);
            assertThat(c.isWritable(2)).isFalse();
            assertThat(c.segment(1).byteSize()).isEqualTo(10);
            assertThat(c.segment(1).get(ValueLayout.JAVA_BYTE, 0)).isEqualTo((byte) 11);
            MemorySegment out = Arena.ofAuto().allocate(15);
            assertThat(c.readReadable(8, out)).isEqualTo(15);
            for (int i = 0; i < 15; i++) {
                assertThat(out.get(ValueLayout.JAVA_BYTE, i)).as("byte %d", i).isEqualTo((byte) (9 + i));
            }
            MemorySegment tail = Arena.ofAuto().allocate(100);
            assertThat(c.readReadable(30, tail)).as("only 10 bytes are left from 30").isEqualTo(10);
            assertThat(c.readReadable(10, tail, 5, 3)).isEqualTo(3);
            assertThat(tail.get(ValueLayout.JAVA_BYTE, 5)).isEqualTo((byte) 11);
            assertThat(c.readReadable(40, tail)).isZero();
            MemorySegment src = MemorySegment.ofArray(new byte[] {-1, -2, -3, -4, -5, -6});
            assertThat(c.writeWritable(6, src)).as("2 into the first, 4 into the second").isEqualTo(6);
            assertThat(f.memory.readU16(b + 46) & 0xffff).isEqualTo(0xfeff);
            assertThat(c.writeWritable(14, src, 1, 5)).as("only 2 bytes left").isEqualTo(2);
            assertThat(f.memory.slice(b + 54, 2).toArray(ValueLayout.JAVA_BYTE)).containsExactly(-2, -3);
            assertThat(c.toString()).contains("head");
        }
    }
}
