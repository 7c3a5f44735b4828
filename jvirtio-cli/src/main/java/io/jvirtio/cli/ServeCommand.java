package io.jvirtio.cli;

import io.jvirtio.core.device.VirtioDeviceModel;
import io.jvirtio.core.os.IoUring;
import io.jvirtio.devices.blk.AioEngine;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.BlockBackend;
import io.jvirtio.devices.blk.CacheMode;
import io.jvirtio.devices.blk.nbd.NbdBackend;
import io.jvirtio.devices.blk.nbd.NbdUri;
import io.jvirtio.devices.blk.FileBackend;
import io.jvirtio.devices.console.ConsoleDevice;
import io.jvirtio.devices.console.StreamBackend;
import io.jvirtio.devices.net.NetDevice;
import io.jvirtio.devices.net.Responder;
import io.jvirtio.devices.net.VirtualSwitch;
import io.jvirtio.devices.rng.RngDevice;
import io.jvirtio.vhostuser.VhostUserBackend;

import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Supplier;

/** {@code jvirtio serve TYPE}: a vhost-user back-end for QEMU (or any vhost-user front-end). */
final class ServeCommand implements Command {
    @Override
    public String name() {
        return "serve";
    }

    @Override
    public String summary() {
        return "serve a virtio device (blk, net, console, rng) to QEMU over vhost-user";
    }

    @Override
    public String usage() {
        return """
                Usage: jvirtio serve blk     (--socket PATH | --connect PATH) --image FILE [--readonly] [--queues N] [--cache MODE]
                                             [--aio ENGINE] [--poll-us N] [options]
                       jvirtio serve net     --socket PATH [--ip A.B.C.D] [options]
                       jvirtio serve console --socket PATH [options]
                       jvirtio serve rng     --socket PATH [options]

                Listens on a Unix socket and serves the device to each vhost-user front-end that connects,
                for example QEMU with shared guest memory:
                  -object memory-backend-memfd,id=mem,size=1G,share=on -numa node,memdev=mem
                  -chardev socket,id=c0,path=PATH -device vhost-user-blk-pci,chardev=c0
                  (net: -netdev vhost-user,id=n0,chardev=c0 -device virtio-net-pci,netdev=n0)
                A front-end that breaks the protocol loses its connection; the server keeps serving.
                With --connect PATH instead of --socket, the back-end connects to QEMU, which listens:
                  -chardev socket,id=c0,path=PATH,server=on,wait=off
                and connects again whenever the session ends: restart a crashed or upgraded back-end
                and the guest carries on (its requests in flight are redone from QEMU's in-flight buffer).
                SIGINT/SIGTERM stop it cleanly: devices stop, and for blk every completed write is
                flushed to the image before exit.

                blk:      --image FILE     raw disk image: a file or a block device (must exist), or an
                                           NBD export: nbd://HOST[:PORT]/EXPORT or
                                           nbd+unix:///EXPORT?socket=PATH (qemu-nbd for qcow2 and
                                           every other format, nbdkit, rbd-nbd)
                          --readonly       offer VIRTIO_BLK_F_RO; writes fail with IOERR
                          --queues N       request queues, 1..16 (default 1), each with its own ring and
                                           I/O path
                          --cache MODE     none (O_DIRECT), writeback (default) or writethrough, as
                                           QEMU's cache=; FLUSH is fdatasync in every mode, and the guest
                                           may switch the write cache (VIRTIO_BLK_F_CONFIG_WCE)
                          --aio ENGINE     io_uring, threads or auto (default: io_uring where the
                                           kernel allows it)
                          --threads N      threads per queue of the threads engine (default 16)
                          --poll-us N      busy-poll kicks and completions N µs before sleeping
                                           (default 0; lowest latency at depth 1, costs a core)
                          --nbd-reconnect SEC  how long to wait for a lost NBD server, sending the
                                           requests in flight again when it is back, before they
                                           fail with IOERR (default 60)
                net:      --ip A.B.C.D     a host on the switch answering ARP and ping (default 192.0.2.1);
                                           all connected guests share one switch
                console:  the guest's console is this process's stdin/stdout
                Options:  --stats SECONDS  print a statistics line every SECONDS (default 10, 0: never)
                          --control PATH   a control socket: jvirtio ctl PATH stats|connections|resize|
                                           drain|log-level (docs/operations.md)
                          -h, --help       this text

                Example:
                  jvirtio serve blk --socket /tmp/blk.sock --image disk.img
                """;
    }

