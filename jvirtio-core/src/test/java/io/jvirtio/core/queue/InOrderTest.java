package io.jvirtio.core.queue;

import io.jvirtio.core.spec.Conformance;
import io.jvirtio.core.spec.Feature;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * VIRTIO_F_IN_ORDER (§2.7.9, §2.8.8) on both sides of both ring formats, read off the bytes in guest memory:
 * the device uses buffers in the order taken and writes one used entry per batch, the driver takes the
 * buffers a batch skipped as filled completely, and the split driver uses its descriptor table as a ring.
 */
class InOrderTest {
    static final long IN_ORDER = Feature.IN_ORDER.mask();

    static long features(boolean packed, long more) {
        return IN_ORDER | more | (packed ? Feature.RING_PACKED.mask() : 0);
    }

    /** Split: used element {@code i} (id, len); packed: descriptor {@code i} (id, len, flags). */
    static int[] usedEntry(Rings r, boolean packed, int i) throws Exception {
        if (packed) {
            long d = r.driver.addresses().descTable() + 16L * i;
            return new int[] {r.memory.readU16(d + 12) & 0xffff, r.memory.readU32(d + 8), r.memory.readU16(d + 14) & 0xffff};
        }
        long e = r.driver.addresses().usedRing() + 4 + 8L * i;
        return new int[] {r.memory.readU32(e), r.memory.readU32(e + 4)};
    }

    @ParameterizedTest(name = "packed={0}")
    @ValueSource(booleans = {false, true})
    @Conformance({"inorder-dev-1", "inorder-drv-1"})
    void buffersFilledCompletelyShareTheUsedEntryOfTheBufferClosingTheirBatch(boolean packed) throws Exception {
        try (Rings r = new Rings(8, features(packed, 0), 4)) {
            long b = r.buffer(64);
            for (int t = 0; t < 5; t++) {
                r.driver.addInBuf(b + 8L * t, 8, t);
            }
            DescriptorChain c = new DescriptorChain();
            int[] heads = new int[5];
            int[] lens = {8, 8, 3, 8, 8};
            for (int t = 0; t < 5; t++) {
                assertThat(r.device.pop(c)).isTrue();
                heads[t] = c.head();
                r.device.addUsed(c, lens[t]);
            }
            r.device.publishUsed();
            // batch {0, 1, 2} in one entry at position 0 naming buffer 2; batch {3, 4} at position 3 naming 4
            assertThat(usedEntry(r, packed, 0)[0]).as("the first batch's entry names its last buffer").isEqualTo(heads[2]);
            assertThat(usedEntry(r, packed, 0)[1]).isEqualTo(3);
            assertThat(usedEntry(r, packed, 3)[0]).as("the second batch's entry, at its first buffer").isEqualTo(heads[4]);
            assertThat(usedEntry(r, packed, 3)[1]).isEqualTo(8);
            if (packed) {
                assertThat(usedEntry(r, true, 1)[2] & 0x8080).as("skipped slots keep their available flags")
                        .isEqualTo(0x0080);
            } else {
                assertThat(usedEntry(r, false, 1)[0]).as("no entries for the skipped buffers").isZero();
                assertThat(r.memory.readU16(r.driver.addresses().usedRing() + 2)).as("used.idx by the batch sizes")
                        .isEqualTo((short) 5);
            }
            List<String> back = new ArrayList<>();
            Integer t;
            while ((t = r.driver.getBuf()) != null) {
                back.add(t + ":" + r.driver.lastLength());
            }
            assertThat(back).as("every buffer, oldest first, skipped ones with all their writable bytes")
                    .containsExactly("0:8", "1:8", "2:3", "3:8", "4:8");
            assertThat(r.driver.numFree()).isEqualTo(r.driver.size());
        }
    }

