package io.jvirtio.core.os;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;

import static org.assertj.core.api.Assertions.assertThatThrownBy;

class PosixTest {

    @Test
    void failedCallsNameTheCallAndErrno() {
        try (Arena arena = Arena.ofConfined()) {
            assertThatThrownBy(() -> Posix.mmapShared(-1, 0, 4096, arena))
                    .isInstanceOfSatisfying(NativeException.class, e -> {
                        org.assertj.core.api.Assertions.assertThat(e.call()).isEqualTo("mmap");
                        org.assertj.core.api.Assertions.assertThat(e.errno()).isEqualTo(9); // EBADF
                        org.assertj.core.api.Assertions.assertThat(e.getMessage()).contains("mmap failed", "errno 9");
                    });
        }
        assertThatThrownBy(() -> Posix.close(-1)).isInstanceOf(NativeException.class).hasMessageContaining("close");
        assertThatThrownBy(() -> Posix.openReadWrite("/nonexistent-dir/x")).isInstanceOf(NativeException.class)
                .hasMessageContaining("open failed").hasMessageContaining("/nonexistent-dir/x");
    }
}
