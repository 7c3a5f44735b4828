package io.jvirtio.core.queue.split;

import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.spec.Conformance;
import io.jvirtio.core.spec.Feature;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static org.assertj.core.api.Assertions.assertThat;

/** Split-ring rules of §2.7 for both ends, each read off the bytes in guest memory. */
class RingRulesTest {
    static final int F_NEXT = 1;
    static final int F_WRITE = 2;
    static final int F_INDIRECT = 4;

    static int flags(RingFixture f, long descAt) throws Exception {
        return f.memory.readU16(descAt + 12) & 0xffff;
    }

    @Test
    @Conformance({"split-drv-6", "split-drv-9"})
    void indirectOnlyWhenNegotiatedAndNeverTogetherWithNext() throws Exception {
        try (RingFixture plain = new RingFixture(8, 0, 8)) {
            long b = plain.buffer(64);
            plain.driver.addBuf(new Scatterlist().addReadable(b, 8).addReadable(b + 8, 8).addWritable(b + 16, 8), 1);
            long table = plain.driver.addresses().descTable();
            for (int i = 0; i < 3; i++) {
                assertThat(flags(plain, table + 16L * i) & F_INDIRECT).as("descriptor %d", i).isZero();
            }
        }
        try (RingFixture ind = new RingFixture(8, Feature.INDIRECT_DESC.mask(), 8)) {
            long b = ind.buffer(64);
            ind.driver.addBuf(new Scatterlist().addReadable(b, 8).addReadable(b + 8, 8).addWritable(b + 16, 8), 1);
            int head = ind.memory.readU16(ind.driver.addresses().availRing() + 4);
            int f = flags(ind, ind.driver.addresses().descTable() + 16L * head);
            assertThat(f).as("INDIRECT alone, no NEXT, no WRITE").isEqualTo(F_INDIRECT);
        }
    }

    @Test
    @Conformance("split-drv-7")
    void anIndirectTableHoldsNoIndirectDescriptor() throws Exception {
        try (RingFixture f = new RingFixture(8, Feature.INDIRECT_DESC.mask(), 8)) {
            long b = f.buffer(64);
            f.driver.addBuf(new Scatterlist().addReadable(b, 8).addReadable(b + 8, 8).addWritable(b + 16, 8), 1);
            int head = f.memory.readU16(f.driver.addresses().availRing() + 4);
            long desc = f.driver.addresses().descTable() + 16L * head;
            long table = f.memory.readU64(desc);
            int entries = f.memory.readU32(desc + 8) / 16;
            assertThat(entries).isEqualTo(3);
            for (int i = 0; i < entries; i++) {
                int fl = flags(f, table + 16L * i);
                assertThat(fl & F_INDIRECT).isZero();
                assertThat(fl & F_NEXT).as("NEXT on all but the last").isEqualTo(i < 2 ? F_NEXT : 0);
            }
        }
    }

    @Test
    @Conformance({"split-drv-12", "split-drv-16"})
    void theDriverInitialisesUsedFlagsAndKeepsAvailFlagsZeroOrOne() throws Exception {
        long base = RingFixture.BASE;
        try (GuestMemory mem = GuestMemory.allocate(base, 1 << 20)) {
            mem.slice(base, 1 << 20).fill((byte) 0xff); // whatever the memory held before
            GuestAllocator alloc = new GuestAllocator(mem, base, 1 << 20);
            DriverQueue<Integer> q = DriverQueue.allocate(alloc, 0, SplitLayout.modern(8), 0, 0, () -> { });
            assertThat(mem.readU16(q.addresses().usedRing())).as("used.flags").isZero();
            assertThat(mem.readU16(q.addresses().availRing()) & 0xffff).isIn(0, 1);
            q.disableCallbacks();
            assertThat(mem.readU16(q.addresses().availRing()) & 0xffff).isEqualTo(1);
            q.enableCallbacks();
            assertThat(mem.readU16(q.addresses().availRing()) & 0xffff).isZero();
        }
    }