    @Override
    public int run(List<String> args, PrintStream out, PrintStream err) throws Exception {
        if (args.isEmpty() || args.getFirst().startsWith("-")) {
            if (!args.isEmpty() && (args.getFirst().equals("--help") || args.getFirst().equals("-h"))) {
                out.print(usage());
                return 0;
            }
            throw new UsageException("which device? blk, net, console or rng");
        }
        String type = args.getFirst();
        Options o = new Options(args.subList(1, args.size()), Set.of("--socket", "--connect", "--control", "--image", "--queues", "--ip", "--stats",
                        "--cache", "--aio", "--threads", "--poll-us", "--nbd-reconnect"),
                Set.of("--readonly"));
        if (o.help()) {
            out.print(usage());
            return 0;
        }
        String socket = o.value("--socket");
        String connect = o.value("--connect");
        if ((socket == null) == (connect == null)) {
            throw new UsageException("give --socket PATH (listen) or --connect PATH (connect to QEMU), one of them");
        }
        if (socket == null) {
            socket = connect;
        }
        long statsEvery = o.number("--stats", 10, 0, 86400);
        Supplier<VirtioDeviceModel> devices;
        List<BlkDevice> liveDisks = new java.util.concurrent.CopyOnWriteArrayList<>();
        BlockBackend disk = null;
        Runnable stats;
        AutoCloseable resource = () -> { };
        switch (type) {
            case "blk" -> {
                String img = o.value("--image");
                if (img == null) {
                    throw new UsageException("serve blk needs --image FILE");
                }
                int queues = (int) o.number("--queues", 1, 1, 16);
                int threads = (int) o.number("--threads", FileBackend.DEFAULT_THREADS, 1, 1024);
                long pollNanos = o.number("--poll-us", 0, 0, 1_000_000) * 1000;
                long reconnectMs = o.number("--nbd-reconnect", NbdBackend.DEFAULT_RECONNECT_TIMEOUT_MS / 1000, 1,
                        86400) * 1000;
                CacheMode cache;
                AioEngine aio;
                try {
                    cache = CacheMode.parse(o.value("--cache") == null ? "writeback" : o.value("--cache"));
                    aio = AioEngine.parse(o.value("--aio") == null ? "auto" : o.value("--aio"));
                } catch (IllegalArgumentException e) {
                    throw new UsageException(e.getMessage());
                }
                BlockBackend file;
                if (NbdUri.isNbd(img)) {
                    NbdUri uri;
                    try {
                        uri = NbdUri.parse(img);
                    } catch (IllegalArgumentException e) {
                        throw new UsageException("--image " + e.getMessage());
                    }
                    try {
                        file = new NbdBackend(uri, reconnectMs);
                    } catch (java.io.IOException e) {
                        throw new UsageException("--image " + img + ": " + e.getMessage());
                    }
                } else {
                    Path image = Path.of(img);
                    if (!Files.exists(image)) {
                        throw new UsageException("--image " + img + ": no such file or device");
                    }
                    String noUring = aio == AioEngine.IO_URING ? IoUring.unavailableReason() : null;
                    if (noUring != null) {
                        throw new UsageException("--aio io_uring: io_uring is not usable here: " + noUring);
                    }
                    file = new FileBackend(image, o.flag("--readonly", false), cache, aio, threads, 0);
                }
                if (o.flag("--readonly", false) && !file.readOnly()) {
                    BlockBackend writable = file;
                    file = readOnlyView(writable);
                }
                BlockBackend served = file;
                BlkDevice[] last = new BlkDevice[1];
                devices = () -> {
                    BlkDevice d = new BlkDevice(served, queues, BlkDevice.DEFAULT_SIZE_MAX, pollNanos);
                    liveDisks.removeIf(BlkDevice::isClosed);
                    liveDisks.add(d);
                    return last[0] = d;
                };
                disk = served;
                stats = () -> {
                    BlkDevice d = last[0];
                    if (d != null) {
                        err.printf("blk: %,d reads (%,d MiB), %,d writes (%,d MiB), %,d flushes, %,d errors%n",
                                d.reads.sum(), d.bytesRead.sum() >> 20, d.writes.sum(), d.bytesWritten.sum() >> 20,
                                d.flushes.sum(), d.errors.sum());
                    }
                };
                resource = () -> {
                    if (served instanceof FileBackend f) {
                        f.flush();
                    }
                    served.close();
                };
                out.printf("serving %s (%,d sectors%s) as vhost-user-blk on %s%n", img, file.capacity() / 512,
                        file.readOnly() ? ", read-only" : "", socket);
                out.printf("  %s; %d queue(s)%s%n", file.describe(), queues,
                        pollNanos > 0 ? ", polling " + pollNanos / 1000 + " µs" : "");
            }
            case "net" -> {
                VirtualSwitch sw = new VirtualSwitch();
                byte[] ip = parseIp(o.value("--ip") == null ? "192.0.2.1" : o.value("--ip"));
                Responder responder = new Responder(sw, new byte[] {0x52, 0x54, 0, 0x4a, 0x56, 1}, ip);
                AtomicInteger n = new AtomicInteger(1); // 52:54:00:4a:56:01 is the responder
                devices = () -> new NetDevice(sw.port(), connectionMac(n.incrementAndGet()), 1);
                stats = () -> err.printf("net: %,d frames switched (%,d flooded), %,d ARP and %,d ping replies%n",
                        sw.forwarded() + sw.flooded(), sw.flooded(), responder.arpReplies.get(), responder.echoReplies.get());
                out.printf("serving vhost-user-net on %s; %s answers ARP and ping%n", socket, o.value("--ip") == null
                        ? "192.0.2.1" : o.value("--ip"));
            }
            case "console" -> {
                StreamBackend stdio = StreamBackend.stdio(); // one terminal: shared by every connection
                devices = () -> new ConsoleDevice(stdio, 80, 25);
                stats = () -> { };
                out.printf("serving vhost-user console on %s (this terminal is the guest's console)%n", socket);
            }
            case "rng" -> {
                devices = RngDevice::new;
                stats = () -> { };
                out.printf("serving vhost-user entropy on %s%n", socket);
            }
            default -> throw new UsageException("unknown device type '" + type + "' (blk, net, console, rng)");
        }
        CountDownLatch stopped = new CountDownLatch(1);
        AutoCloseable toClose = resource;
        java.util.concurrent.atomic.AtomicBoolean done = new java.util.concurrent.atomic.AtomicBoolean();
        String control = o.value("--control");
        try (VhostUserBackend backend = connect != null ? VhostUserBackend.connect(Path.of(connect), devices)
                : new VhostUserBackend(Path.of(socket), devices)) {
            Runnable shutdown = () -> {
                if (!done.compareAndSet(false, true)) {
                    return;
                }
                backend.close();
                try {
                    toClose.close();
                } catch (Exception e) {
                    err.println("jvirtio serve: closing: " + e.getMessage());
                }
                err.printf("jvirtio serve: stopped after %,d connection(s)%n", backend.connections());
                stats.run();
                stopped.countDown();
            };
            Runtime.getRuntime().addShutdownHook(new Thread(shutdown));
            ControlSocket controlSocket = control == null ? null : new ControlSocket(Path.of(control),
                    new ServeControl(type, backend, liveDisks, disk, () -> Thread.ofPlatform().start(shutdown)));
            if (controlSocket != null) {
                out.printf("control socket on %s%n", control);
            }
            while (!stopped.await(statsEvery == 0 ? 3600 : statsEvery, TimeUnit.SECONDS)) {
                if (statsEvery > 0) {
                    err.printf("connections: %,d (%d open), messages: %,d%n", backend.connections(),
                            backend.activeSessions(), backend.messages());
                    stats.run();
                }
            }
            if (controlSocket != null) {
                controlSocket.close();
            }
        }
        return 0;
    }

