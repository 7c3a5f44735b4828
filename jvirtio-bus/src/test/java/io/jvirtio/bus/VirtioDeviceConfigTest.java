package io.jvirtio.bus;

import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.queue.DriverQueue;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** §2.5.1: configuration reads repeat until config_generation is stable. */
class VirtioDeviceConfigTest {

    /** A device whose config changes (generation bumps) during the first {@code changes} reads. */
    static final class ChangingConfig implements ConfigOps {
        int generation;
        int changes;
        int reads;
        long value = 0x0000_0001_0000_0001L;

        ChangingConfig(int changes) {
            this.changes = changes;
        }

        public int generation() { return generation; }

        public void readConfig(int offset, byte[] dst, int dstOffset, int length) {
            reads++;
            // two 32-bit halves read separately, the device updating between them: a torn value
            long lo = value & 0xffffffffL;
            if (changes > 0) {
                changes--;
                value += 0x0000_0001_0000_0001L;
                generation++;
            }
            long hi = value >>> 32;
            long v = lo | hi << 32;
            for (int i = 0; i < length; i++) {
                dst[dstOffset + i] = (byte) (v >>> (8 * (offset + i)));
            }
        }

        public int getStatus() { return 0; }
        public void setStatus(int status) { }
        public void reset() { }
        public long getFeatures() { return 0; }
        public void finalizeFeatures(long features) { }
        public void writeConfig(int offset, byte[] src) { }
        public List<DriverQueue<Object>> findQueues(List<QueueSpec> specs) { return List.of(); }
        public void deleteQueues() { }
        public GuestAllocator dma() { return null; }
        public String busInfo() { return "test"; }
        public String interruptMode() { return "none"; }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("basic-drv-11")
    void retriesUntilTheGenerationIsStable() throws Exception {
        ChangingConfig cfg = new ChangingConfig(3);
        VirtioDevice dev = new VirtioDevice(0, 2, cfg);
        long v = dev.readConfigField(0, 8);
        assertThat(cfg.reads).isEqualTo(4);
        assertThat(v >>> 32).as("no torn value").isEqualTo(v & 0xffffffffL);
        assertThat(v).isEqualTo(0x0000_0004_0000_0004L);
    }

    @Test
    void givesUpOnADeviceThatNeverSettles() {
        ChangingConfig cfg = new ChangingConfig(Integer.MAX_VALUE);
        VirtioDevice dev = new VirtioDevice(0, 2, cfg);
        assertThatThrownBy(() -> dev.readConfigField(0, 8)).isInstanceOf(TransportException.class)
                .hasMessageContaining("config_generation changed");
        assertThat(cfg.reads).isEqualTo(VirtioDevice.CONFIG_RETRIES);
    }
}
