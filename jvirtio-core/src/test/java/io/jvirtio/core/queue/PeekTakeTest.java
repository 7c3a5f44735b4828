package io.jvirtio.core.queue;

import io.jvirtio.core.spec.Feature;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * {@link DeviceQueue#peek} reads the next available chains without taking them, {@link DeviceQueue#take} takes
 * them in order, as {@link DeviceQueue#pop} would have, and what is not taken stays available — on both ring
 * formats, with and without IN_ORDER, read off what the driver gets back.
 */
class PeekTakeTest {
    static long features(boolean packed, boolean inOrder) {
        return Feature.VERSION_1.mask() | (packed ? Feature.RING_PACKED.mask() : 0)
                | (inOrder ? Feature.IN_ORDER.mask() : 0);
    }

    static DescriptorChain[] chains(int n) {
        DescriptorChain[] c = new DescriptorChain[n];
        for (int i = 0; i < n; i++) {
            c[i] = new DescriptorChain();
        }
        return c;
    }

    @ParameterizedTest(name = "packed={0}")
    @ValueSource(booleans = {false, true})
    void aPeekedChainIsNotTakenAPopReturnsItAgain(boolean packed) throws Exception {
        try (Rings r = new Rings(8, features(packed, false), 4)) {
            long b = r.buffer(64);
            for (int t = 0; t < 3; t++) {
                r.driver.addInBuf(b + 16L * t, 16, t);
            }
            DescriptorChain[] c = chains(8);
            assertThat(r.device.peek(c, 8)).isEqualTo(3);
            for (int t = 0; t < 3; t++) {
                assertThat(c[t].address(0)).isEqualTo(b + 16L * t);
                assertThat(c[t].writableBytes()).isEqualTo(16);
            }
            assertThat(r.device.peek(c, 2)).as("no more than asked").isEqualTo(2);
            DescriptorChain popped = new DescriptorChain();
            assertThat(r.device.pop(popped)).isTrue();
            assertThat(popped.address(0)).as("the first, still available").isEqualTo(b);
            assertThat(popped.head()).isEqualTo(c[0].head());
        }
    }

    @ParameterizedTest(name = "packed={0} inOrder={1}")
    @org.junit.jupiter.params.provider.CsvSource({"false,false", "false,true", "true,false", "true,true"})
    void takenChainsAreUsedAsPoppedOnesAndTheRestStayAvailable(boolean packed, boolean inOrder) throws Exception {
        try (Rings r = new Rings(8, features(packed, inOrder), 4)) {
            long b = r.buffer(64);
            for (int t = 0; t < 4; t++) {
                r.driver.addInBuf(b + 16L * t, 16, t);
            }
            DescriptorChain[] c = chains(8);
            assertThat(r.device.peek(c, 8)).isEqualTo(4);
            r.device.take(c[0]);
            r.device.take(c[1]);
            r.device.addUsed(c[0], 5);
            r.device.addUsed(c[1], 6);
            r.device.publishUsed();
            assertThat(r.driver.getBuf()).isZero();
            assertThat(r.driver.lastLength()).isEqualTo(5);
            assertThat(r.driver.getBuf()).isEqualTo(1);
            assertThat(r.driver.lastLength()).isEqualTo(6);
            assertThat(r.driver.getBuf()).as("the chains not taken were not used").isNull();
            // the two not taken come again, from a pop or another peek
            DescriptorChain next = new DescriptorChain();
            assertThat(r.device.pop(next)).isTrue();
            assertThat(next.address(0)).isEqualTo(b + 32);
            assertThat(r.device.peek(c, 8)).isEqualTo(1);
            assertThat(c[0].address(0)).isEqualTo(b + 48);
            r.device.take(c[0]);
            r.device.addUsed(next, 7);
            r.device.addUsed(c[0], 8);
            r.device.publishUsed();
            assertThat(r.driver.getBuf()).isEqualTo(2);
            assertThat(r.driver.getBuf()).isEqualTo(3);
            assertThat(r.driver.lastLength()).isEqualTo(8);
        }
    }

    @ParameterizedTest(name = "packed={0}")
    @ValueSource(booleans = {false, true})
    void aChainTakenOutOfItsTurnIsRefused(boolean packed) throws Exception {
        try (Rings r = new Rings(8, features(packed, false), 4)) {
            long b = r.buffer(64);
            r.driver.addInBuf(b, 16, 0);
            r.driver.addInBuf(b + 16, 16, 1);
            DescriptorChain[] c = chains(2);
            assertThat(r.device.peek(c, 2)).isEqualTo(2);
            assertThatThrownBy(() -> r.device.take(c[1])).isInstanceOf(IllegalStateException.class)
                    .hasMessageContaining("is taken where");
            r.device.take(c[0]);
            assertThatThrownBy(() -> r.device.take(c[0])).as("nor twice").isInstanceOf(IllegalStateException.class);
        }
    }

    @ParameterizedTest(name = "packed={0}")
    @ValueSource(booleans = {false, true})
    void aPeekOfAnEmptyRingReadsNothing(boolean packed) throws Exception {
        try (Rings r = new Rings(8, features(packed, false), 4)) {
            assertThat(r.device.peek(chains(4), 4)).isZero();
        }
    }

    @ParameterizedTest(name = "packed={0}")
    @ValueSource(booleans = {false, true})
    void aBadChainMetByAPeekBreaksTheQueueAsAPopWouldAndNothingReadBeforeIsHandedOut(boolean packed)
            throws Exception {
        try (Rings r = new Rings(8, features(packed, false), 4)) {
            long b = r.buffer(64);
            r.driver.addInBuf(b, 16, 0);
            r.driver.addInBuf(Rings.BASE + Rings.SIZE, 16, 1); // outside guest memory
            DescriptorChain[] good = chains(1);
            assertThat(r.device.peek(good, 1)).isEqualTo(1);
            assertThatThrownBy(() -> r.device.peek(chains(4), 4)).isInstanceOf(VirtqueueException.class)
                    .hasMessageContaining("outside");
            VirtqueueException error = r.device.error();
            assertThat(error).isNotNull();
            assertThatThrownBy(() -> r.device.pop(new DescriptorChain())).isSameAs(error);
            // neither reads the ring again: the good first chain is still there, and is not handed out
            assertThatThrownBy(() -> r.device.peek(chains(1), 1)).isSameAs(error);
            assertThatThrownBy(() -> r.device.take(good[0])).isSameAs(error);
        }
    }

    @Test
    void aPackedPeekFollowsListsToTheEndOfTheRingAndAcrossItWithTheWrapCounter() throws Exception {
        try (Rings r = new Rings(5, features(true, false), 4)) {
            long b = r.buffer(256);
            advance(r, b, 4); // the next available descriptor is now slot 4, the last
            // slot 4, ending the ring; then a list of two over slots 0 and 1 of the next lap, and slot 2
            r.driver.addInBuf(b + 16, 8, 0);
            r.driver.addBuf(new Scatterlist().addReadable(b + 32, 8).addWritable(b + 48, 8), 1);
            r.driver.addInBuf(b + 64, 8, 2);
            peekTakeAndUse(r, 0, new long[][]{{b + 16}, {b + 32, b + 48}, {b + 64}});
            // now from slot 3: slot 3, a list of two over slot 4 and slot 0 of the lap after, and slot 1
            r.driver.addInBuf(b + 80, 8, 3);
            r.driver.addBuf(new Scatterlist().addReadable(b + 96, 8).addWritable(b + 112, 8), 4);
            r.driver.addInBuf(b + 128, 8, 5);
            peekTakeAndUse(r, 3, new long[][]{{b + 80}, {b + 96, b + 112}, {b + 128}});
        }
    }

    /** Moves both sides {@code n} slots on: a buffer at {@code b} made available, used and taken back, n times. */
    private static void advance(Rings r, long b, int n) throws Exception {
        DescriptorChain c = new DescriptorChain();
        for (int t = 0; t < n; t++) {
            r.driver.addInBuf(b, 8, 100 + t);
            assertThat(r.device.pop(c)).isTrue();
            r.device.addUsed(c, 0);
            r.device.publishUsed();
            assertThat(r.driver.getBuf()).isEqualTo(100 + t);
        }
    }

    /** Peeks the lists of {@code addresses} (tokens from {@code firstToken} on), takes and uses each, reads them back. */
    private static void peekTakeAndUse(Rings r, int firstToken, long[][] addresses) throws Exception {
        DescriptorChain[] p = chains(addresses.length + 1);
        assertThat(r.device.peek(p, p.length)).isEqualTo(addresses.length);
        for (int i = 0; i < addresses.length; i++) {
            assertThat(p[i].count()).isEqualTo(addresses[i].length);
            for (int k = 0; k < addresses[i].length; k++) {
                assertThat(p[i].address(k)).as("list %d, buffer %d", i, k).isEqualTo(addresses[i][k]);
            }
        }
        for (int i = 0; i < addresses.length; i++) {
            r.device.take(p[i]);
            r.device.addUsed(p[i], 4 + i);
        }
        r.device.publishUsed();
        for (int i = 0; i < addresses.length; i++) {
            assertThat(r.driver.getBuf()).isEqualTo(firstToken + i);
            assertThat(r.driver.lastLength()).isEqualTo(4 + i);
        }
        assertThat(r.driver.getBuf()).isNull();
        assertThat(r.device.peek(p, p.length)).as("nothing more, on the next lap either").isZero();
    }

    @Test
    void packedPopsGivenBackAcrossTheEndOfTheRingComeAgainInOrder() throws Exception {
        try (Rings r = new Rings(4, features(true, false), 4)) {
            long b = r.buffer(256);
            advance(r, b, 3); // the next available descriptor is now slot 3, the last
            r.driver.addInBuf(b + 16, 8, 0);  // slot 3
            r.driver.addInBuf(b + 32, 8, 1);  // slot 0, the next lap
            DescriptorChain first = new DescriptorChain();
            DescriptorChain second = new DescriptorChain();
            assertThat(r.device.pop(first)).isTrue();
            r.device.undoPop();
            assertThat(r.device.pop(first)).as("back at slot 3, on this lap").isTrue();
            assertThat(first.address(0)).isEqualTo(b + 16);
            assertThat(r.device.pop(second)).isTrue();
            r.device.undoPop(); // back to slot 0 of the next lap
            assertThat(r.device.pop(second)).isTrue();
            assertThat(second.address(0)).isEqualTo(b + 32);
            r.device.undoPop();
            r.device.undoPop();
            assertThat(r.device.pop(first)).isTrue();
            assertThat(r.device.pop(second)).isTrue();
            assertThat(first.address(0)).isEqualTo(b + 16);
            assertThat(second.address(0)).isEqualTo(b + 32);
            r.device.addUsed(first, 1);
            r.device.addUsed(second, 2);
            r.device.publishUsed();
            assertThat(r.driver.getBuf()).isZero();
            assertThat(r.driver.getBuf()).isEqualTo(1);
            assertThat(r.driver.lastLength()).isEqualTo(2);
        }
    }

    @Test
    void aSplitPeekRefusesAHeadOneBeyondTheTable() throws Exception {
        try (Rings r = new Rings(8, features(false, false), 4)) {
            long b = r.buffer(64);
            r.driver.addInBuf(b, 16, 0);
            r.memory.writeU16(r.driver.addresses().availRing() + 4, (short) 8); // avail.ring[0] = the size
            assertThatThrownBy(() -> r.device.peek(chains(1), 1)).isInstanceOf(VirtqueueException.class)
                    .extracting(e -> ((VirtqueueException) e).error()).isEqualTo(new RingError.HeadOutOfRange(8, 8));
        }
    }
}
