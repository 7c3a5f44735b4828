package io.jvirtio.devices.console;

import java.util.Arrays;
import java.util.function.Consumer;

/** A console whose far end types back whatever it is sent — for demos and tests of both directions. */
public final class EchoBackend implements ConsoleBackend {
    private volatile Consumer<byte[]> input = b -> { };

    @Override
    public void start(Consumer<byte[]> input) {
        this.input = input;
    }

    @Override
    public void write(byte[] data, int offset, int length) {
        input.accept(Arrays.copyOfRange(data, offset, offset + length));
    }

    @Override
    public void close() {
    }
}
