package io.jvirtio.cli;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.bus.VirtioDevice;
import io.jvirtio.core.spec.DeviceStatus;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.FileBackend;
import io.jvirtio.devices.console.ConsoleDevice;
import io.jvirtio.devices.console.EchoBackend;
import io.jvirtio.devices.net.NetDevice;
import io.jvirtio.devices.net.VirtualSwitch;
import io.jvirtio.devices.rng.RngDevice;
import io.jvirtio.drivers.blk.BlkDriver;
import io.jvirtio.drivers.blk.VirtioBlock;
import io.jvirtio.drivers.console.ConsoleDriver;
import io.jvirtio.drivers.console.VirtioConsole;
import io.jvirtio.drivers.net.NetDriver;
import io.jvirtio.drivers.net.VirtioNet;
import io.jvirtio.drivers.rng.RngDriver;
import io.jvirtio.drivers.rng.VirtioRng;
import io.jvirtio.machine.Machine;
import io.jvirtio.transport.pci.VirtioPciDriver;

import java.io.PrintStream;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.zip.CRC32C;

/**
 * {@code jvirtio demo}: a machine with virtio devices, enumerated and driven by jvirtio's own drivers
 * through PCI configuration space, BARs, guest memory and interrupts.
 */
final class DemoCommand implements Command {
    @Override
    public String name() {
        return "demo";
    }

    @Override
    public String summary() {
        return "boot an in-process machine with virtio-pci devices and drive each with its driver";
    }

    @Override
    public String usage() {
        return """
                Usage: jvirtio demo [options]

                Builds an in-process machine (guest RAM in a memfd, PCI bus 0, MSI-X) with one device of
                each type: a block device backed by a real file, two network cards on a virtual switch,
                a console whose far end echoes, and an entropy source. Then it plays the guest: the
                virtio-pci driver enumerates the bus (shown like lspci), the virtio bus negotiates
                features and probes the drivers (shown like /sys/bus/virtio/devices), and real work runs
                through every driver: the disk is written with random data, flushed, read back and
                checked against CRC32C checksums and against the file's own bytes; numbered frames
                cross the switch from one NIC to the other and are checked; lines go out of the console
                and come back; entropy is read.

                Options:
                  --disk-mb N        disk size in MiB (default 64)
                  --image PATH       disk image file (default: a temporary file, deleted after)
                  --depth N          requests in flight (default 32)
                  --request-kb N     bytes per request in KiB, 4..1024 (default 128)
                  --queues N         block request queues, 1..8 (default 2)
                  --frames N         frames sent between the NICs (default 100000)
                  -h, --help         this text

                Example:
                  jvirtio demo --disk-mb 256 --depth 64
                """;
    }

