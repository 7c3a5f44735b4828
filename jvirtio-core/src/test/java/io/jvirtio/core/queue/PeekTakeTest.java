package io.jvirtio.core.queue;

import io.jvirtio.core.spec.Feature;
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
    void aBadChainMetByAPeekBreaksTheQueueAsAPopWould(boolean packed) throws Exception {
        try (Rings r = new Rings(8, features(packed, false), 4)) {
            long b = r.buffer(64);
            r.driver.addInBuf(b, 16, 0);
            r.driver.addInBuf(Rings.BASE + Rings.SIZE, 16, 1); // outside guest memory
            DescriptorChain[] c = chains(4);
            assertThatThrownBy(() -> r.device.peek(c, 4)).isInstanceOf(VirtqueueException.class)
                    .hasMessageContaining("outside");
            assertThatThrownBy(() -> r.device.pop(new DescriptorChain())).isInstanceOf(VirtqueueException.class);
            assertThat(r.device.error()).isNotNull();
        }
    }

    @ParameterizedTest(name = "packed={0}")
    @ValueSource(booleans = {false, true})
    void aPeekOfAnEmptyRingReadsNothing(boolean packed) throws Exception {
        try (Rings r = new Rings(8, features(packed, false), 4)) {
            assertThat(r.device.peek(chains(4), 4)).isZero();
        }
    }
}
