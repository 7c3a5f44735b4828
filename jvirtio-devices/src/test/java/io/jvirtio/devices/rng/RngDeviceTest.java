package io.jvirtio.devices.rng;

import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.DeviceHarness;
import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;

class RngDeviceTest {

    @Test
    @io.jvirtio.core.spec.Conformance({"rng-dev-1", "split-dev-2"})
    void fillsExactlyTheWritableBytesAndNothingElse() throws Exception {
        try (DeviceHarness h = new DeviceHarness(new RngDevice(new Random(3)), Feature.VERSION_1.mask())) {
            long buf = h.alloc.allocate(300, 8);
            long guard = buf + 100;
            h.memory.slice(buf, 300).fill((byte) 0);
            int len = h.roundTrip(0, new Scatterlist().addWritable(buf, 37).addWritable(buf + 50, 50));
            assertThat(len).isEqualTo(87);
            byte[] b = new byte[300];
            h.memory.read(buf, b, 0, 300);
            // §5.4.6.1: never more than the buffers hold: the gap and the bytes after stay untouched
            assertThat(java.util.Arrays.copyOfRange(b, 37, 50)).containsOnly(0);
            assertThat(java.util.Arrays.copyOfRange(b, (int) (guard - buf), 300)).containsOnly(0);
            assertThat(java.util.Arrays.copyOfRange(b, 0, 37)).isNotEqualTo(new byte[37]);
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("rng-dev-1")
    void hugeBufferIsServedInPart() throws Exception {
        try (DeviceHarness h = new DeviceHarness(new RngDevice(new Random(3)), Feature.VERSION_1.mask())) {
            long buf = h.alloc.allocate(1 << 20, 8);
            int len = h.roundTrip(0, new Scatterlist().addWritable(buf, 1 << 20));
            assertThat(len).isEqualTo(RngDevice.MAX_PER_REQUEST);
        }
    }
}
