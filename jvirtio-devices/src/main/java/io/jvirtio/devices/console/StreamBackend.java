package io.jvirtio.devices.console;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.function.Consumer;

/**
 * A console over a pair of streams: stdio, a socket, a file (output appended, no input), or anything
 * else with an {@link InputStream} and an {@link OutputStream}.
 */
public final class StreamBackend implements ConsoleBackend {
    private final InputStream in;
    private final OutputStream out;
    private final AutoCloseable resource;
    private Thread reader;
    private volatile Consumer<byte[]> target;

    public StreamBackend(InputStream in, OutputStream out) {
        this(in, out, null);
    }

    private StreamBackend(InputStream in, OutputStream out, AutoCloseable resource) {
        this.in = in;
        this.out = out;
        this.resource = resource;
    }

    public static StreamBackend stdio() {
        return new StreamBackend(System.in, System.out);
    }

    public static StreamBackend socket(Socket socket) throws IOException {
        return new StreamBackend(socket.getInputStream(), socket.getOutputStream(), socket);
    }

    /** Output appended to {@code file}; the console never receives input. */
    public static StreamBackend file(Path file) throws IOException {
        OutputStream o = Files.newOutputStream(file, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
        return new StreamBackend(InputStream.nullInputStream(), o, o);
    }

    /**
     * Input goes to {@code input} from now on. One reader thread serves the backend for its whole life, so
     * that a backend shared by successive devices (one per vhost-user connection to {@code serve console})
     * costs one thread, and its input reaches the newest device.
     */
    @Override
    public synchronized void start(Consumer<byte[]> input) {
        target = input;
        if (reader != null) {
            return;
        }
        reader = Thread.ofPlatform().name("jvirtio-console-input").daemon().start(() -> {
            byte[] buf = new byte[4096];
            try {
                int n;
                while ((n = in.read(buf)) > 0) {
                    target.accept(Arrays.copyOf(buf, n));
                }
            } catch (IOException e) {
                // the stream closed: no more input
            }
        });
    }

    @Override
    public void write(byte[] data, int offset, int length) throws IOException {
        out.write(data, offset, length);
        out.flush();
    }

    @Override
    public void close() {
        try {
            if (resource != null) {
                resource.close();
            }
        } catch (Exception e) {
            // closing is best effort
        }
    }
}
