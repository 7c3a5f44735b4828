package io.jvirtio.core.queue.packed;

import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.QueueState;
import io.jvirtio.core.queue.RingError;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.queue.VirtqueueException;
import io.jvirtio.core.spec.Feature;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

import static io.jvirtio.core.queue.packed.Packed.F_AVAIL;
import static io.jvirtio.core.queue.packed.Packed.F_INDIRECT;
import static io.jvirtio.core.queue.packed.Packed.F_NEXT;
import static io.jvirtio.core.queue.packed.Packed.F_USED;
import static io.jvirtio.core.queue.packed.Packed.F_WRITE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The packed ring of §2.8, both sides, read off the bytes in guest memory — and every rule a hostile driver can break. */
class PackedRingTest {
    static final long BASE = 0x1_0000_0000L;

    /** A driver and a device queue over one packed ring in a memory above 4 GiB. */
    static final class Ring implements AutoCloseable {
        final GuestMemory memory = GuestMemory.allocate(BASE, 4 << 20);
        final GuestAllocator alloc = new GuestAllocator(memory, BASE, 4 << 20);
        final PackedDriverQueue<Integer> driver;
        final PackedDeviceQueue device;
        final long features;
        int kicks;

        Ring(int size, long features) throws VirtqueueException {
            this.features = features | Feature.RING_PACKED.mask();
            driver = PackedDriverQueue.allocate(alloc, 0, size, this.features, 4, () -> kicks++);
            device = PackedDeviceQueue.create(memory, 0, size, driver.addresses(), this.features, QueueState.INITIAL_PACKED);
        }

        long desc(int slot) {
            return driver.addresses().descTable() + 16L * slot;
        }

        int flags(int slot) throws Exception {
            return memory.readU16(desc(slot) + 14) & 0xffff;
        }

        int id(int slot) throws Exception {
            return memory.readU16(desc(slot) + 12) & 0xffff;
        }

        /** Writes a raw descriptor, as a hostile driver would. */
        void write(int slot, long addr, int len, int id, int flags) throws Exception {
            memory.writeU64(desc(slot), addr);
            memory.writeU32(desc(slot) + 8, len);
            memory.writeU16(desc(slot) + 12, (short) id);
            memory.writeU16(desc(slot) + 14, (short) flags);
        }

        long buffer(int bytes) {
            return alloc.allocate(bytes, 16);
        }

