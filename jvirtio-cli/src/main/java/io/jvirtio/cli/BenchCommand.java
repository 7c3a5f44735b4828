package io.jvirtio.cli;

import io.jvirtio.cli.bench.BlkLoad;
import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.drivers.blk.BlkDriver;
import io.jvirtio.drivers.blk.VirtioBlock;
import io.jvirtio.bus.VirtioBus;
import io.jvirtio.vhostuser.VhostUserFrontend;

import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/** {@code jvirtio bench blk}: a load generator for any vhost-user-blk back-end, through jvirtio's front-end. */
final class BenchCommand implements Command {
    private static final long BASE = 0x1_0000_0000L;

    @Override
    public String name() {
        return "bench";
    }

    @Override
    public String summary() {
        return "drive a vhost-user-blk back-end (jvirtio's, qemu-storage-daemon's, ...) and measure IOPS and latency";
    }

    @Override
    public String usage() {
        return """
                Usage: jvirtio bench blk --socket PATH [--rw PATTERN] [--bs BYTES] [--iodepth N] [--runtime SEC]
                                         [--size BYTES] [--queues N] [--json]

                Connects to a vhost-user-blk back-end as a front-end (shared memory, jvirtio's virtio-blk driver)
                and keeps IODEPTH requests in flight for RUNTIME seconds, as fio does with a real disk: a progress
                line every second, then
                  <rw> bs=<bs> iodepth=<n>: <N> IOPS, <MiB/s>, p50 <µs>, p99 <µs>, p99.9 <µs>
                Latency is from submission to completion, recorded in an HdrHistogram.

                  --socket PATH    the back-end's vhost-user socket (required)
                  --rw PATTERN     randread (default), randwrite, read, write or randrw (half reads)
                  --bs BYTES       request size, a multiple of 512 (default 4k; suffixes k, m)
                  --iodepth N      requests in flight, 1..1024 (default 1)
                  --runtime SEC    how long to measure (default 10)
                  --size BYTES     use only the first BYTES of the disk (default: all; suffixes k, m, g)
                  --queues N       spread the requests over N request queues, if the back-end has them
                                   (default 1)
                  --json           print the result as one JSON object instead of the line
                  -h, --help       this text

                Example (against qemu-storage-daemon, then jvirtio, on the same image):
                  qemu-storage-daemon --blockdev driver=file,node-name=f,filename=disk.img,aio=native,cache.direct=on \\
                    --export type=vhost-user-blk,id=e,node-name=f,writable=on,addr.type=unix,addr.path=/tmp/q.sock &
                  jvirtio bench blk --socket /tmp/q.sock --rw randread --iodepth 32 --runtime 20
                  jvirtio serve blk --socket /tmp/j.sock --image disk.img --cache none &
                  jvirtio bench blk --socket /tmp/j.sock --rw randread --iodepth 32 --runtime 20
                Writes overwrite the disk's contents.
                """;
    }

    @Override
    public int run(List<String> args, PrintStream out, PrintStream err) throws Exception {
        if (args.isEmpty() || args.getFirst().startsWith("-")) {
            if (!args.isEmpty() && (args.getFirst().equals("--help") || args.getFirst().equals("-h"))) {
                out.print(usage());
                return 0;
            }
            throw new UsageException("what to drive? blk");
        }
        if (!args.getFirst().equals("blk")) {
            throw new UsageException("unknown device type '" + args.getFirst() + "' (blk)");
        }
        Options o = new Options(args.subList(1, args.size()),
                Set.of("--socket", "--rw", "--bs", "--iodepth", "--runtime", "--size", "--queues"), Set.of("--json"));
        if (o.help()) {
            out.print(usage());
            return 0;
        }
        String socket = o.value("--socket");
        if (socket == null) {
            throw new UsageException("--socket PATH is required");
        }
        if (!Files.exists(Path.of(socket))) {
            throw new UsageException("--socket " + socket + ": no such socket");
        }
        BlkLoad.Pattern pattern;
        try {
            pattern = BlkLoad.Pattern.parse(o.value("--rw") == null ? "randread" : o.value("--rw"));
        } catch (IllegalArgumentException e) {
            throw new UsageException(e.getMessage());
        }
        int bs = (int) bytes(o, "--bs", 4096, 512, 64L << 20);
        int depth = (int) o.number("--iodepth", 1, 1, 1024);
        long runtime = o.number("--runtime", 10, 1, 86400);
        long size = bytes(o, "--size", 0, 0, Long.MAX_VALUE);
        int queues = (int) o.number("--queues", 1, 1, 64);
        boolean json = o.flag("--json", false);

        long memBytes = (64L << 20) + (long) depth * bs;
        try (GuestMemory memory = GuestMemory.memfd(BASE, memBytes);
             VhostUserFrontend frontend = VhostUserFrontend.connect(Path.of(socket), memory,
                     new GuestAllocator(memory, BASE, memBytes))) {
            VirtioBus bus = new VirtioBus();
            BlkDriver driver = new BlkDriver();
            bus.registerDriver(driver);
            bus.registerDevice(DeviceType.BLOCK.id(), frontend);
            if (driver.disks().isEmpty()) {
                err.println("jvirtio bench: the back-end on " + socket + " was not driven as a disk (see the log)");
                return 1;
            }
            VirtioBlock disk = driver.disks().getFirst();
            BlkLoad load;
            try {
                load = new BlkLoad(disk, pattern, bs, depth, queues, size);
            } catch (IllegalArgumentException e) {
                throw new UsageException(e.getMessage());
            }
            if (!json) {
                out.printf("%s: %,d MiB, %d queue(s) of which %d used; %s bs=%d iodepth=%d for %d s%n", socket,
                        disk.capacitySectors() >> 11, disk.queueCount(), Math.min(queues, disk.queueCount()),
                        pattern.name().toLowerCase(Locale.ROOT), bs, depth, runtime);
            }
            long[] second = {0};
            BlkLoad.Result r = load.run(runtime, p -> {
                second[0]++;
                if (!json) {
                    err.printf(Locale.ROOT, "[%3d/%d s] %,.0f IOPS, %.1f MiB/s, p99 %.1f µs%s%n", second[0], runtime,
                            p.iops(), p.mibPerSecond(), p.p99us(), p.errors() > 0 ? ", " + p.errors() + " errors" : "");
                }
            });
            out.println(json ? r.json() : r.line());
            if (r.errors() > 0) {
                err.println("jvirtio bench: " + r.errors() + " requests failed; the first: " + r.firstError());
                return 1;
            }
            return 0;
        }
    }

    /** {@code --name} as a byte count ({@link ServeControl#parseBytes}), within {@code [min, max]}. */
    static long bytes(Options o, String name, long dflt, long min, long max) throws UsageException {
        String v = o.value(name);
        if (v == null) {
            return dflt;
        }
        long n;
        try {
            n = ServeControl.parseBytes(v);
        } catch (IllegalArgumentException e) {
            throw new UsageException(name + " " + e.getMessage());
        }
        if (n < min || n > max) {
            throw new UsageException(name + " " + v + " is not in " + min + ".." + max);
        }
        return n;
    }
}
