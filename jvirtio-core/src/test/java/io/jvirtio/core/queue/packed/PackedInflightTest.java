package io.jvirtio.core.queue.packed;

import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.QueueState;
import io.jvirtio.core.queue.RingError;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.queue.VirtqueueException;
import io.jvirtio.core.spec.Conformance;
import io.jvirtio.core.spec.Feature;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

import static io.jvirtio.core.queue.packed.Packed.F_AVAIL;
import static io.jvirtio.core.queue.packed.Packed.F_NEXT;
import static io.jvirtio.core.queue.packed.Packed.F_WRITE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * vhost-user in-flight tracking over a packed ring ("Inflight I/O tracking", QueueRegionPacked): the log
 * byte for byte where QEMU and DPDK keep it, a restarted device that finishes what the dead one took even
 * though used descriptors overwrote those lists in the ring, a batch the device died publishing rolled back
 * or forward, and a hostile log refused with a named error.
 */
class PackedInflightTest {
    static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfByte U8 = ValueLayout.JAVA_BYTE;

    static long entry(int e) {
        return 32 + 32L * e;
    }

    static MemorySegment log(int size) {
        return Arena.ofAuto().allocate(PackedDeviceQueue.inflightBytes(size));
    }

    /** A device restarted over {@code r}'s ring as QEMU starts it after a crash: a stale base, the old log. */
    static PackedDeviceQueue restart(PackedRingTest.Ring r, int size, MemorySegment log) throws VirtqueueException {
        PackedDeviceQueue q = PackedDeviceQueue.create(r.memory, 0, size, r.driver.addresses(), r.features,
                QueueState.INITIAL_PACKED);
        q.trackInflight(log);
        return q;
    }

    @Test
    @Conformance("vu-inflight-2")
    void theLogIsWrittenWhereQemuAndDpdkKeepIt() throws Exception {
        assertThat(PackedDeviceQueue.inflightBytes(8)).isEqualTo(32 + 32 * 8);
        MemorySegment log = log(8);
        log.fill((byte) 0x5a);
        log.set(U16, 8, (short) 0); // version 0: never used, formatted whatever else it holds
        try (PackedRingTest.Ring r = new PackedRingTest.Ring(8, 0)) {
            r.device.trackInflight(log);
            assertThat(log.get(U16, 8)).as("version").isEqualTo((short) 1);
            assertThat(log.get(U16, 10)).as("desc_num").isEqualTo((short) 8);
            assertThat(log.get(U16, 12)).as("free_head").isZero();
            assertThat(log.get(U16, 16)).as("used_idx").isZero();
            assertThat(log.get(U8, 20)).as("used_wrap_counter").isEqualTo((byte) 1);
            assertThat(log.get(U8, 21)).as("old_used_wrap_counter").isEqualTo((byte) 1);
            for (int e = 0; e < 8; e++) {
                assertThat(log.get(U16, entry(e) + 2)).as("entry %d links to the next", e).isEqualTo((short) (e + 1));
                assertThat(log.get(U8, entry(e))).as("entry %d not in flight", e).isZero();
            }
            long b = r.buffer(64);
            r.driver.addBuf(new Scatterlist().addReadable(b, 16).addReadable(b + 16, 8).addWritable(b + 32, 32), 7);
            DescriptorChain c = new DescriptorChain();
            assertThat(r.device.pop(c)).isTrue();
            int id = c.head();
            // three descriptors copied into entries 0, 1, 2; the head entry records the list
            assertThat(log.get(U8, entry(0))).as("inflight").isEqualTo((byte) 1);
            assertThat(log.get(U16, entry(0) + 4)).as("last").isEqualTo((short) 2);
            assertThat(log.get(U16, entry(0) + 6)).as("num").isEqualTo((short) 3);
            assertThat(log.get(U64, entry(0) + 8)).as("counter").isEqualTo(1);
            assertThat(log.get(U64, entry(1) + 24)).as("addr").isEqualTo(b + 16);
            assertThat(log.get(U32, entry(1) + 20)).as("len").isEqualTo(8);
            assertThat(log.get(U16, entry(2) + 16)).as("id").isEqualTo((short) id);
            assertThat(log.get(U16, entry(2) + 18)).as("flags").isEqualTo((short) (F_AVAIL | F_WRITE));
            assertThat(log.get(U16, entry(0) + 18)).isEqualTo((short) (F_AVAIL | F_NEXT));
            assertThat(log.get(U16, 12)).as("free_head").isEqualTo((short) 3);
            assertThat(log.get(U16, 14)).as("old_free_head").isEqualTo((short) 3);

            r.driver.addOutBuf(b, 8, 8);
            DescriptorChain other = new DescriptorChain();
            assertThat(r.device.pop(other)).isTrue(); // entry 3, so the free list is now 4, 5, ...
            r.device.addUsed(c, 32);
            assertThat(log.get(U8, entry(0))).as("staged: still in flight").isEqualTo((byte) 1);
            assertThat(log.get(U16, 16)).as("staged: used_idx unmoved").isZero();
            r.device.publishUsed();
            assertThat(log.get(U8, entry(0))).isZero();
            assertThat(log.get(U16, entry(2) + 2)).as("the list's last entry links to the old free head")
                    .isEqualTo((short) 4);
            assertThat(log.get(U8, entry(3))).as("the other list").isEqualTo((byte) 1);
            assertThat(log.get(U16, 12)).as("free_head: the list returned").isZero();
            assertThat(log.get(U16, 16)).as("used_idx").isEqualTo((short) 3);
            assertThat(log.get(U8, 20)).isEqualTo((byte) 1);
            assertThat(log.get(U16, 14)).as("old_free_head").isZero();
            assertThat(log.get(U16, 18)).as("old_used_idx").isEqualTo((short) 3);
            assertThat(log.get(U8, 21)).isEqualTo((byte) 1);
            assertThat(r.driver.getBuf()).isEqualTo(7);
        }
    }

