package io.jvirtio.devices.console;

import org.junit.jupiter.api.Test;

import java.io.PipedInputStream;
import java.io.PipedOutputStream;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/** A console backend shared by successive devices (serve console: one per connection) keeps one reader. */
class StreamBackendTest {
    static long readers() {
        return Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().equals("jvirtio-console-input")).count();
    }

    @Test
    void successiveDevicesShareOneReaderAndTheNewestGetsTheInput() throws Exception {
        PipedOutputStream typed = new PipedOutputStream();
        StreamBackend backend = new StreamBackend(new PipedInputStream(typed), java.io.OutputStream.nullOutputStream());
        long before = readers();
        List<String> first = new CopyOnWriteArrayList<>();
        List<String> second = new CopyOnWriteArrayList<>();
        for (int i = 0; i < 20; i++) {
            new ConsoleDevice(backend, 80, 25).close(); // connections that came and went
        }
        new ConsoleDevice(backend, 80, 25);
        backend.start(b -> first.add(new String(b)));
        backend.start(b -> second.add(new String(b)));
        assertThat(readers() - before).as("one reader thread for the backend's whole life").isEqualTo(1);
        typed.write("hello".getBytes());
        typed.flush();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (second.isEmpty() && System.nanoTime() < deadline) {
            Thread.sleep(1);
        }
        assertThat(String.join("", second)).isEqualTo("hello");
        assertThat(first).isEmpty();
        typed.close();
    }
}