    /** {@code --readonly} over a writable back-end: the device offers VIRTIO_BLK_F_RO and refuses writes. */
    private static BlockBackend readOnlyView(BlockBackend b) {
        return new BlockBackend() {
            public long capacity() {
                return b.capacity();
            }

            public boolean readOnly() {
                return true;
            }

            public String id() {
                return b.id();
            }

            public boolean writeCache() {
                return b.writeCache();
            }

            public boolean watchesFds() {
                return b.watchesFds();
            }

            public io.jvirtio.devices.blk.BlockQueue open(int q, int depth, io.jvirtio.devices.blk.BlockCompletion c)
                    throws java.io.IOException {
                return b.open(q, depth, c);
            }

            public String describe() {
                return b.describe() + ", read-only";
            }

            public void close() throws java.io.IOException {
                b.close();
            }
        };
    }

    static byte[] parseIp(String s) throws UsageException {
        String[] parts = s.split("\\.");
        if (parts.length != 4) {
            throw new UsageException("--ip '" + s + "' is not an IPv4 address");
        }
        byte[] ip = new byte[4];
        for (int i = 0; i < 4; i++) {
            try {
                int v = Integer.parseInt(parts[i]);
                if (v < 0 || v > 255) {
                    throw new NumberFormatException();
                }
                ip[i] = (byte) v;
            } catch (NumberFormatException e) {
                throw new UsageException("--ip '" + s + "' is not an IPv4 address");
            }
        }
        return ip;
    }

    /**
     * The MAC of the NIC of connection {@code n}: locally administered 52:54:01 (the responder is 52:54:00:…)
     * and 24 bits of connection number, so addresses repeat only after 16 million connections, not 254.
     */
    static byte[] connectionMac(int n) {
        return new byte[] {0x52, 0x54, 0x01, (byte) (n >>> 16), (byte) (n >>> 8), (byte) n};
    }
}