    @Test
    @Conformance("vu-inflight-2")
    void aFreshLogKeepsThePositionTheQueueStartedAt() throws Exception {
        try (PackedRingTest.Ring r = new PackedRingTest.Ring(8, 0)) {
            long b = r.buffer(16);
            DescriptorChain c = new DescriptorChain();
            for (int i = 0; i < 11; i++) { // 11 buffers: the used side wraps
                r.driver.addOutBuf(b, 16, i);
                r.device.pop(c);
                r.device.addUsed(c, 0);
                r.device.publishUsed();
                r.driver.getBuf();
            }
            r.driver.addOutBuf(b, 16, 50);
            r.driver.addOutBuf(b, 16, 51);
            r.device.pop(c);
            r.device.pop(c);
            QueueState at = r.device.state();
            assertThat(at).as("two buffers ahead of the used side").isEqualTo(new QueueState(0x0005, 0x0003));
            MemorySegment log = log(8);
            // as on a migration target: SET_VRING_BASE carries the position, the in-flight buffer is new
            PackedDeviceQueue q = PackedDeviceQueue.create(r.memory, 0, 8, r.driver.addresses(), r.features, at);
            q.trackInflight(log);
            assertThat(q.state()).isEqualTo(at);
            assertThat(log.get(U16, 16)).as("used_idx").isEqualTo((short) 3);
            assertThat(log.get(U8, 20)).as("used_wrap_counter after one wrap").isZero();
            r.driver.addOutBuf(b, 16, 99);
            assertThat(q.pop(c)).isTrue();
            q.addUsed(c, 0);
            q.publishUsed();
            assertThat(q.state()).isEqualTo(new QueueState(0x0006, 0x0004));
        }
    }