    @ParameterizedTest(name = "packed={0}")
    @ValueSource(booleans = {false, true})
    @Conformance("inorder-dev-1")
    void aBatchEndsAtEachPublish(boolean packed) throws Exception {
        try (Rings r = new Rings(8, features(packed, 0), 4)) {
            long b = r.buffer(64);
            DescriptorChain c = new DescriptorChain();
            for (int t = 0; t < 2; t++) {
                r.driver.addInBuf(b + 8L * t, 8, t);
                r.device.pop(c);
                r.device.addUsed(c, 8);
                r.device.publishUsed();   // the driver may take the entry now: it is never rewritten
                assertThat(usedEntry(r, packed, t)[0]).isEqualTo(c.head());
            }
            assertThat(r.driver.getBuf()).isZero();
            assertThat(r.driver.getBuf()).isEqualTo(1);
            assertThat(r.driver.getBuf()).isNull();
        }
    }

    @ParameterizedTest(name = "packed={0}")
    @ValueSource(booleans = {false, true})
    @Conformance("basic-dev-13")
    void aDeviceUsingABufferBeforeAnOlderOneIsStopped(boolean packed) throws Exception {
        try (Rings r = new Rings(8, features(packed, 0), 4)) {
            long b = r.buffer(64);
            r.driver.addInBuf(b, 8, 0);
            r.driver.addInBuf(b + 8, 8, 1);
            DescriptorChain first = new DescriptorChain();
            DescriptorChain second = new DescriptorChain();
            r.device.pop(first);
            r.device.pop(second);
            assertThatThrownBy(() -> r.device.addUsed(second, 8)).isInstanceOf(IllegalStateException.class)
                    .hasMessageContaining("IN_ORDER").hasMessageContaining("buffer " + first.head() + ", taken earlier");
            // an undone pop is taken again in its place
            r.driver.addInBuf(b + 16, 8, 2);
            DescriptorChain third = new DescriptorChain();
            r.device.pop(third);
            r.device.undoPop();
            r.device.addUsed(first, 8);
            r.device.addUsed(second, 8);
            assertThat(r.device.pop(third)).isTrue();
            r.device.addUsed(third, 8);
            r.device.publishUsed();
            assertThat(r.driver.getBuf()).isZero();
            assertThat(r.driver.getBuf()).isEqualTo(1);
            assertThat(r.driver.getBuf()).isEqualTo(2);
        }
    }

    @ParameterizedTest(name = "packed={0}")
    @ValueSource(booleans = {false, true})
    @Conformance("inorder-drv-1")
    void aUsedEntryNamingNoBufferOfThePublishedBatchBreaksTheDriverQueue(boolean packed) throws Exception {
        try (Rings r = new Rings(4, features(packed, 0), 4)) {
            long b = r.buffer(64);
            for (int t = 0; t < 3; t++) {
                r.driver.addInBuf(b + 8L * t, 8, t);
            }
            DescriptorChain c = new DescriptorChain();
            int[] heads = new int[3];
            for (int t = 0; t < 3; t++) {
                r.device.pop(c);
                heads[t] = c.head();
            }
            r.device.addUsed(heads[0], 8);
            r.device.publishUsed();
            if (packed) {
                // a packed ring has no index to bound the batch: a hostile device names an id not in flight
                r.memory.writeU16(r.driver.addresses().descTable() + 12, (short) 3);
            } else {
                // a hostile device names the third buffer in the entry that, by used.idx, covers one buffer
                r.memory.writeU32(r.driver.addresses().usedRing() + 4, heads[2]);
            }
            assertThatThrownBy(r.driver::getBuf).isInstanceOf(VirtqueueException.class)
                    .satisfies(e -> assertThat(((VirtqueueException) e).error()).isInstanceOf(RingError.BadUsedId.class));
        }
    }

