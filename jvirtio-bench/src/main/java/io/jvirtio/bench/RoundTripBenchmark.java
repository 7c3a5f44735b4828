package io.jvirtio.bench;

import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.QueueState;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.queue.VirtqueueException;
import io.jvirtio.core.spec.Feature;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.util.concurrent.TimeUnit;

/**
 * One buffer's whole life on one thread: addBuf → kickPrepare → pop (validate the chain) → addUsed →
 * publishUsed → needsNotification → getBuf. Measures the per-buffer cost of the ring code itself.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
@State(Scope.Thread)
public class RoundTripBenchmark {
    /** Descriptors per request: 1 (a single buffer) or 3 (header, data, status — a blk-like request). */
    @Param({"1", "3"})
    int segments;

    @Param({"false", "true"})
    boolean eventIdx;

    /** The ring format: the same code through the queue contract, split (§2.7) or packed (§2.8). */
    @Param({"split", "packed"})
    String ring;

    @Param({"false", "true"})
    boolean indirect;

    GuestMemory memory;
    DriverQueue<Integer> driver;
    DeviceQueue device;
    DescriptorChain chain;
    Scatterlist sg;
    Integer token = 1;

    @Setup(Level.Trial)
    public void setUp() throws VirtqueueException {
        long features = (eventIdx ? Feature.EVENT_IDX.mask() : 0) | (indirect ? Feature.INDIRECT_DESC.mask() : 0)
                | (ring.equals("packed") ? Feature.RING_PACKED.mask() : 0);
        memory = GuestMemory.allocate(0x1_0000_0000L, 1 << 20);
        GuestAllocator alloc = new GuestAllocator(memory, 0x1_0000_0000L, 1 << 20);
        driver = DriverQueue.allocate(alloc, 0, 256, features, 8, () -> { });
        device = DeviceQueue.create(memory, 0, 256, driver.addresses(), features,
                QueueState.initial(features));
        long buf = alloc.allocate(4096, 64);
        sg = new Scatterlist();
        if (segments == 1) {
            sg.addWritable(buf, 1500);
        } else {
            sg.addReadable(buf, 16).addReadable(buf + 16, 4096 - 32).addWritable(buf + 4096 - 16, 1);
        }
        chain = new DescriptorChain();
        device.enableNotifications();
        driver.enableCallbacks();
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        memory.close();
    }

    @Benchmark
    public Integer roundTrip() throws VirtqueueException {
        driver.addBuf(sg, token);
        boolean kick = driver.kickPrepare();
        device.pop(chain);
        device.addUsed(chain.head(), 1);
        device.publishUsed();
        boolean irq = device.needsNotification();
        Integer t = driver.getBuf();
        return kick ^ irq ? t : token;
    }
}