    @Test
    @Conformance("vu-inflight-2")
    void aRestartedDeviceFinishesListsWhoseRingSlotsUsedDescriptorsOverwrote() throws Exception {
        try (PackedRingTest.Ring r = new PackedRingTest.Ring(8, 0)) {
            MemorySegment log = log(8);
            r.device.trackInflight(log);
            long b = r.buffer(4096);
            // A: two descriptors (slots 0-1), B: one (slot 2), C: two (slots 3-4)
            r.driver.addBuf(new Scatterlist().addReadable(b, 16).addWritable(b + 16, 100), 1);
            r.driver.addBuf(new Scatterlist().addReadable(b + 200, 16), 2);
            r.driver.addBuf(new Scatterlist().addReadable(b + 300, 16).addWritable(b + 400, 50), 3);
            DescriptorChain c = new DescriptorChain();
            Map<Integer, String> byId = new HashMap<>();
            String[] names = {"A", "B", "C"};
            int[] ids = new int[3];
            for (int i = 0; i < 3; i++) {
                assertThat(r.device.pop(c)).isTrue();
                ids[i] = c.head();
                byId.put(c.head(), names[i]);
            }
            r.device.addUsed(ids[2], 50);   // C done first: its used descriptor goes to slot 0, over A's first
            r.device.publishUsed();
            assertThat(r.driver.getBuf()).isEqualTo(3);
            r.device.addUsed(ids[1], 0);    // B staged (its used descriptor written at slot 2) — and the device dies
            r.driver.addBuf(new Scatterlist().addReadable(b + 500, 16), 4); // the guest goes on meanwhile

            PackedDeviceQueue second = restart(r, 8, log);
            assertThat(second.state()).as("used at slot 2 (after C's two), available after A and B: slot 5")
                    .isEqualTo(new QueueState(0x8005, 0x8002));
            assertThat(second.pop(c)).isTrue();
            assertThat(byId.get(c.head())).as("oldest first").isEqualTo("A");
            assertThat(c.count()).isEqualTo(2);
            assertThat(c.address(0)).as("rebuilt from the log, not the overwritten ring").isEqualTo(b);
            assertThat(c.length(0)).isEqualTo(16);
            assertThat(c.isWritable(0)).as("a readable descriptor stays readable").isFalse();
            assertThat(c.readableBytes()).isEqualTo(16);
            assertThat(c.address(1)).isEqualTo(b + 16);
            assertThat(c.isWritable(1)).isTrue();
            assertThat(c.length(1)).isEqualTo(100);
            int a = c.head();
            assertThat(second.pop(c)).isTrue();
            assertThat(byId.get(c.head())).isEqualTo("B");
            assertThat(c.address(0)).isEqualTo(b + 200);
            int bb = c.head();
            assertThat(second.pop(c)).as("then the one never taken").isTrue();
            assertThat(c.address(0)).isEqualTo(b + 500);
            int d = c.head();
            assertThat(second.pop(c)).isFalse();
            second.addUsed(bb, 0);
            second.addUsed(a, 100);
            second.addUsed(d, 0);
            second.publishUsed();
            List<String> back = new ArrayList<>();
            Integer t;
            while ((t = r.driver.getBuf()) != null) {
                back.add(" ABCD".charAt(t) + ":" + r.driver.lastLength());
            }
            assertThat(back).as("every buffer back exactly once").containsExactly("B:0", "A:100", "D:0");
            assertThat(log.get(U16, 12)).isEqualTo(log.get(U16, 14));
        }
    }