    @ParameterizedTest(name = "packed={0}")
    @ValueSource(booleans = {false, true})
    @Conformance({"inorder-dev-1", "inorder-drv-1"})
    void batchesLapTheRingAndADriverHalfwayThroughOneDoesNotWaitForAnInterrupt(boolean packed) throws Exception {
        try (Rings r = new Rings(8, features(packed, Feature.EVENT_IDX.mask()), 4)) {
            long b = r.buffer(64);
            DescriptorChain c = new DescriptorChain();
            int token = 0;
            for (int round = 0; round < 40; round++) { // 120 buffers: 15 laps of a ring of 8
                for (int i = 0; i < 3; i++) {
                    r.driver.addInBuf(b + 8L * i, 8, token + i);
                }
                for (int i = 0; i < 3; i++) {
                    assertThat(r.device.pop(c)).isTrue();
                    r.device.addUsed(c, 8);
                }
                r.device.publishUsed();
                assertThat(r.driver.getBuf()).isEqualTo(token);
                // two buffers of the batch still to take: enabling callbacks must say so, not wait
                assertThat(r.driver.enableCallbacks()).as("round %d: the rest of the batch is there", round).isFalse();
                assertThat(r.driver.hasUsed()).isTrue();
                assertThat(r.driver.getBuf()).isEqualTo(token + 1);
                assertThat(r.driver.getBuf()).isEqualTo(token + 2);
                assertThat(r.driver.getBuf()).isNull();
                assertThat(r.driver.hasUsed()).isFalse();
                // now it may wait: the next batch the device publishes must interrupt it
                assertThat(r.driver.enableCallbacks()).isTrue();
                r.device.needsNotification(); // the decision for this batch was taken above
                token += 3;
                r.driver.addInBuf(b, 8, token);
                assertThat(r.device.pop(c)).isTrue();
                r.device.addUsed(c, 8);
                r.device.publishUsed();
                assertThat(r.device.needsNotification()).as("round %d: the driver waits at the batch's end", round).isTrue();
                assertThat(r.driver.getBuf()).isEqualTo(token);
                token += 1;
                r.driver.disableCallbacks();
            }
            assertThat(r.driver.numFree()).isEqualTo(r.driver.size());
        }
    }

    @ParameterizedTest(name = "packed={0}")
    @ValueSource(booleans = {false, true})
    @Conformance({"inorder-dev-1", "inorder-drv-1"})
    void batchesOfBuffersTheDeviceOnlyReadCrossTheEndOfTheRingOnEveryLap(boolean packed) throws Exception {
        // Read-only buffers come back with length 0, so a packed used descriptor on an odd lap has flags 0
        // (AVAIL = USED = the wrap counter 0, no WRITE): used all the same. Batches of 3 in a ring of 4 end at
        // every slot, across the end of the ring on three laps out of four.
        try (Rings r = new Rings(4, features(packed, Feature.EVENT_IDX.mask()), 4)) {
            long b = r.buffer(64);
            DescriptorChain c = new DescriptorChain();
            int token = 0;
            for (int round = 0; round < 12; round++) {
                for (int i = 0; i < 3; i++) {
                    r.driver.addOutBuf(b + 8L * i, 8, token + i);
                }
                for (int i = 0; i < 3; i++) {
                    assertThat(r.device.pop(c)).isTrue();
                    r.device.addUsed(c, 0);
                }
                r.device.publishUsed();
                for (int i = 0; i < 3; i++) {
                    assertThat(r.driver.getBuf()).as("round %d, buffer %d", round, i).isEqualTo(token + i);
                    assertThat(r.driver.lastLength()).isZero();
                    if (packed && i == 0) {
                        // the batch is open: the device's next used descriptor goes after its end, on its lap
                        int end = 3 * (round + 1);
                        int expected = end % 4 | (end / 4 % 2 == 0 ? 0x8000 : 0);
                        assertThat(r.driver.enableCallbacksPrepare()).as("event offset, round %d", round)
                                .isEqualTo(expected);
                        assertThat(r.memory.readU16(r.driver.addresses().availRing()) & 0xffff).isEqualTo(expected);
                        r.driver.disableCallbacks();
                    }
                }
                assertThat(r.driver.getBuf()).isNull();
                token += 3;
            }
            assertThat(r.driver.numFree()).isEqualTo(4);
        }
    }

