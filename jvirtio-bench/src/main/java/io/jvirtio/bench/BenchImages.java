package io.jvirtio.bench;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/** Image files for the block benchmarks. */
final class BenchImages {
    private BenchImages() {
    }

    /** Writes {@code bytes} of zeroes, so every block is allocated and reads hit data, not holes. */
    static void allocate(Path image, long bytes) throws IOException {
        ByteBuffer zeroes = ByteBuffer.allocateDirect(1 << 20);
        try (FileChannel c = FileChannel.open(image, StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
            for (long at = 0; at < bytes; ) {
                zeroes.clear().limit((int) Math.min(zeroes.capacity(), bytes - at));
                at += c.write(zeroes, at);
            }
        }
    }
}
