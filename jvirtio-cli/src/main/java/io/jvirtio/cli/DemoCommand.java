package io.jvirtio.cli;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.bus.VirtioDevice;
import io.jvirtio.core.spec.DeviceStatus;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.FileBackend;
import io.jvirtio.devices.rng.RngDevice;
import io.jvirtio.drivers.blk.BlkDriver;
import io.jvirtio.drivers.blk.VirtioBlock;
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

                Builds an in-process machine (guest RAM in a memfd, PCI bus 0, MSI-X), plugs a virtio
                block device backed by a real file and an entropy device, then plays the guest: the
                virtio-pci driver enumerates the bus (shown like lspci), the virtio bus negotiates
                features and probes the drivers (shown like /sys/bus/virtio/devices), and real work runs
                through every driver: the disk is written with random data, flushed, read back and
                checked against CRC32C checksums and against the file's own bytes; entropy is read.

                Options:
                  --disk-mb N        disk size in MiB (default 64)
                  --image PATH       disk image file (default: a temporary file, deleted after)
                  --depth N          requests in flight (default 32)
                  --request-kb N     bytes per request in KiB, 4..1024 (default 128)
                  --queues N         block request queues, 1..8 (default 2)
                  -h, --help         this text

                Example:
                  jvirtio demo --disk-mb 256 --depth 64
                """;
    }

    @Override
    public int run(List<String> args, PrintStream out, PrintStream err) throws Exception {
        Options o = new Options(args, Set.of("--disk-mb", "--image", "--depth", "--request-kb", "--queues"), Set.of());
        if (o.help()) {
            out.print(usage());
            return 0;
        }
        long diskBytes = o.number("--disk-mb", 64, 1, 1 << 20) << 20;
        int depth = (int) o.number("--depth", 32, 1, 1024);
        int requestBytes = (int) o.number("--request-kb", 128, 4, 1024) << 10;
        int queues = (int) o.number("--queues", 2, 1, 8);
        String imageArg = o.value("--image");
        Path image = imageArg != null ? Path.of(imageArg) : Files.createTempFile("jvirtio-demo-", ".img");
        boolean temporary = imageArg == null;
        try (Machine machine = new Machine(256L << 20)) {
            FileBackend backend = FileBackend.create(image, diskBytes);
            machine.plug(new BlkDevice(backend, queues));
            machine.plug(new RngDevice());

            VirtioBus bus = new VirtioBus();
            BlkDriver blk = new BlkDriver();
            RngDriver rng = new RngDriver();
            bus.registerDriver(blk);
            bus.registerDriver(rng);
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
            out.printf("  %-34s %s%n", "read-back CRC32C matches written", s.mismatches == 0 ? "yes (all "
                    + s.crcs.length + " chunks)" : "NO: " + s.mismatches + " chunks differ");
            out.printf("  %-34s %s%n", "image file bytes match", fileMatches ? "yes" : "NO");
            out.printf("  %-34s %,d%n", "interrupts delivered", machine.interruptsDelivered());
            backend.close();
            return s.mismatches == 0 && fileMatches ? 0 : 1;
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