    @Override
    public int run(List<String> args, PrintStream out, PrintStream err) throws Exception {
        Options o = new Options(args, Set.of("--disk-mb", "--image", "--depth", "--request-kb", "--queues", "--frames"), Set.of());
        if (o.help()) {
            out.print(usage());
            return 0;
        }
        long diskBytes = o.number("--disk-mb", 64, 1, 1 << 20) << 20;
        int depth = (int) o.number("--depth", 32, 1, 1024);
        int requestBytes = (int) o.number("--request-kb", 128, 4, 1024) << 10;
        int queues = (int) o.number("--queues", 2, 1, 8);
        int frames = (int) o.number("--frames", 100_000, 1, 100_000_000);
        String imageArg = o.value("--image");
        Path image = imageArg != null ? Path.of(imageArg) : Files.createTempFile("jvirtio-demo-", ".img");
        boolean temporary = imageArg == null;
        try (Machine machine = new Machine(256L << 20)) {
            FileBackend backend = FileBackend.create(image, diskBytes);
            machine.plug(new BlkDevice(backend, queues));
            VirtualSwitch sw = new VirtualSwitch();
            machine.plug(new NetDevice(sw.port(), new byte[] {0x52, 0x54, 0, 0x12, 0x34, 0x56}, 1));
            machine.plug(new NetDevice(sw.port(), new byte[] {0x52, 0x54, 0, 0x12, 0x34, 0x57}, 1));
            machine.plug(new ConsoleDevice(new EchoBackend(), 80, 25));
            machine.plug(new RngDevice());

            VirtioBus bus = new VirtioBus();
            BlkDriver blk = new BlkDriver();
            RngDriver rng = new RngDriver();
            NetDriver net = new NetDriver();
            ConsoleDriver console = new ConsoleDriver();
            bus.registerDriver(blk);
            bus.registerDriver(rng);
            bus.registerDriver(net);
            bus.registerDriver(console);
            VirtioPciDriver pci = new VirtioPciDriver(machine, bus);
            List<VirtioPciDriver.Probed> found = pci.scan();

            out.println("== PCI bus 0 (lspci -v) ==");
            for (VirtioPciDriver.Probed p : found) {
                out.printf("%s Red Hat, Inc. Virtio %s [%04x:%04x] (rev %02x) subsystem %04x%n", p.bdf(),
                        p.virtioDevice().type().description(), p.vendor(), p.device(), p.revision(), p.subsystem());
                for (String c : p.capabilities()) {
                    out.println("        Capabilities: " + c);
                }
            }
            out.println();
            out.println("== /sys/bus/virtio/devices ==");
            for (VirtioDevice d : bus.devices()) {
                out.printf("%s: device %d (%s) at %s, driver %s, status %s%n", d.name(), d.deviceId(),
                        d.type().name().toLowerCase(), d.config().busInfo(),
                        d.driver() == null ? "-" : d.driver().name(), DeviceStatus.describe(d.status()));
                out.printf("        features: %s%n", Feature.describe(d.type(), d.features()));
                out.printf("        interrupts: %s%n", d.config().interruptMode());
            }
            out.println();

            VirtioBlock disk = blk.disks().getFirst();
            VirtioRng entropy = rng.devices().getFirst();
            Stats s = runDisk(disk, diskBytes, depth, requestBytes, err);
            byte[] random = new byte[1 << 20];
            long t0 = System.nanoTime();
            entropy.read(random);
            long rngNanos = System.nanoTime() - t0;
            boolean fileMatches = compareFile(image, s.crcs, requestBytes);
            NetStats ns = runNet(net.nics().get(0), net.nics().get(1), frames, err);
            long c0 = System.nanoTime();
            boolean echoed = runConsole(console.consoles().getFirst());
            long consoleNanos = System.nanoTime() - c0;

            out.println("== work ==");
            out.printf("  %-34s %s%n", "disk id (GET_ID)", disk.id().get(5, TimeUnit.SECONDS));
            out.printf("  %-34s %,d sectors, %d queue(s), depth %d, %d KiB requests%n", "disk",
                    disk.capacitySectors(), disk.queueCount(), depth, requestBytes >> 10);
            out.printf("  %-10s %,10d ops %,12d MiB %10.1f MiB/s %,10.0f IOPS%n", "write", s.writes,
                    diskBytes >> 20, (diskBytes / 1048576.0) / (s.writeNanos / 1e9), s.writes / (s.writeNanos / 1e9));
            out.printf("  %-10s %,10d ops %16s %10.1f ms%n", "flush", 1, "", s.flushNanos / 1e6);
            out.printf("  %-10s %,10d ops %,12d MiB %10.1f MiB/s %,10.0f IOPS%n", "read", s.reads,
                    diskBytes >> 20, (diskBytes / 1048576.0) / (s.readNanos / 1e9), s.reads / (s.readNanos / 1e9));
            out.printf("  %-10s %,10d ops %,12d KiB %10.1f MiB/s%n", "entropy", (random.length + 4095) / 4096,
                    random.length >> 10, (random.length / 1048576.0) / (rngNanos / 1e9));
            out.printf("  %-10s %,10d frm %,12d KiB %10.1f MiB/s %,10.0f frames/s%n", "net", ns.frames(),
                    ns.bytes() >> 10, (ns.bytes() / 1048576.0) / (ns.nanos() / 1e9), ns.frames() / (ns.nanos() / 1e9));
            out.printf("  %-10s %,10d ln  %,12d KiB %10.1f ms%n", "console", CONSOLE_LINES,
                    (CONSOLE_LINES * 64L) >> 10, consoleNanos / 1e6);
            out.printf("  %-34s %s%n", "frames arrived intact, in order",
                    ns.bad() == 0 ? "yes (all " + ns.frames() + ")" : "NO: " + ns.bad() + " bad");
            out.printf("  %-34s %s%n", "console echo matches", echoed ? "yes" : "NO");
            out.printf("  %-34s %s%n", "read-back CRC32C matches written", s.mismatches == 0 ? "yes (all "
                    + s.crcs.length + " chunks)" : "NO: " + s.mismatches + " chunks differ");
            out.printf("  %-34s %s%n", "image file bytes match", fileMatches ? "yes" : "NO");
            out.printf("  %-34s %,d%n", "interrupts delivered", machine.interruptsDelivered());
            backend.close();
            return s.mismatches == 0 && fileMatches && ns.bad() == 0 && echoed ? 0 : 1;
        } finally {
            if (temporary) {
                Files.deleteIfExists(image);
            }
        }
    }

