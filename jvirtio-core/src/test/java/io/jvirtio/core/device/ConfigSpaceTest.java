package io.jvirtio.core.device;

import io.jvirtio.core.spec.Conformance;
import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;

class ConfigSpaceTest {
    @Test
    @Conformance({"pci-dev-10", "mmio-dev-5"})
    void theGenerationNeverComesBackToAValueTheDriverSawWhateverTheNumberOfChanges() {
        ConfigSpace c = new ConfigSpace(8);
        int before = c.generation();
        for (int i = 0; i < 256; i++) {
            c.update(0, i, 4); // 256 changes between two reads of the 8-bit counter
        }
        assertThat(c.generation()).isNotEqualTo(before);
        assertThat(c.load(0, 4)).isEqualTo(255);
        int after = c.generation();
        assertThat(c.generation()).as("no change, no new generation").isEqualTo(after);
        c.store(0, 7, 4);
        assertThat(c.generation()).as("store is for values the device set up or accepted").isEqualTo(after);
        c.update(4, 1, 1);
        assertThat(c.generation()).isEqualTo((after + 1) & 0xff);
    }
}