    @Test
    @Conformance("vu-inflight-2")
    void anIndirectListIsResubmittedWithItsTableReadFromGuestMemory() throws Exception {
        try (PackedRingTest.Ring r = new PackedRingTest.Ring(4, Feature.INDIRECT_DESC.mask())) {
            MemorySegment log = log(4);
            r.device.trackInflight(log);
            long b = r.buffer(256);
            r.driver.addBuf(new Scatterlist().addReadable(b, 16).addReadable(b + 16, 16).addWritable(b + 64, 64), 1);
            DescriptorChain c = new DescriptorChain();
            r.device.pop(c);
            int id = c.head();
            PackedDeviceQueue second = restart(r, 4, log);
            assertThat(second.pop(c)).isTrue();
            assertThat(c.head()).isEqualTo(id);
            assertThat(c.count()).isEqualTo(3);
            assertThat(c.writableBytes()).isEqualTo(64);
            assertThat(c.address(2)).isEqualTo(b + 64);
            second.addUsed(c, 64);
            second.publishUsed();
            assertThat(r.driver.getBuf()).isEqualTo(1);
            assertThat(second.state()).isEqualTo(new QueueState(0x8001, 0x8001));
        }
    }

    /**
     * A device dies publishing a batch after the log moved {@code used_idx} (steps 1-2): if the ring's flags
     * were not yet written the driver never saw the batch and it is redone; if they were, it is not.
     */
    @Test
    @Conformance("vu-inflight-2")
    void aBatchTheDeviceDiedPublishingIsRolledBackOrForwardByTheRing() throws Exception {
        for (boolean flagsWritten : new boolean[] {false, true}) {
            try (PackedRingTest.Ring r = new PackedRingTest.Ring(8, 0)) {
                MemorySegment log = log(8);
                r.device.trackInflight(log);
                long b = r.buffer(64);
                DescriptorChain first = new DescriptorChain();
                for (int i = 0; i < 5; i++) { // the batch below starts at slot 5, not at 0
                    r.driver.addOutBuf(b, 16, 10 + i);
                    r.device.pop(first);
                    r.device.addUsed(first, 0);
                    r.device.publishUsed();
                    r.driver.getBuf();
                }
                for (int i = 0; i < 3; i++) {
                    r.driver.addOutBuf(b + 16L * i, 16, i);
                }
                DescriptorChain c = new DescriptorChain();
                int[] ids = new int[3];
                for (int i = 0; i < 3; i++) {
                    r.device.pop(c);
                    ids[i] = c.head();
                }
                r.device.addUsed(ids[1], 0);
                r.device.addUsed(ids[0], 0);
                byte[] before = log.toArray(U8);
                short slot5 = r.memory.readU16(r.desc(5) + 14);
                short slot6 = r.memory.readU16(r.desc(6) + 14);
                r.device.publishUsed();
                // back to the moment between "update used_idx" and "set inflight to 0": the heads still in
                // flight and the old_* fields not yet moved
                for (int e = 0; e < 8; e++) {
                    log.set(U8, entry(e), before[(int) entry(e)]);
                }
                MemorySegment.copy(MemorySegment.ofArray(before), 14, log, 14, 2);
                MemorySegment.copy(MemorySegment.ofArray(before), 18, log, 18, 2);
                MemorySegment.copy(MemorySegment.ofArray(before), 21, log, 21, 1);
                if (!flagsWritten) {
                    r.memory.writeU16(r.desc(5) + 14, slot5);
                    r.memory.writeU16(r.desc(6) + 14, slot6);
                }
                PackedDeviceQueue second = restart(r, 8, log);
                List<Integer> redone = new ArrayList<>();
                while (second.pop(c)) {
                    redone.add(c.head());
                }
                // 5 + 3 slots: the available side wrapped to slot 0
                if (flagsWritten) {
                    assertThat(redone).as("the driver saw the batch: only the third is redone").containsExactly(ids[2]);
                    assertThat(second.state()).isEqualTo(new QueueState(0x0000, 0x8007));
                } else {
                    assertThat(redone).as("the driver never saw the batch: all three redone, oldest first")
                            .containsExactly(ids[0], ids[1], ids[2]);
                    assertThat(second.state()).isEqualTo(new QueueState(0x0000, 0x8005));
                }
                assertThat(log.get(U16, 12)).as("free_head as old_free_head").isEqualTo(log.get(U16, 14));
            }
        }
    }

