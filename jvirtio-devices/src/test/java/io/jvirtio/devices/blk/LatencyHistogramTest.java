package io.jvirtio.devices.blk;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;

class LatencyHistogramTest {
    @Test
    void percentilesAreWithinAQuarterOctaveAboveTheTruth() {
        LatencyHistogram h = new LatencyHistogram();
        assertThat(h.percentile(50)).as("empty").isZero();
        for (int i = 1; i <= 1000; i++) {
            h.record(i * 1000L); // 1 µs .. 1 ms
        }
        h.record(0);
        assertThat(h.count()).isEqualTo(1001);
        long p50 = h.percentile(50);
        assertThat(p50).isBetween(500_000L, 500_000L * 5 / 4);
        long p99 = h.percentile(99);
        assertThat(p99).isBetween(990_000L, 990_000L * 5 / 4);
        assertThat(h.percentile(100)).isGreaterThanOrEqualTo(1_000_000L);
        for (long v : new long[] {1, 2, 3, 4, 5, 7, 8, 1000, 1_000_000_007L, Long.MAX_VALUE / 2}) {
            int b = LatencyHistogram.bucket(v);
            assertThat(LatencyHistogram.upper(b)).as("bucket of %d", v).isGreaterThan(v);
            assertThat(b == 0 || LatencyHistogram.upper(b - 1) <= v).as("bucket of %d is the first that holds it", v).isTrue();
        }
    }
}