    @Test
    @Conformance({"split-dev-11", "split-dev-12"})
    void usedFlagsAreZeroOrOneWithoutEventIdxAndStayZeroWithIt() throws Exception {
        try (RingFixture f = new RingFixture(8, 0)) {
            f.device.disableNotifications();
            assertThat(f.usedFlags()).isEqualTo(1);
            f.device.enableNotifications();
            assertThat(f.usedFlags()).isZero();
        }
        try (RingFixture f = new RingFixture(8, Feature.EVENT_IDX.mask())) {
            f.device.disableNotifications();
            assertThat(f.usedFlags()).isZero();
            f.device.enableNotifications();
            assertThat(f.usedFlags()).isZero();
        }
    }

    @Test
    @Conformance({"split-dev-4", "split-dev-2"})
    void theDeviceWritesNeitherTheDescriptorTableNorReadableBuffers() throws Exception {
        try (RingFixture f = new RingFixture(8, Feature.INDIRECT_DESC.mask(), 8)) {
            long b = f.buffer(128);
            f.memory.slice(b, 128).fill((byte) 0x11);
            f.driver.addBuf(new Scatterlist().addReadable(b, 32).addWritable(b + 32, 96), 1);
            f.driver.addBuf(new Scatterlist().addWritable(b + 64, 8), 2);
            long table = f.driver.addresses().descTable();
            byte[] before = f.memory.slice(table, 16 * 8).toArray(ValueLayout.JAVA_BYTE);
            long indirect = f.memory.readU64(table);
            byte[] indirectBefore = f.memory.slice(indirect, 32).toArray(ValueLayout.JAVA_BYTE);
            DescriptorChain c = new DescriptorChain();
            while (f.device.pop(c)) {
                c.writeWritable(0, MemorySegment.ofArray(new byte[(int) c.writableBytes()]));
                f.device.addUsed(c.head(), (int) c.writableBytes());
            }
            f.device.publishUsed();
            assertThat(f.memory.slice(table, 16 * 8).toArray(ValueLayout.JAVA_BYTE)).isEqualTo(before);
            assertThat(f.memory.slice(indirect, 32).toArray(ValueLayout.JAVA_BYTE)).isEqualTo(indirectBefore);
            assertThat(f.memory.slice(b, 32).toArray(ValueLayout.JAVA_BYTE)).as("readable part").containsOnly(0x11);
        }
    }

    @Test
    @Conformance("split-dev-5")
    void theWriteFlagOfTheDescriptorPointingToAnIndirectTableIsIgnored() throws Exception {
        try (RingFixture f = new RingFixture(8, Feature.INDIRECT_DESC.mask())) {
            long buf = f.buffer(64);
            long table = f.buffer(32);
            f.writeDescAt(table, buf, 16, F_NEXT, 1);
            f.writeDescAt(table + 16, buf + 16, 16, F_WRITE, 0);
            f.writeDesc(0, table, 32, F_INDIRECT | F_WRITE, 0); // WRITE here means nothing
            f.makeAvailable(0, 0, 1, 8);
            DescriptorChain c = new DescriptorChain();
            assertThat(f.device.pop(c)).isTrue();
            assertThat(c.readableBytes()).isEqualTo(16);
            assertThat(c.writableBytes()).isEqualTo(16);
        }
    }

    @Test
    @Conformance("split-dev-13")
    void aNotificationWithNothingAvailableIsHarmless() throws Exception {
        try (RingFixture f = new RingFixture(8, 0)) {
            DescriptorChain c = new DescriptorChain();
            assertThat(f.device.pop(c)).isFalse();
            assertThat(f.device.pop(c)).isFalse();
            f.device.publishUsed();
            assertThat(f.device.needsNotification()).as("nothing used: no interrupt").isFalse();
            long b = f.buffer(8);
            f.driver.addOutBuf(b, 8, 7);
            assertThat(f.device.pop(c)).isTrue();
            f.device.addUsed(c.head(), 0);
            f.device.publishUsed();
            assertThat(f.device.needsNotification()).isTrue();
            assertThat(f.driver.getBuf()).isEqualTo(7);
        }
    }

