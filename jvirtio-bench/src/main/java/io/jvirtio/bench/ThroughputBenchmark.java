package io.jvirtio.bench;

import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.QueueState;
import io.jvirtio.core.queue.VirtqueueException;
import io.jvirtio.core.spec.Feature;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Two threads, one ring: the benchmark thread is the driver (adds in batches, kicks, reclaims), a
 * second thread is the device (pops, completes, publishes in batches). Both poll, as Linux's
 * {@code tools/virtio/ringtest} does by default, so the figure is the ring's own two-core throughput in
 * buffers per second, comparable with ringtest's.
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
@State(Scope.Benchmark)
public class ThroughputBenchmark {
    static final int BUFFERS_PER_INVOCATION = 100_000;

    @Param({"256"})
    int queueSize;

    @Param({"32"})
    int batch;

    @Param({"false", "true"})
    boolean eventIdx;

    /** The ring format: the same code through the queue contract, split (§2.7) or packed (§2.8). */
    @Param({"split", "packed"})
    String ring;

    /** VIRTIO_F_IN_ORDER: the device writes one used entry per batch of buffers it filled completely. */
    @Param({"false", "true"})
    boolean inOrder;

    GuestMemory memory;
    DriverQueue<Integer> driver;
    DeviceQueue device;
    Thread deviceThread;
    volatile boolean stop;
    final AtomicReference<Throwable> failure = new AtomicReference<>();
    long buf;
    Integer token = 7;

    @Setup(Level.Trial)
    public void setUp() throws VirtqueueException {
        long features = (eventIdx ? Feature.EVENT_IDX.mask() : 0)
                | (ring.equals("packed") ? Feature.RING_PACKED.mask() : 0)
                | (inOrder ? Feature.IN_ORDER.mask() : 0);
        memory = GuestMemory.allocate(0x1_0000_0000L, 4 << 20);
        GuestAllocator alloc = new GuestAllocator(memory, 0x1_0000_0000L, 4 << 20);
        driver = DriverQueue.allocate(alloc, 0, queueSize, features, 0, () -> { });
        device = DeviceQueue.create(memory, 0, queueSize, driver.addresses(), features,
                QueueState.initial(features));
        buf = alloc.allocate(2048, 64);
        // Both sides poll, so both ask the other not to notify (NAPI-style busy polling).
        driver.disableCallbacks();
        device.disableNotifications();
        stop = false;
        deviceThread = Thread.ofPlatform().name("device").daemon().start(this::deviceLoop);
    }

    private void deviceLoop() {
        DescriptorChain chain = new DescriptorChain();
        try {
            while (!stop) {
                int n = 0;
                while (n < batch && device.pop(chain)) {
                    device.addUsed(chain, 64); // fills the 64-byte buffer: with IN_ORDER, batched
                    n++;
                }
                if (n > 0) {
                    device.publishUsed();
                    device.needsNotification();
                } else {
                    Thread.onSpinWait();
                }
            }
        } catch (Throwable t) {
            failure.set(t);
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() throws InterruptedException {
        stop = true;
        deviceThread.join();
        memory.close();
        if (failure.get() != null) {
            throw new IllegalStateException(failure.get());
        }
    }

    @Benchmark
    @OperationsPerInvocation(BUFFERS_PER_INVOCATION)
    public long buffers() throws VirtqueueException {
        int sent = 0;
        int done = 0;
        while (done < BUFFERS_PER_INVOCATION) {
            int added = 0;
            while (sent < BUFFERS_PER_INVOCATION && added < batch && driver.addInBuf(buf, 64, token)) {
                sent++;
                added++;
            }
            if (added > 0) {
                driver.kickPrepare();
            }
            int got = 0;
            while (driver.getBuf() != null) {
                got++;
            }
            if (got == 0 && added == 0) {
                Thread.onSpinWait();
            }
            done += got;
        }
        return done;
    }
}