    private record Stats(long writes, long reads, long writeNanos, long flushNanos, long readNanos, long[] crcs,
                         int mismatches) {
    }

    private static Stats runDisk(VirtioBlock disk, long bytes, int depth, int req, PrintStream err) throws Exception {
        int chunks = (int) (bytes / req);
        long[] crcs = new long[chunks];
        MemorySegment[] bufs = new MemorySegment[depth];
        for (int i = 0; i < depth; i++) {
            bufs[i] = disk.allocateBuffer(req);
        }
        java.util.Random rnd = new java.util.Random(2026);
        byte[] data = new byte[req];
        long t0 = System.nanoTime();
        Progress progress = new Progress(err, "write", chunks);
        List<CompletableFuture<Void>> window = new ArrayList<>();
        for (int c = 0; c < chunks; c++) {
            if (window.size() == depth) {
                window.removeFirst().get(30, TimeUnit.SECONDS);
            }
            MemorySegment b = bufs[c % depth];
            rnd.nextBytes(data);
            CRC32C crc = new CRC32C();
            crc.update(data);
            crcs[c] = crc.getValue();
            MemorySegment.copy(data, 0, b, java.lang.foreign.ValueLayout.JAVA_BYTE, 0, req);
            window.add(disk.write((long) c * req / 512, b));
            progress.update(c + 1);
        }
        for (CompletableFuture<Void> f : window) {
            f.get(30, TimeUnit.SECONDS);
        }
        long t1 = System.nanoTime();
        disk.flush().get(30, TimeUnit.SECONDS);
        long t2 = System.nanoTime();
        progress.done();

        int[] mismatches = new int[1];
        progress = new Progress(err, "read", chunks);
        List<CompletableFuture<Void>> reads = new ArrayList<>();
        for (int c = 0; c < chunks; c++) {
            if (reads.size() == depth) {
                reads.removeFirst().get(30, TimeUnit.SECONDS);
            }
            MemorySegment b = bufs[c % depth];
            int chunk = c;
            reads.add(disk.read((long) c * req / 512, b).thenRun(() -> {
                CRC32C crc = new CRC32C();
                crc.update(b.asByteBuffer());
                if (crc.getValue() != crcs[chunk]) {
                    synchronized (mismatches) {
                        mismatches[0]++;
                    }
                }
            }));
            progress.update(c + 1);
        }
        for (CompletableFuture<Void> f : reads) {
            f.get(30, TimeUnit.SECONDS);
        }
        long t3 = System.nanoTime();
        progress.done();
        for (MemorySegment b : bufs) {
            disk.freeBuffer(b);
        }
        return new Stats(chunks, chunks, t1 - t0, t2 - t1, t3 - t2, crcs, mismatches[0]);
    }

    static final int CONSOLE_LINES = 200;

    private record NetStats(long frames, long bytes, long nanos, long bad) {
    }

