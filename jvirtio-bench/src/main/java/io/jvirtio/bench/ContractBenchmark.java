package io.jvirtio.bench;

import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.QueueState;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.queue.VirtqueueException;
import io.jvirtio.core.queue.split.SplitDeviceQueue;
import io.jvirtio.core.queue.split.SplitDriverQueue;
import io.jvirtio.core.queue.split.SplitLayout;
import io.jvirtio.core.spec.Feature;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.util.concurrent.TimeUnit;

/**
 * What the queue contract costs: one split-ring round trip through the concrete classes, and the same through
 * the {@link DriverQueue}/{@link DeviceQueue} interfaces at call sites that have also seen the packed ring (a
 * process serving guests of both formats) — bimorphic, which the JIT still inlines.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 3, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
@State(Scope.Thread)
public class ContractBenchmark {
    GuestMemory memory;
    SplitDriverQueue<Integer> splitDriver;
    SplitDeviceQueue splitDevice;
    DriverQueue<Integer> driver;
    DeviceQueue device;
    DriverQueue<Integer> packedDriver;
    DeviceQueue packedDevice;
    final DescriptorChain chain = new DescriptorChain();
    final Scatterlist sg = new Scatterlist();
    final Integer token = 1;

    @Setup(Level.Trial)
    public void setUp() throws VirtqueueException {
        long features = Feature.EVENT_IDX.mask();
        long packed = features | Feature.RING_PACKED.mask();
        memory = GuestMemory.allocate(0x1_0000_0000L, 1 << 20);
        GuestAllocator alloc = new GuestAllocator(memory, 0x1_0000_0000L, 1 << 20);
        splitDriver = SplitDriverQueue.allocate(alloc, 0, SplitLayout.modern(256), features, 0, () -> { });
        splitDevice = SplitDeviceQueue.create(memory, 0, 256, splitDriver.addresses(), features, QueueState.INITIAL);
        driver = DriverQueue.allocate(alloc, 1, 256, features, 0, () -> { });
        device = DeviceQueue.create(memory, 1, 256, driver.addresses(), features, QueueState.INITIAL);
        packedDriver = DriverQueue.allocate(alloc, 2, 256, packed, 0, () -> { });
        packedDevice = DeviceQueue.create(memory, 2, 256, packedDriver.addresses(), packed, QueueState.initial(packed));
        sg.addWritable(alloc.allocate(4096, 64), 1500);
        // the interface call sites see both formats before they are compiled
        for (int i = 0; i < 20_000; i++) {
            viaContract(packedDriver, packedDevice);
            viaContract(driver, device);
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        memory.close();
    }

    private Integer viaContract(DriverQueue<Integer> d, DeviceQueue q) throws VirtqueueException {
        d.addBuf(sg, token);
        boolean kick = d.kickPrepare();
        q.pop(chain);
        q.addUsed(chain.head(), 1);
        q.publishUsed();
        boolean irq = q.needsNotification();
        Integer t = d.getBuf();
        return kick ^ irq ? t : token;
    }

    /** Through the interfaces, call sites bimorphic (split and packed seen). */
    @Benchmark
    public Integer contract() throws VirtqueueException {
        return viaContract(driver, device);
    }

    /** The same round trip on the concrete split classes. */
    @Benchmark
    public Integer direct() throws VirtqueueException {
        splitDriver.addBuf(sg, token);
        boolean kick = splitDriver.kickPrepare();
        splitDevice.pop(chain);
        splitDevice.addUsed(chain.head(), 1);
        splitDevice.publishUsed();
        boolean irq = splitDevice.needsNotification();
        Integer t = splitDriver.getBuf();
        return kick ^ irq ? t : token;
    }
}