    @Test
    @Conformance("vu-inflight-2")
    void anUndonePopGivesItsEntriesBack() throws Exception {
        try (PackedRingTest.Ring r = new PackedRingTest.Ring(4, 0)) {
            MemorySegment log = log(4);
            r.device.trackInflight(log);
            long b = r.buffer(64);
            r.driver.addBuf(new Scatterlist().addWritable(b, 16).addWritable(b + 16, 16), 5);
            DescriptorChain c = new DescriptorChain();
            r.device.pop(c);
            r.device.undoPop();
            assertThat(log.get(U8, entry(0))).isZero();
            assertThat(log.get(U16, 12)).isZero();
            assertThat(log.get(U16, 14)).isZero();
            PackedDeviceQueue second = restart(r, 4, log);
            assertThat(second.state()).as("nothing in flight").isEqualTo(QueueState.INITIAL_PACKED);
            assertThat(second.pop(c)).as("the buffer is still available in the ring").isTrue();
            second.addUsed(c, 32);
            second.publishUsed();
            assertThat(r.driver.getBuf()).isEqualTo(5);
        }
    }

    @Test
    @Conformance("vu-inflight-2")
    void listsAreResubmittedInTheOrderTakenNotTheOrderOfTheirEntries() throws Exception {
        try (PackedRingTest.Ring r = new PackedRingTest.Ring(4, 0)) {
            MemorySegment log = log(4);
            r.device.trackInflight(log);
            long b = r.buffer(64);
            DescriptorChain c = new DescriptorChain();
            r.driver.addOutBuf(b, 16, 1);
            r.driver.addOutBuf(b + 16, 16, 2);
            r.device.pop(c);                  // 1 in entry 0
            int one = c.head();
            r.device.pop(c);                  // 2 in entry 1
            int two = c.head();
            r.device.addUsed(one, 0);
            r.device.publishUsed();           // entry 0 back at the front of the free list
            assertThat(r.driver.getBuf()).isEqualTo(1);
            r.driver.addOutBuf(b + 32, 16, 3);
            r.device.pop(c);                  // 3 in entry 0, taken after 2
            int three = c.head();
            assertThat(log.get(U8, entry(0))).isEqualTo((byte) 1);
            PackedDeviceQueue second = restart(r, 4, log);
            assertThat(second.pop(c)).isTrue();
            assertThat(c.head()).as("2 was taken first").isEqualTo(two);
            assertThat(second.pop(c)).isTrue();
            assertThat(c.head()).isEqualTo(three);
            assertThat(c.address(0)).isEqualTo(b + 32);
            assertThat(second.pop(c)).isFalse();
        }
    }

    @Test
    @Conformance("vu-inflight-2")
    void aListFillingTheWholeRingIsResubmitted() throws Exception {
        try (PackedRingTest.Ring r = new PackedRingTest.Ring(4, 0)) {
            MemorySegment log = log(4);
            r.device.trackInflight(log);
            long b = r.buffer(64);
            r.driver.addBuf(new Scatterlist().addReadable(b, 8).addReadable(b + 8, 8).addWritable(b + 16, 8)
                    .addWritable(b + 24, 8), 9);
            DescriptorChain c = new DescriptorChain();
            r.device.pop(c);
            PackedDeviceQueue second = restart(r, 4, log);
            assertThat(second.state()).as("four slots on: available wrapped").isEqualTo(new QueueState(0x0000, 0x8000));
            assertThat(second.pop(c)).isTrue();
            assertThat(c.count()).isEqualTo(4);
            assertThat(c.address(3)).isEqualTo(b + 24);
            second.addUsed(c, 16);
            second.publishUsed();
            assertThat(r.driver.getBuf()).isEqualTo(9);
            assertThat(r.driver.lastLength()).isEqualTo(16);
        }
    }