    /** Numbered frames from NIC a to NIC b across the switch; each checked for order and length. */
    private static NetStats runNet(VirtioNet a, VirtioNet b, int frames, PrintStream err) throws Exception {
        byte[] dst = b.mac();
        byte[] src = a.mac();
        // one broadcast each way so the switch learns both stations
        byte[] hello = new byte[60];
        java.util.Arrays.fill(hello, 0, 6, (byte) -1);
        System.arraycopy(src, 0, hello, 6, 6);
        a.send(hello);
        b.receive(5, TimeUnit.SECONDS);
        System.arraycopy(dst, 0, hello, 6, 6);
        b.send(hello);
        a.receive(5, TimeUnit.SECONDS);

        long[] bad = new long[1];
        long[] bytes = new long[1];
        java.util.concurrent.atomic.AtomicLong next = new java.util.concurrent.atomic.AtomicLong();
        java.util.concurrent.CountDownLatch done = new java.util.concurrent.CountDownLatch(1);
        b.onReceive(f -> {
            long seq = f.get(java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED, 14);
            if (seq != next.get() || f.byteSize() != 60 + (seq % 1455)) {
                bad[0]++;
            }
            bytes[0] += f.byteSize();
            if (next.incrementAndGet() == frames) {
                done.countDown();
            }
        });
        Progress progress = new Progress(err, "net", frames);
        byte[] frame = new byte[1514];
        System.arraycopy(dst, 0, frame, 0, 6);
        System.arraycopy(src, 0, frame, 6, 6);
        frame[12] = (byte) 0x88;
        frame[13] = (byte) 0xb5;
        MemorySegment fs = MemorySegment.ofArray(frame);
        long t0 = System.nanoTime();
        for (long i = 0; i < frames; i++) {
            // Ethernet drops under overload: keep fewer frames in flight than the receiving NIC can queue.
            while (i - next.get() >= NetDevice.INBOUND_LIMIT / 2) {
                Thread.onSpinWait();
            }
            fs.set(java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED, 14, i);
            a.send(fs.asSlice(0, 60 + (i % 1455)));
            progress.update(i + 1);
        }
        if (!done.await(30, TimeUnit.SECONDS)) {
            bad[0] += frames - next.get();
        }
        long nanos = System.nanoTime() - t0;
        progress.done();
        return new NetStats(frames, bytes[0], nanos, bad[0]);
    }

    /** Lines out through the console's transmit queue come back through its receive queue. */
    private static boolean runConsole(VirtioConsole c) throws Exception {
        StringBuilder sent = new StringBuilder();
        for (int i = 0; i < CONSOLE_LINES; i++) {
            sent.append(String.format("%-63s%n", "line " + i + " through virtio-console"));
        }
        byte[] out = sent.toString().getBytes(java.nio.charset.StandardCharsets.US_ASCII);
        c.output().write(out);
        c.output().flush();
        byte[] back = new byte[out.length];
        var in = c.input();
        int at = 0;
        while (at < back.length) {
            int n = in.read(back, at, back.length - at);
            if (n < 0) {
                return false;
            }
            at += n;
        }
        return java.util.Arrays.equals(out, back);
    }

    private static boolean compareFile(Path image, long[] crcs, int req) throws Exception {
        try (var in = Files.newInputStream(image)) {
            byte[] buf = new byte[req];
            for (long expected : crcs) {
                if (in.readNBytes(buf, 0, req) != req) {
                    return false;
                }
                CRC32C crc = new CRC32C();
                crc.update(buf);
                if (crc.getValue() != expected) {
                    return false;
                }
            }
        }
        return true;
    }

    /** A progress line on stderr, redrawn at most ten times a second. */
    private static final class Progress {
        private final PrintStream err;
        private final String what;
        private final long total;
        private long last;

        Progress(PrintStream err, String what, long total) {
            this.err = err;
            this.what = what;
            this.total = total;
        }

        void update(long done) {
            long now = System.nanoTime();
            if (now - last > 100_000_000L || done == total) {
                last = now;
                err.printf("\r  %-6s %,d / %,d (%d%%)   ", what, done, total, done * 100 / total);
            }
        }

        void done() {
            err.println();
        }
    }
}