        @Override
        public void close() {
            memory.close();
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance({"packed-drv-5", "packed-dev-6"})
    void aListIsWrittenInRingOrderWithItsIdInEachDescriptorAndItsFirstFlagsMakeItAvailable() throws Exception {
        try (Ring r = new Ring(4, 0)) {
            long b = r.buffer(64);
            r.driver.addBuf(new Scatterlist().addReadable(b, 16).addReadable(b + 16, 16).addWritable(b + 32, 32), 7);
            // wrap counter 1: AVAIL set, USED clear; NEXT on all but the last; WRITE on the writable one
            assertThat(r.flags(0)).isEqualTo(F_AVAIL | F_NEXT);
            assertThat(r.flags(1)).isEqualTo(F_AVAIL | F_NEXT);
            assertThat(r.flags(2)).isEqualTo(F_AVAIL | F_WRITE);
            assertThat(r.flags(3)).as("untouched").isZero();
            int id = r.id(2);
            assertThat(r.id(0)).isEqualTo(id);
            assertThat(r.memory.readU64(r.desc(2))).isEqualTo(b + 32);
            assertThat(r.memory.readU32(r.desc(2) + 8)).isEqualTo(32);
            assertThat(r.driver.numFree()).isEqualTo(1);

            DescriptorChain c = new DescriptorChain();
            assertThat(r.device.pop(c)).isTrue();
            assertThat(c.head()).as("the buffer id").isEqualTo(id);
            assertThat(c.count()).isEqualTo(3);
            assertThat(c.readableBytes()).isEqualTo(32);
            assertThat(c.writableBytes()).isEqualTo(32);
            assertThat(r.device.pop(c)).isFalse();

            r.device.addUsed(c, 20);
            assertThat(r.flags(0)).as("staged, not yet visible").isEqualTo(F_AVAIL | F_NEXT);
            r.device.publishUsed();
            // one used descriptor for the list, at its first slot: AVAIL = USED = wrap counter, WRITE: data written
            assertThat(r.flags(0)).isEqualTo(F_AVAIL | F_USED | F_WRITE);
            assertThat(r.id(0)).isEqualTo(id);
            assertThat(r.memory.readU32(r.desc(0) + 8)).isEqualTo(20);
            assertThat(r.driver.getBuf()).isEqualTo(7);
            assertThat(r.driver.lastLength()).isEqualTo(20);
            assertThat(r.driver.numFree()).isEqualTo(4);
            assertThat(r.device.state()).as("3 slots on: slot 3, both wrap counters still 1")
                    .isEqualTo(new QueueState(0x8003, 0x8003));
        }
    }

    @Test
    void aBufferUsedWithoutWritingCarriesNoLengthAndTheWrapCountersFlipAtTheEnd() throws Exception {
        try (Ring r = new Ring(3, 0)) {
            long b = r.buffer(16);
            DescriptorChain c = new DescriptorChain();
            for (int round = 0; round < 7; round++) {
                assertThat(r.driver.addOutBuf(b, 16, round)).isTrue();
                assertThat(r.device.pop(c)).isTrue();
                r.device.addUsed(c, 0);
                r.device.publishUsed();
                int slot = round % 3;
                boolean wrap = (round / 3) % 2 == 0;
                assertThat(r.flags(slot)).as("round %d", round).isEqualTo(wrap ? F_AVAIL | F_USED : 0);
                assertThat(r.driver.getBuf()).isEqualTo(round);
                assertThat(r.driver.lastLength()).isZero();
            }
            // 7 slots on a ring of 3: slot 1, wrap counters flipped twice (back to 1)
            assertThat(r.device.state()).isEqualTo(new QueueState(0x8001, 0x8001));
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance({"packed-dev-1", "packed-dev-2"})
    void buffersUsedOutOfOrderAreReturnedInTheOrderTheyWereUsedAndEachSkipsItsOwnSlots() throws Exception {
        try (Ring r = new Ring(8, 0)) {
            long b = r.buffer(256);
            Scatterlist sg = new Scatterlist();
            r.driver.addBuf(sg.clear().addReadable(b, 8).addWritable(b + 8, 8), 0);               // 2 slots
            r.driver.addBuf(sg.clear().addWritable(b + 16, 8), 1);                                // 1 slot
            r.driver.addBuf(sg.clear().addReadable(b + 32, 8).addReadable(b + 40, 8).addWritable(b + 48, 8), 2); // 3
            List<DescriptorChain> chains = new ArrayList<>();
            for (int i = 0; i < 3; i++) {
                DescriptorChain c = new DescriptorChain();
                assertThat(r.device.pop(c)).isTrue();
                chains.add(c);
            }
            r.device.addUsed(chains.get(2), 3);
            r.device.addUsed(chains.get(0), 1);
            r.device.publishUsed();
            assertThat(r.driver.getBuf()).isEqualTo(2);
            assertThat(r.driver.lastLength()).isEqualTo(3);
            // the device skipped the 3 slots of buffer 2: the next used descriptor is at slot 3
            assertThat(r.id(3)).isEqualTo(chains.get(0).head());
            assertThat(r.driver.getBuf()).isEqualTo(0);
            assertThat(r.driver.getBuf()).isNull();
            r.device.addUsed(chains.get(1), 8);
            r.device.publishUsed();
            assertThat(r.driver.getBuf()).isEqualTo(1);
            assertThat(r.driver.numFree()).isEqualTo(8);
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("packed-drv-7")
    void aListInAnIndirectTableTakesOneSlot() throws Exception {
        try (Ring r = new Ring(4, Feature.INDIRECT_DESC.mask())) {
            long b = r.buffer(64);
            r.driver.addBuf(new Scatterlist().addReadable(b, 8).addReadable(b + 8, 8).addWritable(b + 16, 48), 5);
            assertThat(r.flags(0)).isEqualTo(F_AVAIL | F_INDIRECT);
            assertThat(r.memory.readU32(r.desc(0) + 8)).as("table bytes").isEqualTo(48);
            assertThat(r.driver.numFree()).isEqualTo(3);
            long table = r.memory.readU64(r.desc(0));
            assertThat(r.memory.readU16(table + 14) & 0xffff).as("only WRITE is valid in a table").isZero();
            assertThat(r.memory.readU16(table + 32 + 14) & 0xffff).isEqualTo(F_WRITE);
            DescriptorChain c = new DescriptorChain();
            assertThat(r.device.pop(c)).isTrue();
            assertThat(c.count()).isEqualTo(3);
            assertThat(c.readableBytes()).isEqualTo(16);
            assertThat(c.writableBytes()).isEqualTo(48);
        }
    }

    @Test
    void aBatchOfUsedBuffersBecomesVisibleWhenItsFirstFlagsAreWritten() throws Exception {
        try (Ring r = new Ring(4, 0)) {
            long b = r.buffer(16);
            DescriptorChain[] c = {new DescriptorChain(), new DescriptorChain(), new DescriptorChain()};
            for (int i = 0; i < 3; i++) {
                r.driver.addInBuf(b, 16, i);
                assertThat(r.device.pop(c[i])).isTrue();
                r.device.addUsed(c[i], 16);
            }
            assertThat(r.driver.hasUsed()).isFalse();
            r.device.publishUsed();
            for (int i = 0; i < 3; i++) {
                assertThat(r.driver.getBuf()).isEqualTo(i);
            }
        }
    }

    /**
     * A used descriptor's len, id and flags are written together when the batch is published, not one by one as
     * buffers are used: until then each slot holds what the driver wrote (the lines the driver is writing its next
     * descriptors into are touched once per batch), and then all three are the device's at once.
     */
    @Test
    void usedDescriptorsAreWrittenWholeWhenTheBatchIsPublished() throws Exception {
        try (Ring r = new Ring(4, 0)) {
            long b = r.buffer(64);
            DescriptorChain c = new DescriptorChain();
            for (int i = 0; i < 2; i++) {
                r.driver.addInBuf(b, 64, i);
            }
            long[] before = {r.memory.readU64(r.desc(0) + 8), r.memory.readU64(r.desc(1) + 8)};
            int[] heads = new int[2];
            for (int i = 0; i < 2; i++) {
                assertThat(r.device.pop(c)).isTrue();
                heads[i] = c.head();
                r.device.addUsed(c, 10 + i);
            }
            assertThat(r.memory.readU64(r.desc(0) + 8)).as("slot 0 before the publish").isEqualTo(before[0]);
            assertThat(r.memory.readU64(r.desc(1) + 8)).as("slot 1 before the publish").isEqualTo(before[1]);
            r.device.publishUsed();
            for (int i = 0; i < 2; i++) {
                assertThat(r.memory.readU32(r.desc(i) + 8)).as("len").isEqualTo(10 + i);
                assertThat(r.id(i)).isEqualTo(heads[i]);
                assertThat(r.flags(i) & (F_AVAIL | F_USED | F_WRITE)).isEqualTo(F_AVAIL | F_USED | F_WRITE);
            }
        }
    }

    /** Once off, disabling again writes nothing (a polling device asks every round; the driver reads the line). */
    @Test
    void disablingNotificationsThatAreOffWritesNothing() throws Exception {
        try (Ring r = new Ring(8, 0)) {
            long deviceEvent = r.driver.addresses().usedRing(); // the device event suppression area
            r.device.disableNotifications();
            assertThat(r.memory.readU16(deviceEvent + 2) & 0xffff).as("RING_EVENT_FLAGS_DISABLE").isEqualTo(1);
            r.memory.writeU16(deviceEvent + 2, (short) 0); // a marker: a second write would reset it
            r.device.disableNotifications();
            assertThat(r.memory.readU16(deviceEvent + 2) & 0xffff).as("already off: not written again").isZero();
            r.device.enableNotifications();
            r.device.disableNotifications();
            assertThat(r.memory.readU16(deviceEvent + 2) & 0xffff).isEqualTo(1);
        }
    }

    @Test
    void withoutEventIdxTheFlagsEnableAndDisableNotificationsBothWays() throws Exception {
        try (Ring r = new Ring(8, 0)) {
            long b = r.buffer(16);
            r.device.disableNotifications();
            r.driver.addOutBuf(b, 16, 1);
            assertThat(r.driver.kick()).as("device disabled notifications").isFalse();
            assertThat(r.device.enableNotifications()).as("a buffer came meanwhile").isTrue();
            r.driver.addOutBuf(b, 16, 2);
            assertThat(r.driver.kick()).isTrue();

            DescriptorChain c = new DescriptorChain();
            r.driver.disableCallbacks();
            r.device.pop(c);
            r.device.addUsed(c, 0);
            r.device.publishUsed();
            assertThat(r.device.needsNotification()).as("driver disabled callbacks").isFalse();
            assertThat(r.driver.enableCallbacks()).as("one was used meanwhile").isFalse();
            r.driver.getBuf();
            assertThat(r.driver.enableCallbacks()).isTrue();
            r.device.pop(c);
            r.device.addUsed(c, 0);
            r.device.publishUsed();
            assertThat(r.device.needsNotification()).isTrue();
            assertThat(r.device.needsNotification()).as("nothing new since").isFalse();
        }
    }

    @Test
    void withEventIdxNotificationsComeWhenTheEventDescriptorIsCrossed() throws Exception {
        try (Ring r = new Ring(4, Feature.EVENT_IDX.mask())) {
            long b = r.buffer(16);
            DescriptorChain c = new DescriptorChain();
            // the device asks for the descriptor at its position (slot 0, wrap 1)
            assertThat(r.device.enableNotifications()).isFalse();
            r.driver.addOutBuf(b, 16, 0);
            assertThat(r.driver.kick()).as("the event descriptor was made available").isTrue();
            r.driver.addOutBuf(b, 16, 1);
            assertThat(r.driver.kick()).as("the device has not moved its event: no second kick").isFalse();
            // the driver asks for an interrupt when slot 0 is used
            r.driver.enableCallbacksPrepare();
            assertThat(r.device.pop(c)).isTrue();
            r.device.addUsed(c, 0);
            r.device.publishUsed();
            assertThat(r.device.needsNotification()).isTrue();
            assertThat(r.device.pop(c)).isTrue();
            r.device.addUsed(c, 0);
            r.device.publishUsed();
            assertThat(r.device.needsNotification()).as("the driver's event is behind").isFalse();
            assertThat(r.driver.getBuf()).isEqualTo(0); // moves the event to the next used descriptor...
            assertThat(r.driver.getBuf()).isEqualTo(1);
            // ...across the wrap: four more round trips, each notified
            for (int i = 2; i < 6; i++) {
                r.driver.addOutBuf(b, 16, i);
                r.driver.kick();
                assertThat(r.device.pop(c)).isTrue();
                r.device.addUsed(c, 0);
                r.device.publishUsed();
                assertThat(r.device.needsNotification()).as("round %d", i).isTrue();
                assertThat(r.driver.getBuf()).isEqualTo(i);
            }
        }
    }

    @Test
    void aDeviceRestartedFromItsStateContinuesWhereItStopped() throws Exception {
        try (Ring r = new Ring(5, 0)) {
            long b = r.buffer(16);
            DescriptorChain c = new DescriptorChain();
            for (int i = 0; i < 7; i++) {
                r.driver.addOutBuf(b, 16, i);
                r.device.pop(c);
                r.device.addUsed(c, 0);
                r.device.publishUsed();
                r.driver.getBuf();
            }
            QueueState s = r.device.state();
            assertThat(s).isEqualTo(new QueueState(2, 2)); // slot 2, wrap counters 0
            PackedDeviceQueue again = PackedDeviceQueue.create(r.memory, 0, 5, r.driver.addresses(), r.features, s);
            r.driver.addOutBuf(b, 16, 99);
            assertThat(again.pop(c)).isTrue();
            again.addUsed(c, 0);
            again.publishUsed();
            assertThat(r.driver.getBuf()).isEqualTo(99);
        }
    }

    @Test
    void undoPopGivesTheSameBufferAgainAndDetachUnusedTakesBackTheRest() throws Exception {
        try (Ring r = new Ring(4, 0)) {
            long b = r.buffer(16);
            r.driver.addOutBuf(b, 16, 1);
            r.driver.addOutBuf(b, 16, 2);
            DescriptorChain c = new DescriptorChain();
            r.device.pop(c);
            int id = c.head();
            r.device.undoPop();
            assertThat(r.device.pop(c)).isTrue();
            assertThat(c.head()).isEqualTo(id);
            // several pops given back, last first (a receive path whose frame did not fit): all come again
            r.device.pop(c);
            int second = c.head();
            r.device.undoPop();
            r.device.undoPop();
            assertThat(r.device.state()).isEqualTo(QueueState.INITIAL_PACKED);
            assertThatThrownBy(r.device::undoPop).isInstanceOf(IllegalStateException.class);
            r.device.pop(c);
            assertThat(c.head()).isEqualTo(id);
            r.device.pop(c);
            assertThat(c.head()).isEqualTo(second);
            r.device.undoPop();
            r.device.undoPop();
            assertThat(r.device.pop(c)).isTrue();
            List<Integer> back = new ArrayList<>();
            for (Integer t; (t = r.driver.detachUnused()) != null; ) {
                back.add(t);
            }
            assertThat(back).containsExactlyInAnyOrder(1, 2);
            assertThat(r.driver.numFree()).isEqualTo(4);
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance({"packed-drv-2", "packed-drv-6"})
    void theDriverWritesNoSlotTheDeviceStillHoldsAndNoListWithoutRoomForAllOfIt() throws Exception {
        try (Ring r = new Ring(4, 0)) {
            long b = r.buffer(64);
            Scatterlist two = new Scatterlist().addReadable(b, 8).addWritable(b + 8, 8);
            assertThat(r.driver.addBuf(two, 0)).isTrue();
            assertThat(r.driver.addBuf(new Scatterlist().addReadable(b + 16, 8), 1)).isTrue();
            byte[] ring = r.memory.slice(r.desc(0), 64).toArray(ValueLayout.JAVA_BYTE);
            assertThat(r.driver.addBuf(two, 2)).as("one slot left, the list needs two").isFalse();
            assertThat(r.memory.slice(r.desc(0), 64).toArray(ValueLayout.JAVA_BYTE)).as("nothing written").isEqualTo(ring);
            DescriptorChain c0 = new DescriptorChain();
            DescriptorChain c1 = new DescriptorChain();
            r.device.pop(c0);
            r.device.pop(c1);
            r.device.addUsed(c1, 0); // the one-slot buffer first: its used descriptor lands on slot 0
            r.device.publishUsed();
            assertThat(r.driver.getBuf()).isEqualTo(1);
            assertThat(r.driver.addBuf(two, 3)).as("two slots now: slot 3, and slot 0 after the wrap").isTrue();
            assertThat(r.flags(3)).as("slot 3, lap 1").isEqualTo(F_AVAIL | F_NEXT);
            assertThat(r.flags(0)).as("slot 0, lap 2: AVAIL clear, USED set").isEqualTo(F_USED | F_WRITE);
            assertThat(r.memory.slice(r.desc(1), 32).toArray(ValueLayout.JAVA_BYTE)).as("slots 1-2, still the device's")
                    .isEqualTo(java.util.Arrays.copyOfRange(ring, 16, 48));
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance({"packed-drv-4", "packed-drv-7"})
    void noListLongerThanTheQueueAndNoIndirectTableWithoutTheFeature() throws Exception {
        try (Ring r = new Ring(4, Feature.INDIRECT_DESC.mask())) {
            long b = r.buffer(64);
            Scatterlist five = new Scatterlist();
            for (int i = 0; i < 5; i++) {
                five.addReadable(b + 8L * i, 8);
            }
            assertThatThrownBy(() -> r.driver.addBuf(five, 1)).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("5 buffers");
            assertThat(r.memory.slice(r.desc(0), 64).toArray(ValueLayout.JAVA_BYTE)).containsOnly(0);
        }
        try (Ring r = new Ring(4, 0)) {
            long b = r.buffer(64);
            r.driver.addBuf(new Scatterlist().addReadable(b, 8).addReadable(b + 8, 8).addWritable(b + 16, 8), 1);
            for (int s = 0; s < 3; s++) {
                assertThat(r.flags(s) & F_INDIRECT).as("slot %d", s).isZero();
            }
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("packed-drv-10")
    void aDriverQueueIsPackedExactlyWhenTheFeatureIsNegotiated() throws Exception {
        try (GuestMemory memory = GuestMemory.allocate(BASE, 1 << 20)) {
            GuestAllocator alloc = new GuestAllocator(memory, BASE, 1 << 20);
            assertThat(io.jvirtio.core.queue.DriverQueue.allocate(alloc, 0, 8, Feature.RING_PACKED.mask(), 0, () -> { }))
                    .isInstanceOf(PackedDriverQueue.class);
            assertThat(io.jvirtio.core.queue.DriverQueue.allocate(alloc, 0, 8, 0, 0, () -> { }))
                    .isInstanceOf(io.jvirtio.core.queue.split.SplitDriverQueue.class);
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("packed-dev-3")
    void theDeviceReadsOnlyTheReadablePartAndWritesOnlyTheWritable() throws Exception {
        try (Ring r = new Ring(4, 0)) {
            long b = r.buffer(64);
            r.memory.slice(b, 16).fill((byte) 'r');
            r.memory.slice(b + 16, 48).fill((byte) 'w');
            r.driver.addBuf(new Scatterlist().addReadable(b, 16).addWritable(b + 16, 48), 1);
            DescriptorChain c = new DescriptorChain();
            assertThat(r.device.pop(c)).isTrue();
            MemorySegment got = MemorySegment.ofArray(new byte[64]);
            assertThat(c.readReadable(0, got)).isEqualTo(16);
            assertThat(got.asSlice(16).toArray(ValueLayout.JAVA_BYTE)).containsOnly(0);
            assertThat(c.writeWritable(0, MemorySegment.ofArray(new byte[100]))).as("bounded by the writable part").isEqualTo(48);
            assertThat(r.memory.slice(b, 16).toArray(ValueLayout.JAVA_BYTE)).as("readable part").containsOnly('r');
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("packed-dev-4")
    void theDeviceTakesNoDescriptorWhoseAvailBitIsNotTheLapsOwn() throws Exception {
        try (Ring r = new Ring(4, 0)) {
            DescriptorChain c = new DescriptorChain();
            assertThat(r.device.pop(c)).as("the zero-initialized ring").isFalse();
            long b = r.buffer(16);
            r.write(0, b, 16, 0, F_USED); // marked for the second lap
            assertThat(r.device.pop(c)).isFalse();
            r.write(0, b, 16, 0, F_AVAIL | F_USED); // a used descriptor
            assertThat(r.device.pop(c)).isFalse();
            assertThat(r.device.enableNotifications()).isFalse();
            r.write(0, b, 16, 0, F_AVAIL);
            assertThat(r.device.pop(c)).isTrue();
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("packed-dev-5")
    void aUsedDescriptorIsNotChangedAfterItsUsedBitIs() throws Exception {
        try (Ring r = new Ring(4, 0)) {
            long b = r.buffer(16);
            DescriptorChain c = new DescriptorChain();
            r.driver.addInBuf(b, 16, 0);
            r.driver.addInBuf(b, 16, 1);
            r.device.pop(c);
            r.device.addUsed(c, 5);
            r.device.publishUsed();
            byte[] used = r.memory.slice(r.desc(0), 16).toArray(ValueLayout.JAVA_BYTE);
            r.device.pop(c);
            r.device.addUsed(c, 6);
            r.device.publishUsed();
            r.device.needsNotification();
            r.device.disableNotifications();
            r.device.enableNotifications();
            assertThat(r.memory.slice(r.desc(0), 16).toArray(ValueLayout.JAVA_BYTE)).isEqualTo(used);
            assertThat(r.driver.getBuf()).isEqualTo(0);
            assertThat(r.driver.lastLength()).isEqualTo(5);
        }
    }

    @Test
    void indirectTablesOfBuffersInFlightTogetherAreEachTheirOwn() throws Exception {
        try (Ring r = new Ring(4, Feature.INDIRECT_DESC.mask())) {
            long b = r.buffer(4 * 64);
            List<DescriptorChain> chains = new ArrayList<>();
            for (int t = 0; t < 4; t++) {
                long at = b + 64L * t;
                assertThat(r.driver.addBuf(new Scatterlist().addReadable(at, 8 + t).addReadable(at + 16, 16)
                        .addWritable(at + 32, 32 - t), t)).isTrue();
                assertThat(r.driver.numFree()).isEqualTo(3 - t);
            }
            for (int t = 0; t < 4; t++) {
                DescriptorChain c = new DescriptorChain();
                assertThat(r.device.pop(c)).isTrue();
                assertThat(c.count()).isEqualTo(3);
                long at = b + 64L * t;
                assertThat(c.address(0)).as("buffer %d", t).isEqualTo(at);
                assertThat(c.length(0)).isEqualTo(8 + t);
                assertThat(c.address(1)).isEqualTo(at + 16);
                assertThat(c.address(2)).isEqualTo(at + 32);
                assertThat(c.writableBytes()).isEqualTo(32 - t);
                chains.add(c);
            }
            for (int t = 3; t >= 0; t--) {
                r.device.addUsed(chains.get(t), t);
            }
            r.device.publishUsed();
            for (int t = 3; t >= 0; t--) {
                assertThat(r.driver.getBuf()).isEqualTo(t);
                assertThat(r.driver.lastLength()).isEqualTo(t);
            }
            assertThat(r.driver.numFree()).isEqualTo(4);
        }
    }

    @Test
    void oneAndTwoBufferShortcutsMarkTheirDirection() throws Exception {
        try (Ring r = new Ring(4, 0)) {
            long b = r.buffer(64);
            assertThat(r.driver.addOutBuf(b, 8, 1)).isTrue();
            assertThat(r.driver.addInBuf(b + 8, 8, 2)).isTrue();
            assertThat(r.flags(0)).isEqualTo(F_AVAIL);
            assertThat(r.flags(1)).isEqualTo(F_AVAIL | F_WRITE);
            assertThat(r.driver.isBroken()).isFalse();
            assertThat(r.driver.addOutBuf(b, 8, 3)).isTrue();
            assertThat(r.driver.addInBuf(b, 8, 4)).isTrue();
            assertThat(r.driver.addInBuf(b, 8, 5)).as("full").isFalse();
            assertThat(r.driver.addOutBuf(b, 8, 5)).as("full").isFalse();
        }
    }

    @Test
    void delayedCallbacksAskForAnInterruptOnceThreeQuartersAreUsed() throws Exception {
        try (Ring r = new Ring(8, Feature.EVENT_IDX.mask())) {
            long b = r.buffer(16);
            for (int i = 0; i < 8; i++) {
                r.driver.addOutBuf(b, 16, i);
            }
            r.driver.disableCallbacks();
            assertThat(r.driver.enableCallbacksDelayed()).as("nothing used yet").isTrue();
            assertThat(r.device.needsNotification()).as("nothing used: no decision to make").isFalse();
            // the event is at slot 6 (3/4 of 8 in flight): six buffers used notify nobody, the seventh does
            DescriptorChain c = new DescriptorChain();
            for (int i = 0; i < 8; i++) {
                r.device.pop(c);
                r.device.addUsed(c, 0);
                r.device.publishUsed();
                assertThat(r.device.needsNotification()).as("after %d used", i + 1).isEqualTo(i == 6);
            }
            assertThat(r.driver.enableCallbacksDelayed()).as("all used meanwhile").isFalse();
        }
        try (Ring r = new Ring(4, 0)) { // without EVENT_IDX: plain enable
            long b = r.buffer(16);
            r.driver.addOutBuf(b, 16, 0);
            r.driver.disableCallbacks();
            assertThat(r.driver.enableCallbacksDelayed()).isTrue();
            assertThat(r.memory.readU16(r.driver.addresses().availRing() + 2) & 3).as("driver area flags: enable").isZero();
        }
    }

    @Test
    void aReleasedQueueGivesItsMemoryBackAndTakesNoMoreBuffers() throws Exception {
        try (Ring r = new Ring(4, Feature.INDIRECT_DESC.mask())) {
            long ring = r.driver.addresses().descTable();
            assertThat(r.driver.index()).isZero();
            assertThat(r.driver.size()).isEqualTo(4);
            r.driver.release();
            assertThatThrownBy(() -> r.driver.addOutBuf(ring, 8, 1)).isInstanceOf(IllegalStateException.class)
                    .hasMessageContaining("released");
            assertThatThrownBy(r.driver::getBuf).isInstanceOf(IllegalStateException.class);
            PackedDriverQueue<Integer> again = PackedDriverQueue.allocate(r.alloc, 1, 4, r.features, 4, () -> { });
            assertThat(again.addresses().descTable()).as("the same memory, handed out again").isEqualTo(ring);
        }
    }

    @Test
    void theEventStructuresCarryWhereEachSideWantsToBeToldWithEventIdx() throws Exception {
        try (Ring r = new Ring(4, Feature.EVENT_IDX.mask())) {
            assertThat(r.device.index()).isZero();
            assertThat(r.device.size()).isEqualTo(4);
            assertThat(r.device.error()).isNull();
            long driverArea = r.driver.addresses().availRing();
            long deviceArea = r.driver.addresses().usedRing();
            long b = r.buffer(16);
            int position = r.driver.enableCallbacksPrepare();
            assertThat(position).as("slot 0, wrap counter 1").isEqualTo(0x8000);
            assertThat(r.memory.readU16(driverArea) & 0xffff).isEqualTo(0x8000);
            assertThat(r.memory.readU16(driverArea + 2) & 3).as("DESC").isEqualTo(2);
            assertThat(r.driver.poll(position)).isFalse();
            r.driver.addOutBuf(b, 16, 1);
            DescriptorChain c = new DescriptorChain();
            r.device.enableNotifications();
            assertThat(r.device.pop(c)).isTrue();
            assertThat(r.memory.readU16(deviceArea) & 0xffff).as("the device asks for the next slot").isEqualTo(0x8001);
            assertThat(r.memory.readU16(deviceArea + 2) & 3).isEqualTo(2);
            r.device.addUsed(c, 0);
            r.device.publishUsed();
            assertThat(r.driver.poll(position)).isTrue();
        }
    }

    @Test
    void aUsedDescriptorWithoutWriteReportsNoLength() throws Exception {
        try (Ring r = new Ring(4, 0)) {
            long b = r.buffer(16);
            r.driver.addInBuf(b, 16, 1);
            r.memory.writeU32(r.desc(0) + 8, 99);
            r.memory.writeU16(r.desc(0) + 14, (short) (F_AVAIL | F_USED)); // used, WRITE clear: len is reserved
            assertThat(r.driver.getBuf()).isEqualTo(1);
            assertThat(r.driver.lastLength()).isZero();
        }
    }

    @Test
    void aBrokenQueueStaysBrokenForEveryCall() throws Exception {
        try (Ring r = new Ring(4, 0)) {
            r.write(0, r.buffer(16), 16, 9, F_AVAIL);
            RingError e = refused(r);
            assertThat(r.device.error().error()).isEqualTo(e);
            org.junit.jupiter.api.Assertions.assertThrows(VirtqueueException.class, r.device::enableNotifications);
        }
    }

    @Test
    void packedRingErrorsNameWhatWasWrong() {
        assertThat(new RingError.BufferIdOutOfRange(3, 9, 8).message()).contains("slot 3", "buffer id 9", "size 8");
        assertThat(new RingError.BufferIdInFlight(2, 5).message()).contains("slot 2", "buffer id 5", "in flight");
        assertThat(new RingError.ChainDescriptorNotAvailable(1, 2, 0x80).message()).contains("slot 1", "descriptor 2",
                "0x0080");
        assertThat(new RingError.IndirectInChain(4).message()).contains("slot 4", "INDIRECT");
    }

    // ---- a hostile driver ------------------------------------------------------------------------------

    static RingError refused(Ring r) {
        DescriptorChain c = new DescriptorChain();
        VirtqueueException e = org.junit.jupiter.api.Assertions.assertThrows(VirtqueueException.class, () -> r.device.pop(c));
        assertThat(c.count()).as("nothing handed out").isZero();
        VirtqueueException again = org.junit.jupiter.api.Assertions.assertThrows(VirtqueueException.class,
                () -> r.device.pop(c));
        assertThat(again).as("the queue stays broken").isSameAs(e);
        return e.error();
    }

    static final int AVAIL = F_AVAIL; // available in the first lap

    @Test
    void aBufferIdOutOfRangeOrAlreadyInFlightBreaksTheQueue() throws Exception {
        try (Ring r = new Ring(4, 0)) {
            long b = r.buffer(16);
            r.write(0, b, 16, 4, AVAIL);
            assertThat(refused(r)).isEqualTo(new RingError.BufferIdOutOfRange(0, 4, 4));
        }
        try (Ring r = new Ring(4, 0)) {
            long b = r.buffer(16);
            r.write(0, b, 16, 2, AVAIL);
            r.write(1, b, 16, 2, AVAIL);
            assertThat(r.device.pop(new DescriptorChain())).isTrue();
            assertThat(refused(r)).isEqualTo(new RingError.BufferIdInFlight(1, 2));
        }
    }

    @Test
    void everyDescriptorOfAListMustBeAvailable() throws Exception {
        try (Ring r = new Ring(4, 0)) {
            long b = r.buffer(16);
            r.write(0, b, 16, 0, AVAIL | F_NEXT);
            r.write(1, b, 16, 0, F_USED); // marked for the other lap
            assertThat(refused(r)).isEqualTo(new RingError.ChainDescriptorNotAvailable(0, 1, F_USED));
        }
    }

    @Test
    void aListCoveringTheWholeRingAndMoreIsRefused() throws Exception {
        try (Ring r = new Ring(3, 0)) {
            long b = r.buffer(16);
            for (int s = 0; s < 3; s++) {
                r.write(s, b, 16, 0, AVAIL | F_NEXT);
            }
            // NEXT on every slot: the list would run into its own first descriptor
            assertThat(refused(r)).isEqualTo(new RingError.ChainLoop(0, 3, false));
        }
    }

    @Test
    void indirectRulesAreEnforced() throws Exception {
        try (Ring r = new Ring(4, 0)) {
            r.write(0, r.buffer(32), 32, 0, AVAIL | F_INDIRECT);
            assertThat(refused(r)).isEqualTo(new RingError.IndirectNotNegotiated(0));
        }
        try (Ring r = new Ring(4, Feature.INDIRECT_DESC.mask())) {
            long b = r.buffer(16);
            r.write(0, b, 16, 0, AVAIL | F_NEXT);
            r.write(1, r.buffer(32), 32, 0, AVAIL | F_INDIRECT);
            assertThat(refused(r)).isEqualTo(new RingError.IndirectInChain(0));
        }
        try (Ring r = new Ring(4, Feature.INDIRECT_DESC.mask())) {
            r.write(0, r.buffer(32), 32, 0, AVAIL | F_INDIRECT | F_NEXT);
            assertThat(refused(r)).isEqualTo(new RingError.IndirectInChain(0));
        }
        for (int len : new int[] {0, 24}) {
            try (Ring r = new Ring(4, Feature.INDIRECT_DESC.mask())) {
                r.write(0, r.buffer(32), len, 0, AVAIL | F_INDIRECT);
                assertThat(refused(r)).isEqualTo(new RingError.BadIndirectLength(0, len));
            }
        }
        try (Ring r = new Ring(4, Feature.INDIRECT_DESC.mask())) {
            long outside = BASE + (4 << 20) - 16;
            r.write(0, outside, 32, 0, AVAIL | F_INDIRECT);
            assertThat(refused(r)).isEqualTo(new RingError.BufferOutsideMemory(0, outside, 32));
        }
        try (Ring r = new Ring(4, Feature.INDIRECT_DESC.mask())) {
            // in a table only WRITE counts: NEXT, INDIRECT and the id are ignored
            long table = r.buffer(32);
            long b = r.buffer(16);
            r.memory.writeU64(table, b);
            r.memory.writeU32(table + 8, 8);
            r.memory.writeU16(table + 14, (short) (F_NEXT | F_INDIRECT));
            r.memory.writeU64(table + 16, b + 8);
            r.memory.writeU32(table + 24, 8);
            r.memory.writeU16(table + 30, (short) F_WRITE);
            r.write(0, table, 32, 1, AVAIL | F_INDIRECT | F_WRITE);
            DescriptorChain c = new DescriptorChain();
            assertThat(r.device.pop(c)).isTrue();
            assertThat(c.readableBytes()).isEqualTo(8);
            assertThat(c.writableBytes()).isEqualTo(8);
            assertThat(c.head()).isEqualTo(1);
        }
    }

    @Test
    void buffersOutsideMemoryOrReadableAfterWritableAreRefused() throws Exception {
        try (Ring r = new Ring(4, 0)) {
            r.write(0, BASE - 8, 16, 0, AVAIL);
            assertThat(refused(r)).isEqualTo(new RingError.BufferOutsideMemory(-1, BASE - 8, 16));
        }
        try (Ring r = new Ring(4, 0)) {
            long b = r.buffer(32);
            r.write(0, b, 16, 0, AVAIL | F_NEXT | F_WRITE);
            r.write(1, b + 16, 16, 0, AVAIL);
            assertThat(refused(r)).isEqualTo(new RingError.ReadableAfterWritable(-1));
        }
    }

    @Test
    void aDeviceNamingABufferThatIsNotInFlightBreaksTheDriverQueue() throws Exception {
        try (Ring r = new Ring(4, 0)) {
            long b = r.buffer(16);
            r.driver.addOutBuf(b, 16, 1);
            r.write(0, 0, 0, 3, F_AVAIL | F_USED); // "used", id 3: never made available
            VirtqueueException e = org.junit.jupiter.api.Assertions.assertThrows(VirtqueueException.class, r.driver::getBuf);
            assertThat(e.error()).isEqualTo(new RingError.BadUsedId(3, 4));
            assertThat(r.driver.isBroken()).isTrue();
        }
    }

    @Test
    void theDriverNeverReadsTheRingWhenNothingIsInFlight() throws Exception {
        try (Ring r = new Ring(4, 0)) {
            r.write(0, 0, 0, 0, F_AVAIL | F_USED); // a device writing used descriptors nobody asked for
            assertThat(r.driver.hasUsed()).isFalse();
            assertThat(r.driver.getBuf()).isNull();
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("packed-drv-1")
    void theLayoutIsTheSpecs() throws Exception {
        try (Ring r = new Ring(5, 0)) {
            var a = r.driver.addresses();
            assertThat(a.descTable() % 16).isZero();
            assertThat(a.availRing()).as("driver area after 5 descriptors").isEqualTo(a.descTable() + 80);
            assertThat(a.usedRing()).as("device area").isEqualTo(a.availRing() + 4);
            MemorySegment ring = r.memory.slice(a.descTable(), 88);
            assertThat(ring.toArray(ValueLayout.JAVA_BYTE)).as("zero-initialized").containsOnly(0);
        }
        assertThatThrownBy(() -> Packed.checkSize(0)).hasMessageContaining("1 to 32768");
        assertThatThrownBy(() -> Packed.checkSize(32769)).hasMessageContaining("32769");
        assertThat(Packed.checkSize(32768)).isEqualTo(32768);
    }
}
