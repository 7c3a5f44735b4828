package io.jvirtio.devices.net;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** The switch's per-frame counters: exact over many threads, and still exact once those threads have ended. */
class ThreadCounterTest {
    @Test
    void countsFromManyThreadsAddUpExactlyBeforeAndAfterTheyEnd() throws Exception {
        ThreadCounter c = new ThreadCounter();
        List<Thread> threads = new ArrayList<>();
        java.util.concurrent.CountDownLatch counted = new java.util.concurrent.CountDownLatch(8);
        java.util.concurrent.CountDownLatch end = new java.util.concurrent.CountDownLatch(1);
        for (int t = 0; t < 8; t++) {
            threads.add(Thread.ofPlatform().start(() -> {
                for (int i = 0; i < 100_000; i++) {
                    c.increment();
                }
                counted.countDown();
                try {
                    end.await();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }));
        }
        counted.await();
        assertThat(c.get()).as("while the threads live").isEqualTo(800_000);
        end.countDown();
        for (Thread t : threads) {
            t.join();
        }
        assertThat(c.get()).as("their cells folded in once they ended").isEqualTo(800_000);
        c.increment();
        assertThat(c.get()).isEqualTo(800_001);
    }
}