    @Test
    @Conformance("vu-inflight-3")
    void aFreeListChangedUnderTheRunningDeviceStopsTheRing() throws Exception {
        try (PackedRingTest.Ring r = new PackedRingTest.Ring(4, 0)) {
            MemorySegment log = log(4);
            r.device.trackInflight(log);
            log.set(U16, entry(0) + 2, (short) 4); // entry 0 now ends the free list
            long b = r.buffer(64);
            r.driver.addBuf(new Scatterlist().addReadable(b, 16).addReadable(b + 16, 16), 0);
            assertThatThrownBy(() -> r.device.pop(new DescriptorChain())).isInstanceOf(VirtqueueException.class)
                    .hasMessageContaining("free list exhausted at entry 4");
            assertThatThrownBy(() -> r.device.pop(new DescriptorChain())).as("the ring stays stopped")
                    .isInstanceOf(VirtqueueException.class);
        }
    }

    /** One hostile edit of a log holding one list of two entries (0, 1) with buffer id 0. */
    static void refused(String expected, Consumer<MemorySegment> edit) throws Exception {
        try (PackedRingTest.Ring r = new PackedRingTest.Ring(4, 0)) {
            MemorySegment log = log(4);
            r.device.trackInflight(log);
            long b = r.buffer(64);
            r.driver.addBuf(new Scatterlist().addReadable(b, 16).addReadable(b + 16, 16), 0);
            r.device.pop(new DescriptorChain());
            edit.accept(log);
            assertThatThrownBy(() -> restart(r, 4, log)).as(expected).isInstanceOf(VirtqueueException.class)
                    .hasMessageContaining(expected)
                    .satisfies(e -> assertThat(((VirtqueueException) e).error()).isInstanceOf(RingError.InflightLogInvalid.class));
        }
    }

    @Test
    @Conformance("vu-inflight-3")
    void aHostileLogIsRefusedWithANamedError() throws Exception {
        refused("version 2", l -> l.set(U16, 8, (short) 2));
        refused("with 8 descriptors", l -> l.set(U16, 10, (short) 8));
        refused("used index 4/0", l -> l.set(U16, 16, (short) 4));
        refused("used index 0/4", l -> l.set(U16, 18, (short) 4));
        refused("wrap counter 2", l -> l.set(U8, 20, (byte) 2));
        refused("free list from 2 leaves the table or loops", l -> l.set(U16, entry(3) + 2, (short) 2));
        refused("free list from 2 leaves the table or loops", l -> l.set(U16, entry(2) + 2, (short) 9));
        refused("leaves the table or shares entry 4", l -> l.set(U16, entry(0) + 2, (short) 4));
        refused("records a list of 0 descriptors", l -> l.set(U16, entry(0) + 6, (short) 0));
        refused("records a list of 5 descriptors", l -> l.set(U16, entry(0) + 6, (short) 5));
        refused("shares entry 2", l -> l.set(U16, entry(0) + 6, (short) 3));
        refused("not at its recorded last entry", l -> l.set(U16, entry(0) + 4, (short) 0));
        refused("buffer id 4, not below 4", l -> l.set(U16, entry(1) + 16, (short) 4));
        refused("also in flight in another list", l -> {
            // a second list at entry 2 (one descriptor) with the same buffer id 0
            l.set(U16, 12, (short) 3);
            l.set(U16, 14, (short) 3);
            l.set(U8, entry(2), (byte) 1);
            l.set(U16, entry(2) + 6, (short) 1);
            l.set(U16, entry(2) + 4, (short) 2);
            l.set(U16, entry(2) + 16, (short) 0);
        });
        try (PackedRingTest.Ring r = new PackedRingTest.Ring(4, 0)) {
            assertThatThrownBy(() -> restart(r, 4, log(4).asSlice(0, 100))).isInstanceOf(VirtqueueException.class)
                    .hasMessageContaining("100 bytes for a packed queue of 4 needing 160");
        }
    }
}
