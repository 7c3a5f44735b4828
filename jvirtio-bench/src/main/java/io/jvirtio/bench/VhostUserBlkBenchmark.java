package io.jvirtio.bench;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.FileBackend;
import io.jvirtio.drivers.blk.BlkDriver;
import io.jvirtio.drivers.blk.VirtioBlock;
import io.jvirtio.vhostuser.VhostUserBackend;
import io.jvirtio.vhostuser.VhostUserFrontend;
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
 * 4 KiB random reads through jvirtio's vhost-user frontend and virtio-blk driver, side by side on two
 * back-ends serving the same kind of 256 MiB raw image: jvirtio's {@link VhostUserBackend} and QEMU's
 * {@code qemu-storage-daemon --export type=vhost-user-blk}. Same frontend, same image size, same
 * depth: the difference is the back-end. (Needs qemu-storage-daemon for {@code backend=qsd}.)
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 2, time = 2)
@Measurement(iterations = 3, time = 3)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
@State(Scope.Benchmark)
public class VhostUserBlkBenchmark {
    static final int OPS = 2048;
    static final long DISK = 256L << 20;
    static final long BASE = 0x1_0000_0000L;

    @Param({"jvirtio", "qsd"})
    String backend;

    @Param({"1", "32"})
    int depth;

    Path dir;
    Path image;
    Process qsd;
    VhostUserBackend ours;
    FileBackend file;
    GuestMemory memory;
    VhostUserFrontend frontend;
    VirtioBlock disk;
    MemorySegment[] buffers;
    final SplittableRandom random = new SplittableRandom(7);

    @Setup(Level.Trial)
    public void setUp() throws Exception {
        dir = Files.createTempDirectory("jvirtio-vub");
        image = dir.resolve("disk.raw");
        BenchImages.allocate(image, DISK); // allocated, so both back-ends read the page cache, not holes
        Path sock = dir.resolve("blk.sock");
        if (backend.equals("qsd")) {
            qsd = new ProcessBuilder("qemu-storage-daemon",
                    "--blockdev", "driver=file,node-name=file0,filename=" + image + ",aio=threads",
                    "--export", "type=vhost-user-blk,id=exp0,node-name=file0,writable=on,addr.type=unix,addr.path=" + sock)
                    .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (!Files.exists(sock) && System.nanoTime() < deadline) {
                Thread.sleep(20);
            }
        } else {
            file = new FileBackend(image, false);
            ours = new VhostUserBackend(sock, () -> new BlkDevice(file));
        }
        memory = GuestMemory.memfd(BASE, 64L << 20);
        frontend = VhostUserFrontend.connect(sock, memory, new GuestAllocator(memory, BASE, 64L << 20));
        VirtioBus bus = new VirtioBus();
        BlkDriver blk = new BlkDriver();
        bus.registerDriver(blk);
        bus.registerDevice(DeviceType.BLOCK.id(), frontend);
        disk = blk.disks().getFirst();
        buffers = new MemorySegment[depth];
        for (int i = 0; i < depth; i++) {
            buffers[i] = disk.allocateBuffer(4096);
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() throws Exception {
        frontend.close();
        memory.close();
        if (ours != null) {
            ours.close();
            file.close();
        }
        if (qsd != null) {
            qsd.destroy();
            qsd.waitFor(10, TimeUnit.SECONDS);
        }
        Files.deleteIfExists(image);
        Files.deleteIfExists(dir.resolve("blk.sock"));
        Files.deleteIfExists(dir);
    }

    @Benchmark
    @OperationsPerInvocation(OPS)
    public void randomRead4k() throws Exception {
        @SuppressWarnings("unchecked")
        CompletableFuture<Void>[] window = new CompletableFuture[depth];
        for (int i = 0; i < OPS; i++) {
            int slot = i % depth;
            if (window[slot] != null) {
                window[slot].get();
            }
            window[slot] = disk.read(random.nextLong(DISK / 4096) * 8, buffers[slot]);
        }
        for (CompletableFuture<Void> f : window) {
            if (f != null) {
                f.get();
            }
        }
    }
}
