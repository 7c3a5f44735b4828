package io.jvirtio.bench;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.devices.net.NetDevice;
import io.jvirtio.devices.net.VirtualSwitch;
import io.jvirtio.drivers.net.NetDriver;
import io.jvirtio.drivers.net.VirtioNet;
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
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Frames between two NICs over vhost-user: two front-ends (each with its own memfd guest memory and the
 * virtio-net driver) connected to one jvirtio back-end whose NICs share a virtual switch. Every frame
 * crosses a kick eventfd, the back-end's rings, the switch, the other ring and a call eventfd.
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 2, time = 2)
@Measurement(iterations = 3, time = 3)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
@State(Scope.Benchmark)
public class VhostUserNetBenchmark {
    static final int FRAMES = 4096;
    /** Frames in flight: fewer than the receiving NIC queues, so none is dropped (a drop would stall this loop). */
    static final int WINDOW = NetDevice.INBOUND_LIMIT / 2;

    @Param({"64", "1500"})
    int frameSize;

    Path dir;
    VhostUserBackend backend;
    GuestMemory memA;
    GuestMemory memB;
    VhostUserFrontend feA;
    VhostUserFrontend feB;
    VirtioNet a;
    VirtioNet b;
    final AtomicLong received = new AtomicLong();
    long sent;
    MemorySegment frame;

    @Setup(Level.Trial)
    public void setUp() throws Exception {
        dir = Files.createTempDirectory("jvirtio-vun");
        VirtualSwitch sw = new VirtualSwitch();
        AtomicLong n = new AtomicLong();
        backend = new VhostUserBackend(dir.resolve("net.sock"),
                () -> new NetDevice(sw.port(), new byte[] {0x52, 0x54, 0, 0, 0, (byte) n.incrementAndGet()}, 1));
        memA = GuestMemory.memfd(0x1_0000_0000L, 32L << 20);
        memB = GuestMemory.memfd(0x1_0000_0000L, 32L << 20);
        feA = VhostUserFrontend.connect(backend.socket(), memA, new GuestAllocator(memA, 0x1_0000_0000L, 32L << 20));
        feB = VhostUserFrontend.connect(backend.socket(), memB, new GuestAllocator(memB, 0x1_0000_0000L, 32L << 20));
        VirtioBus bus = new VirtioBus();
        NetDriver net = new NetDriver();
        bus.registerDriver(net);
        bus.registerDevice(DeviceType.NET.id(), feA);
        bus.registerDevice(DeviceType.NET.id(), feB);
        a = net.nics().get(0);
        b = net.nics().get(1);
        byte[] f = new byte[frameSize];
        System.arraycopy(b.mac(), 0, f, 0, 6);
        System.arraycopy(a.mac(), 0, f, 6, 6);
        f[12] = (byte) 0x88;
        f[13] = (byte) 0xb5;
        frame = MemorySegment.ofArray(f);
        b.onReceive(s -> received.incrementAndGet());
        a.send(frame);
        byte[] back = f.clone();
        System.arraycopy(a.mac(), 0, back, 0, 6);
        System.arraycopy(b.mac(), 0, back, 6, 6);
        b.send(back);
        sent = 1;
    }

    @TearDown(Level.Trial)
    public void tearDown() throws Exception {
        feA.close();
        feB.close();
        backend.close();
        memA.close();
        memB.close();
        Files.deleteIfExists(dir);
    }

    @Benchmark
    @OperationsPerInvocation(FRAMES)
    public long frames() throws Exception {
        for (int i = 0; i < FRAMES; i++) {
            while (sent - received.get() > WINDOW) {
                Thread.onSpinWait();
            }
            a.send(frame);
            sent++;
        }
        return sent;
    }
}