    @ParameterizedTest(name = "packed={0}")
    @ValueSource(booleans = {false, true})
    @Conformance("inorder-drv-1")
    void detachUnusedGivesBuffersBackOldestFirst(boolean packed) throws Exception {
        try (Rings r = new Rings(4, features(packed, 0), 4)) {
            long b = r.buffer(64);
            DescriptorChain c = new DescriptorChain();
            for (int t = 0; t < 6; t++) { // a lap first, so the oldest is not at slot 0
                r.driver.addInBuf(b, 8, 100 + t);
                r.device.pop(c);
                r.device.addUsed(c, 8);
                r.device.publishUsed();
                r.driver.getBuf();
            }
            for (int t = 0; t < 3; t++) {
                r.driver.addInBuf(b + 8L * t, 8, t);
            }
            // the device was reset before taking them
            assertThat(r.driver.detachUnused()).isZero();
            assertThat(r.driver.detachUnused()).isEqualTo(1);
            assertThat(r.driver.detachUnused()).isEqualTo(2);
            assertThat(r.driver.detachUnused()).isNull();
            assertThat(r.driver.numFree()).isEqualTo(4);
        }
    }

    @Test
    @Conformance("basic-dev-13")
    void theOrderTakenSurvivesGivingBackAndLappingItsArray() {
        TakenOrder order = new TakenOrder(3, 0);
        for (int lap = 0; lap < 4; lap++) {
            order.taken(5);
            order.taken(6);
            order.untaken();      // 6 given back
            order.taken(7);
            order.taken(8);
            order.used(5);
            assertThatThrownBy(() -> order.used(6)).as("6 was given back").isInstanceOf(IllegalStateException.class);
            order.used(7);
            order.used(8);
        }
        assertThatThrownBy(() -> order.used(5)).hasMessageContaining("before being taken");
    }

    @Test
    @Conformance("split-drv-5")
    void theSplitDriverUsesItsTableAsARingWithNextPointingToTheFollowingEntry() throws Exception {
        try (Rings r = new Rings(4, IN_ORDER, 4)) {
            long b = r.buffer(64);
            Scatterlist sg = new Scatterlist().addReadable(b, 8).addReadable(b + 8, 8).addWritable(b + 16, 8);
            DescriptorChain c = new DescriptorChain();
            long desc = r.driver.addresses().descTable();
            for (int round = 0; round < 3; round++) {
                assertThat(r.driver.addBuf(sg, round)).isTrue();
                int first = (3 * round) % 4;
                for (int k = 0; k < 3; k++) {
                    int x = (first + k) % 4;
                    short flags = r.memory.readU16(desc + 16L * x + 12);
                    if (k < 2) {
                        assertThat(r.memory.readU16(desc + 16L * x + 14)).as("round %d: next of entry %d", round, x)
                                .isEqualTo((short) (x == 3 ? 0 : x + 1));
                        assertThat(flags & 1).isEqualTo(1);
                    }
                    assertThat(r.memory.readU64(desc + 16L * x)).isEqualTo(b + 8L * k);
                }
                r.device.pop(c);
                assertThat(c.head()).as("round %d starts after the previous chain", round).isEqualTo(first);
                r.device.addUsed(c, 8);
                r.device.publishUsed();
                assertThat(r.driver.getBuf()).isEqualTo(round);
            }
        }
    }

    @Test
    @Conformance("split-drv-10")
    void anIndirectTableIsSequential() throws Exception {
        try (Rings r = new Rings(4, IN_ORDER | Feature.INDIRECT_DESC.mask(), 4)) {
            long b = r.buffer(64);
            r.driver.addBuf(new Scatterlist().addReadable(b, 8).addReadable(b + 8, 8).addWritable(b + 16, 8)
                    .addWritable(b + 24, 8), 0);
            long desc = r.driver.addresses().descTable();
            assertThat(r.memory.readU16(desc + 12) & 4).as("INDIRECT").isEqualTo(4);
            long table = r.memory.readU64(desc);
            for (int i = 0; i < 3; i++) {
                assertThat(r.memory.readU16(table + 16L * i + 14)).as("next of table entry %d", i).isEqualTo((short) (i + 1));
                assertThat(r.memory.readU16(table + 16L * i + 12) & 1).isEqualTo(1);
            }
            assertThat(r.memory.readU16(table + 16L * 3 + 12) & 1).as("the last has no NEXT").isZero();
        }
    }
}
