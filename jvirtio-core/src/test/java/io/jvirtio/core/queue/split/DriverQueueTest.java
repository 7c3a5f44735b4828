package io.jvirtio.core.queue.split;

import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.RingError;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.queue.VirtqueueException;
import io.jvirtio.core.spec.Feature;
import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The driver side's contract (Linux virtqueue_ops), checked against our own device side. */
class DriverQueueTest {

    @Test
    void bytesGoThroughTheRingAndComeBackWithTheirLength() throws Exception {
        try (RingFixture f = new RingFixture(4, 0)) {
            long out = f.buffer(64);
            long in = f.buffer(64);
            f.memory.write(out, "ping".getBytes(), 0, 4);
            assertThat(f.driver.addBuf(new Scatterlist().addReadable(out, 4).addWritable(in, 64), 7)).isTrue();
            assertThat(f.driver.kick()).isTrue();
            assertThat(f.doorbells.get()).isEqualTo(1);

            DescriptorChain chain = new DescriptorChain();
            assertThat(f.device.pop(chain)).isTrue();
            java.lang.foreign.MemorySegment got = java.lang.foreign.Arena.ofAuto().allocate(4);
            assertThat(chain.readReadable(0, got)).isEqualTo(4);
            assertThat(new String(got.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE))).isEqualTo("ping");
            assertThat(chain.writeWritable(0, java.lang.foreign.MemorySegment.ofArray("pong!".getBytes()))).isEqualTo(5);
            f.device.addUsed(chain.head(), 5);
            assertThat(f.driver.getBuf()).as("not published yet").isNull();
            f.device.publishUsed();

            assertThat(f.driver.getBuf()).isEqualTo(7);
            assertThat(f.driver.lastLength()).isEqualTo(5);
            byte[] back = new byte[5];
            f.memory.read(in, back, 0, 5);
            assertThat(new String(back)).isEqualTo("pong!");
            assertThat(f.driver.getBuf()).isNull();
            assertThat(f.driver.numFree()).isEqualTo(4);
        }
    }

    @Test
    void fullRingRefusesAndRecovers() throws Exception {
        try (RingFixture f = new RingFixture(4, 0)) {
            long b = f.buffer(64);
            Scatterlist two = new Scatterlist().addReadable(b, 8).addWritable(b + 8, 8);
            assertThat(f.driver.addBuf(two, 1)).isTrue();
            assertThat(f.driver.addBuf(two, 2)).isTrue();
            assertThat(f.driver.numFree()).isZero();
            assertThat(f.driver.addOutBuf(b, 8, 3)).as("no descriptor left").isFalse();
            DescriptorChain c = new DescriptorChain();
            assertThat(f.device.pop(c)).isTrue();
            f.device.addUsed(c.head(), 0);
            f.device.publishUsed();
            assertThat(f.driver.getBuf()).isEqualTo(1);
            assertThat(f.driver.numFree()).isEqualTo(2);
            assertThat(f.driver.addOutBuf(b, 8, 3)).isTrue();
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("split-drv-3")
    void indirectChainTakesOneRingDescriptor() throws Exception {
        try (RingFixture f = new RingFixture(8, Feature.INDIRECT_DESC.mask(), 8)) {
            long b = f.buffer(256);
            Scatterlist sg = new Scatterlist();
            for (int i = 0; i < 3; i++) {
                sg.addReadable(b + 16L * i, 16);
            }
            sg.addWritable(b + 128, 64).addWritable(b + 192, 64);
            for (int t = 0; t < 8; t++) {
                assertThat(f.driver.addBuf(sg, t)).isTrue();
            }
            assertThat(f.driver.numFree()).isZero();
            DescriptorChain c = new DescriptorChain();
            assertThat(f.device.pop(c)).isTrue();
            assertThat(c.count()).isEqualTo(5);
            assertThat(c.readableBytes()).isEqualTo(48);
            assertThat(c.writableBytes()).isEqualTo(128);
            assertThat(c.address(3)).isEqualTo(b + 128);
            // A request with more buffers than an indirect table holds goes direct.
            Scatterlist big = new Scatterlist();
            for (int i = 0; i < 9; i++) {
                big.addReadable(b, 1);
            }
            f.device.addUsed(c.head(), 0);
            f.device.publishUsed();
            assertThat(f.driver.getBuf()).isZero();
            assertThatThrownBy(() -> f.driver.addBuf(big, 99)).as("9 direct descriptors never fit a queue of 8")
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("queue of 8");
            big.clear().addReadable(b, 1).addReadable(b, 1).addReadable(b, 1);
            assertThat(f.driver.addBuf(big, 98)).isTrue();
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("split-drv-2")
    void readableAfterWritableIsRefusedByTheScatterlist() {
        assertThatThrownBy(() -> new Scatterlist().addWritable(0, 1).addReadable(0, 1))
                .isInstanceOf(IllegalStateException.class).hasMessageContaining("2.7.4.2");
    }

    @Test
    void outOfOrderCompletionKeepsTheFreeListIntact() throws Exception {
        try (RingFixture f = new RingFixture(8, 0)) {
            long b = f.buffer(1024);
            Scatterlist sg = new Scatterlist();
            for (int round = 0; round < 50; round++) {
                int[] heads = new int[3];
                for (int t = 0; t < 3; t++) {
                    sg.clear().addReadable(b, 8).addWritable(b + 64, 8 + t);
                    assertThat(f.driver.addBuf(sg, t)).isTrue();
                }
                DescriptorChain c = new DescriptorChain();
                for (int t = 0; t < 3; t++) {
                    assertThat(f.device.pop(c)).isTrue();
                    heads[t] = c.head();
                }
                // complete in reverse
                for (int t = 2; t >= 0; t--) {
                    f.device.addUsed(heads[t], 100 + t);
                }
                f.device.publishUsed();
                for (int t = 2; t >= 0; t--) {
                    assertThat(f.driver.getBuf()).isEqualTo(t);
                    assertThat(f.driver.lastLength()).isEqualTo(100 + t);
                }
                assertThat(f.driver.numFree()).isEqualTo(8);
            }
        }
    }

    @Test
    void detachUnusedReturnsEveryOutstandingTokenAfterReset() throws Exception {
        try (RingFixture f = new RingFixture(16, 0)) {
            long b = f.buffer(64);
            for (int t = 0; t < 5; t++) {
                f.driver.addBuf(new Scatterlist().addReadable(b, 8).addWritable(b, 8), t);
            }
            java.util.Set<Integer> back = new java.util.HashSet<>();
            Integer t;
            while ((t = f.driver.detachUnused()) != null) {
                assertThat(back.add(t)).isTrue();
            }
            assertThat(back).containsExactlyInAnyOrder(0, 1, 2, 3, 4);
            assertThat(f.driver.numFree()).isEqualTo(16);
            assertThat(f.memory.readU16(f.driver.addresses().availRing() + 2)).isZero();
        }
    }

    @Test
    void deviceReportingAnIdNotInFlightBreaksTheQueue() throws Exception {
        try (RingFixture f = new RingFixture(8, 0)) {
            long b = f.buffer(64);
            f.driver.addOutBuf(b, 8, 1);
            DescriptorChain c = new DescriptorChain();
            f.device.pop(c);
            f.device.addUsed(5, 0); // head 5 was never made available
            f.device.publishUsed();
            assertThatThrownBy(f.driver::getBuf).isInstanceOfSatisfying(VirtqueueException.class,
                    e -> assertThat(e.error()).isEqualTo(new RingError.BadUsedId(5, 8)));
            assertThat(f.driver.isBroken()).isTrue();
            assertThatThrownBy(() -> f.driver.addOutBuf(b, 8, 2)).isInstanceOf(IllegalStateException.class);
        }
    }

    @Test
    void usedIndexJumpingPastWhatIsInFlightBreaksTheQueue() throws Exception {
        try (RingFixture f = new RingFixture(8, 0)) {
            long b = f.buffer(64);
            f.driver.addOutBuf(b, 8, 1);
            f.memory.writeU16(f.driver.addresses().usedRing() + 2, (short) 3);
            assertThatThrownBy(f.driver::getBuf).isInstanceOfSatisfying(VirtqueueException.class,
                    e -> assertThat(e.error()).isEqualTo(new RingError.UsedIndexJump(3, 0, 1)));
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("split-drv-8")
    void noChainLongerThanTheQueueEvenInAnIndirectTable() throws Exception {
        try (RingFixture f = new RingFixture(4, Feature.INDIRECT_DESC.mask(), 16)) {
            long b = f.buffer(256);
            Scatterlist five = new Scatterlist();
            for (int i = 0; i < 5; i++) {
                five.addReadable(b + 16L * i, 16);
            }
            assertThatThrownBy(() -> f.driver.addBuf(five, 1)).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("queue of 4");
            assertThat(f.driver.numFree()).as("nothing was taken").isEqualTo(4);
            Scatterlist four = new Scatterlist();
            for (int i = 0; i < 4; i++) {
                four.addReadable(b + 16L * i, 16);
            }
            assertThat(f.driver.addBuf(four, 2)).isTrue();
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("split-drv-4")
    void noChainOfMoreThan2To32Bytes() throws Exception {
        try (RingFixture f = new RingFixture(8, 0)) {
            long b = f.buffer(64);
            // lengths are u32: two buffers of 2^31 + 2^31 + 1 bytes (they are never touched: refused first)
            Scatterlist huge = new Scatterlist().addReadable(b, Integer.MIN_VALUE).addReadable(b, Integer.MIN_VALUE)
                    .addReadable(b, 1);
            assertThatThrownBy(() -> f.driver.addBuf(huge, 1)).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("2^32");
            assertThat(f.driver.numFree()).isEqualTo(8);
            Scatterlist exactly = new Scatterlist().addReadable(b, Integer.MIN_VALUE).addReadable(b, Integer.MIN_VALUE);
            assertThat(f.driver.addBuf(exactly, 2)).as("2^32 bytes is still allowed").isTrue();
        }
    }
}
