package io.jvirtio.core.queue.split;

import io.jvirtio.core.queue.RingAddresses;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class SplitLayoutTest {

    @Test
    @io.jvirtio.core.spec.Conformance("split-drv-1")
    void modernLayoutPlacesEachPartAtItsAlignment() {
        SplitLayout l = SplitLayout.modern(256);
        assertThat(l.availOffset()).isEqualTo(16 * 256);
        // avail ring is 6 + 2*256 = 518 bytes; the used ring starts at the next multiple of 4
        assertThat(l.usedOffset()).isEqualTo(4096 + 520);
        assertThat(l.totalBytes()).isEqualTo(4096 + 520 + 6 + 8 * 256);
        SplitLayout one = SplitLayout.modern(1);
        assertThat(one.availOffset()).isEqualTo(16);
        assertThat(one.usedOffset()).isEqualTo(24);
        assertThat(one.totalBytes()).isEqualTo(24 + 14);
    }

    @Test
    void legacyLayoutFollowsTheSpecFormula() {
        // §2.7.2: ALIGN(16*qsz + 2*(3+qsz)) + ALIGN(2*3 + 8*qsz), qalign 4096
        for (int qsz : new int[] {1, 64, 256, 1024, 32768}) {
            long expectUsed = align(16L * qsz + 2L * (3 + qsz), 4096);
            SplitLayout l = SplitLayout.legacy(qsz, 4096);
            assertThat(l.usedOffset()).isEqualTo(expectUsed);
            assertThat(l.totalBytes()).isEqualTo(expectUsed + align(6 + 8L * qsz, 4096));
            assertThat(l.availOffset()).isEqualTo(16L * qsz);
        }
        assertThat(SplitLayout.legacy(256, 4096).totalBytes()).isEqualTo(12288);
    }

    @ParameterizedTest
    @ValueSource(ints = {0, 3, 100, 65536, -4, 32769})
    void queueSizeMustBeAPowerOfTwoUpTo32768(int size) {
        assertThatThrownBy(() -> SplitLayout.modern(size)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining(Integer.toString(size));
    }

    @Test
    void addressesAtABase() {
        RingAddresses a = SplitLayout.modern(8).at(0x10000);
        assertThat(a).isEqualTo(new RingAddresses(0x10000, 0x10080, 0x10080 + 24));
    }

    private static long align(long v, long a) {
        return (v + a - 1) / a * a;
    }
}
