package io.jvirtio.cli;

import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

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
                       jvirtio serve net     --socket PATH [--ip A.B.C.D] [--tap NAME | --tap-per-connection TEMPLATE]
                                             [--queues N] [--poll-us N [--pollers N]] [--generate BYTES] [options]
                       jvirtio serve console --socket PATH [options]
                       jvirtio serve rng     --socket PATH [options]
                       jvirtio serve --export TYPE,socket=PATH[,KEY=VALUE...] [--export ...] [options]

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
                          --tap NAME       plug host TAP device NAME (created if absent) into the switch:
                                           the guests reach the host's network stack, and through a
                                           bridge or routing the world (needs CAP_NET_ADMIN)
                          --tap-per-connection TEMPLATE  no switch: each guest gets a TAP device of
                                           its own, e.g. jv%d (the kernel numbers it), as QEMU's -netdev
                                           tap; it disappears when the guest disconnects
                          --queues N       receive/transmit queue pairs, 1..64 (default 1), each pair
                                           on its own threads (VIRTIO_NET_F_MQ; QEMU: -netdev vhost-user,
                                           ...,queues=N -device virtio-net-pci,mq=on)
                          --poll-us N      one thread serves every NIC's queues by busy-polling their
                                           rings, and reads their TAP devices, sleeping after N µs without
                                           work (default 0: a thread per queue, woken by kicks); no kicks,
                                           no wake-ups, costs a core
                          --pollers N      with --poll-us: N polling threads, 1..64 (default 1), the NICs'
                                           queue pairs spread over them in turn (one core each)
                          --generate BYTES a traffic source on the switch, as testpmd's txonly: IPv4/UDP
                                           frames of BYTES (60..9014) broadcast to every guest as fast as
                                           they take them, to measure a front-end's receive path (not
                                           with --tap: the frames would flood the host)
                console:  the guest's console is this process's stdin/stdout
                Many devices in one process: one --export per device, each on its own socket (or
                connect=PATH), with the keys of the options above: blk: image, readonly, queues, cache,
                aio, threads, poll-us, nbd-reconnect; net: ip, tap (all net exports share one switch),
                tap-per-connection, queues, poll-us, pollers, generate. For
                example: --export blk,socket=/run/a.sock,image=a.img --export blk,socket=/run/b.sock,
                image=b.img,cache=none --export net,socket=/run/n.sock. The control socket adds and
                removes exports at run time (export-add, export-del).
                Options:  --stats SECONDS  print a statistics line every SECONDS (default 10, 0: never)
                          --control PATH   a control socket: jvirtio ctl PATH stats|connections|resize|
                                           export-add|export-del|drain|log-level (docs/operations.md)
                          -h, --help       this text

                Example:
                  jvirtio serve blk --socket /tmp/blk.sock --image disk.img
                """;
    }

    @Override
    public int run(List<String> args, PrintStream out, PrintStream err) throws Exception {
        if (args.isEmpty()) {
            throw new UsageException("which device? blk, net, console or rng (or --export TYPE,socket=PATH,...)");
        }
        if (args.getFirst().equals("--help") || args.getFirst().equals("-h")) {
            out.print(usage());
            return 0;
        }
        boolean exports = args.getFirst().startsWith("--");
        String type = exports ? null : args.getFirst();
        Options o = new Options(exports ? args : args.subList(1, args.size()), Set.of("--socket", "--connect", "--control",
                "--image", "--queues", "--ip", "--tap", "--tap-per-connection", "--stats", "--cache", "--aio", "--threads",
                "--poll-us", "--pollers", "--nbd-reconnect", "--export", "--generate"), Set.of("--readonly"));
        if (o.help()) {
            out.print(usage());
            return 0;
        }
        List<Map<String, String>> specs = new ArrayList<>();
        try {
            if (exports) {
                if (o.values("--export").isEmpty()) {
                    throw new UsageException("which device? blk, net, console or rng (or --export TYPE,socket=PATH,...)");
                }
                for (String spec : o.values("--export")) {
                    specs.add(Export.parse(spec));
                }
            } else {
                specs.add(legacySpec(type, o));
            }
        } catch (IllegalArgumentException e) {
            throw new UsageException(e.getMessage());
        }
        long statsEvery = o.number("--stats", 10, 0, 86400);
        Shared shared = new Shared();
        Map<String, Export> served = new java.util.LinkedHashMap<>();
        try {
            for (Map<String, String> spec : specs) {
                Export e = Export.open(spec, shared);
                served.put(e.socket, e);
                out.println("serving " + e.describe());
            }
        } catch (IllegalArgumentException e) {
            closeAll(served, err);
            shared.close();
            throw new UsageException(e.getMessage());
        }
        CountDownLatch stopped = new CountDownLatch(1);
        java.util.concurrent.atomic.AtomicBoolean done = new java.util.concurrent.atomic.AtomicBoolean();
        Runnable report = () -> {
            synchronized (served) {
                for (Export e : served.values()) {
                    err.println(e.line());
                }
            }
            Shared.Net net = shared.netIfAny();
            if (net != null) {
                err.printf("net: %,d frames switched (%,d flooded, %,d finished in software for a receiver without"
                                + " the offload, %,d refused, %,d over several buffers copied once from where they"
                                + " lay), %,d ARP and %,d ping replies%n",
                        net.sw().forwarded() + net.sw().flooded(), net.sw().flooded(), net.sw().finished(),
                        net.sw().refused(), net.sw().gathered(), net.responder().arpReplies.get(),
                        net.responder().echoReplies.get());
                if (net.generator() != null) {
                    err.printf("net: %,d frames of %d bytes generated%n", net.generator().sent(), net.generator().frameBytes());
                }
            }
        };
        Runnable shutdown = () -> {
            if (!done.compareAndSet(false, true)) {
                return;
            }
            long connections;
            synchronized (served) {
                connections = served.values().stream().mapToLong(e -> e.backend.connections()).sum();
                closeAll(served, err);
            }
            err.printf("jvirtio serve: stopped after %,d connection(s)%n", connections);
            report.run();
            shared.close();
            stopped.countDown();
        };
        Runtime.getRuntime().addShutdownHook(new Thread(shutdown));
        String control = o.value("--control");
        ControlSocket controlSocket = control == null ? null : new ControlSocket(Path.of(control),
                new ServeControl(served, shared, () -> Thread.ofPlatform().start(shutdown)));
        if (controlSocket != null) {
            out.printf("control socket on %s%n", control);
        }
        while (!stopped.await(statsEvery == 0 ? 3600 : statsEvery, TimeUnit.SECONDS)) {
            if (statsEvery > 0) {
                report.run();
            }
        }
        if (controlSocket != null) {
            controlSocket.close();
        }
        return 0;
    }

    /** {@code serve TYPE --socket PATH --image FILE …}: the one-export shorthand, as a spec. */
    private static Map<String, String> legacySpec(String type, Options o) throws UsageException {
        Map<String, String> spec = new java.util.LinkedHashMap<>();
        spec.put("type", type);
        for (String key : List.of("socket", "connect", "image", "queues", "ip", "tap", "tap-per-connection", "cache", "aio",
                "threads", "poll-us", "pollers", "nbd-reconnect", "generate")) {
            String v = o.value("--" + key);
            if (v != null) {
                spec.put(key, v);
            }
        }
        if (o.flag("--readonly", false)) {
            spec.put("readonly", "true");
        }
        if (spec.get("socket") == null && spec.get("connect") == null) {
            throw new UsageException("give --socket PATH (listen) or --connect PATH (connect to QEMU), one of them");
        }
        if ("blk".equals(type) && spec.get("image") == null) {
            throw new UsageException("serve blk needs --image FILE");
        }
        return spec;
    }

    static void closeAll(Map<String, Export> served, PrintStream err) {
        for (Export e : served.values()) {
            try {
                e.close();
            } catch (Exception x) {
                err.println("jvirtio serve: closing " + e.socket + ": " + x.getMessage());
            }
        }
        served.clear();
    }
}
