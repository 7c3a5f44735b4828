package io.jvirtio.devices.console;

import java.io.IOException;
import java.util.function.Consumer;

/**
 * Where a console's bytes go and come from. {@link #start} hands the backend a sink for input; output
 * arrives through {@link #write}.
 */
public interface ConsoleBackend extends AutoCloseable {
    /** Begins delivering input to {@code input} (from a thread of the backend's own). */
    void start(Consumer<byte[]> input);

    /** Bytes the driver wrote to the console. */
    void write(byte[] data, int offset, int length) throws IOException;

    @Override
    void close();
}
