package io.jvirtio.bench;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.BlockBackend;
import io.jvirtio.devices.blk.FileBackend;
import io.jvirtio.devices.blk.NullBackend;
import io.jvirtio.drivers.blk.BlkDriver;
import io.jvirtio.drivers.blk.VirtioBlock;
import io.jvirtio.machine.Machine;
import io.jvirtio.transport.pci.VirtioPciDriver;
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

import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * Block I/O through the whole stack: {@code VirtioBlock} → ring → virtio-pci notify → device worker →
 * backend → used ring → MSI-X → vCPU thread → future. Reads of {@code size} bytes, random (4 KiB) or
 * sequential (128 KiB), with {@code depth} requests in flight; buffers are in guest memory (zero copy).
 * The file backend is a 256 MiB file in the temp directory, so reads come from the page cache.
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 2, time = 2)
@Measurement(iterations = 3, time = 3)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
@State(Scope.Benchmark)
public class BlkBenchmark {
    static final int OPS = 2048;
    static final long DISK = 256L << 20;

    @Param({"null", "file"})
    String backend;

    @Param({"1", "32"})
    int depth;

    /** 4096: random reads; 131072: sequential reads. */
    @Param({"4096", "131072"})
    int size;

    Machine machine;
    VirtioBlock disk;
    MemorySegment[] buffers;
    Path image;
    BlockBackend store;
    final SplittableRandom random = new SplittableRandom(42);
    long sequential;

    @Setup(Level.Trial)
    public void setUp() throws Exception {
        machine = new Machine(512L << 20);
        if (backend.equals("file")) {
            image = Files.createTempFile("jvirtio-bench-", ".img");
            BenchImages.allocate(image, DISK); // allocated, so reads hit the page cache, not holes
            store = new FileBackend(image, false);
        } else {
            store = new NullBackend(DISK);
        }
        machine.plug(new BlkDevice(store));
        VirtioBus bus = new VirtioBus();
        BlkDriver blk = new BlkDriver();
        bus.registerDriver(blk);
        new VirtioPciDriver(machine, bus).scan();
        disk = blk.disks().getFirst();
        buffers = new MemorySegment[depth];
        for (int i = 0; i < depth; i++) {
            buffers[i] = disk.allocateBuffer(size);
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() throws Exception {
        machine.close();
        store.close();
        if (image != null) {
            Files.deleteIfExists(image);
        }
    }

    private long nextSector() {
        long blocks = DISK / size;
        long block = size == 4096 ? random.nextLong(blocks) : (sequential++ % blocks);
        return block * (size / 512);
    }

    @Benchmark
    @OperationsPerInvocation(OPS)
    public void read() throws Exception {
        @SuppressWarnings("unchecked")
        CompletableFuture<Void>[] window = new CompletableFuture[depth];
        for (int i = 0; i < OPS; i++) {
            int slot = i % depth;
            if (window[slot] != null) {
                window[slot].get();
            }
            window[slot] = disk.read(nextSector(), buffers[slot]);
        }
        for (CompletableFuture<Void> f : window) {
            if (f != null) {
                f.get();
            }
        }
    }
}
