package io.jvirtio.bench;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.devices.net.NetDevice;
import io.jvirtio.devices.net.VirtualSwitch;
import io.jvirtio.drivers.net.NetDriver;
import io.jvirtio.drivers.net.VirtioNet;
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
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Frames from one NIC to another across the virtual switch, through both drivers and both devices:
 * {@code VirtioNet.send} → tx ring → device tx worker → switch → device rx worker → rx ring → MSI-X →
 * receiver callback. At most {@code WINDOW} frames are between the NICs (so none is dropped).
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 2, time = 2)
@Measurement(iterations = 3, time = 3)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
@State(Scope.Benchmark)
public class NetBenchmark {
    static final int FRAMES = 4096;
    /** Frames in flight: fewer than the receiving NIC queues, so none is dropped (a drop would stall this loop). */
    static final int WINDOW = NetDevice.INBOUND_LIMIT / 2;

    @Param({"64", "1500"})
    int frameSize;

    Machine machine;
    VirtioNet a;
    VirtioNet b;
    final AtomicLong received = new AtomicLong();
    long sent;
    MemorySegment frame;

    @Setup(Level.Trial)
    public void setUp() throws Exception {
        machine = new Machine(128L << 20);
        VirtualSwitch sw = new VirtualSwitch();
        machine.plug(new NetDevice(sw.port(), new byte[] {0x52, 0x54, 0, 0, 0, 1}, 1));
        machine.plug(new NetDevice(sw.port(), new byte[] {0x52, 0x54, 0, 0, 0, 2}, 1));
        VirtioBus bus = new VirtioBus();
        NetDriver net = new NetDriver();
        bus.registerDriver(net);
        new VirtioPciDriver(machine, bus).scan();
        a = net.nics().get(0);
        b = net.nics().get(1);
        byte[] f = new byte[frameSize];
        System.arraycopy(b.mac(), 0, f, 0, 6);
        System.arraycopy(a.mac(), 0, f, 6, 6);
        f[12] = (byte) 0x88;
        f[13] = (byte) 0xb5;
        frame = MemorySegment.ofArray(f);
        b.onReceive(s -> received.incrementAndGet());
        a.send(frame); // teaches the switch nothing about b, so: flood once, then b answers
        byte[] back = f.clone();
        System.arraycopy(a.mac(), 0, back, 0, 6);
        System.arraycopy(b.mac(), 0, back, 6, 6);
        b.send(back);
        sent = 1;
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        machine.close();
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