    int availIdx(RingFixture f) throws Exception {
        return f.memory.readU16(f.driver.addresses().availRing() + 2) & 0xffff;
    }

    @Test
    @Conformance("split-drv-11")
    void availIdxOnlyEverMovesForwardAcrossWraps() throws Exception {
        try (RingFixture f = new RingFixture(8, 0)) {
            long b = f.buffer(64);
            java.util.Random rnd = new java.util.Random(11);
            DescriptorChain c = new DescriptorChain();
            int prev = availIdx(f);
            long added = 0;
            while (added < 3 * 65536L) { // the 16-bit index wraps three times
                int n = 1 + rnd.nextInt(10); // sometimes more than fit: a refused add must not move it
                for (int k = 0; k < n; k++) {
                    boolean ok = f.driver.addOutBuf(b, 8, k);
                    int now = availIdx(f);
                    assertThat((now - prev) & 0xffff).as("avail.idx step after add %d", added).isEqualTo(ok ? 1 : 0);
                    prev = now;
                    added += ok ? 1 : 0;
                }
                f.driver.kick();
                while (f.device.pop(c)) {
                    f.device.addUsed(c.head(), 0);
                }
                f.device.publishUsed();
                while (f.driver.getBuf() != null) {
                    assertThat(availIdx(f)).as("taking used buffers back").isEqualTo(prev);
                }
            }
        }
    }

    @Test
    @Conformance("split-dev-9")
    void eachUsedElementIsWrittenBeforeUsedIdxCoversIt() throws Exception {
        try (RingFixture f = new RingFixture(8, 0)) {
            long b = f.buffer(64);
            for (int k = 0; k < 3; k++) {
                f.driver.addInBuf(b, 64, k);
            }
            long used = f.driver.addresses().usedRing();
            DescriptorChain c = new DescriptorChain();
            for (int k = 0; k < 3; k++) {
                assertThat(f.device.pop(c)).isTrue();
                f.device.addUsed(c.head(), 10 + k);
                assertThat(f.memory.readU32(used + 4 + 8L * k)).as("id of element %d", k).isEqualTo(c.head());
                assertThat(f.memory.readU32(used + 8 + 8L * k)).as("len of element %d", k).isEqualTo(10 + k);
                assertThat(f.memory.readU16(used + 2)).as("used.idx while element %d is staged", k).isZero();
            }
            f.device.publishUsed();
            assertThat(f.memory.readU16(used + 2)).isEqualTo((short) 3);
            for (int k = 0; k < 3; k++) {
                assertThat(f.driver.getBuf()).isEqualTo(k);
                assertThat(f.driver.lastLength()).isEqualTo(10 + k);
            }
        }
    }

    @Test
    @Conformance("split-dev-3")
    void theDeviceGathersOnlyTheReadablePartOfAChain() throws Exception {
        try (RingFixture f = new RingFixture(8, Feature.INDIRECT_DESC.mask(), 8)) {
            long b = f.buffer(64);
            f.memory.slice(b, 16).fill((byte) 'r');
            f.memory.slice(b + 16, 48).fill((byte) 'w');
            f.driver.addBuf(new Scatterlist().addReadable(b, 8).addReadable(b + 8, 8).addWritable(b + 16, 48), 1);
            DescriptorChain c = new DescriptorChain();
            assertThat(f.device.pop(c)).isTrue();
            MemorySegment dst = MemorySegment.ofArray(new byte[64]);
            assertThat(c.readReadable(0, dst)).as("bytes gathered").isEqualTo(16);
            assertThat(dst.asSlice(0, 16).toArray(ValueLayout.JAVA_BYTE)).containsOnly('r');
            assertThat(dst.asSlice(16, 48).toArray(ValueLayout.JAVA_BYTE)).as("nothing of the writable part").containsOnly(0);
            assertThat(c.readReadable(12, dst)).as("from an offset, still only the readable part").isEqualTo(4);
        }
    }
}
