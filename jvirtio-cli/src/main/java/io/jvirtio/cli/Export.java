package io.jvirtio.cli;

import io.jvirtio.core.device.VirtioDeviceModel;
import io.jvirtio.core.os.IoUring;
import io.jvirtio.devices.blk.AioEngine;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.BlockBackend;
import io.jvirtio.devices.blk.BlockCompletion;
import io.jvirtio.devices.blk.BlockQueue;
import io.jvirtio.devices.blk.CacheMode;
import io.jvirtio.devices.blk.FileBackend;
import io.jvirtio.devices.blk.nbd.NbdBackend;
import io.jvirtio.devices.blk.nbd.NbdUri;
import io.jvirtio.devices.PollerGroup;
import io.jvirtio.devices.console.ConsoleDevice;
import io.jvirtio.devices.net.NetDevice;
import io.jvirtio.devices.rng.RngDevice;
import io.jvirtio.vhostuser.VhostUserBackend;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Supplier;

/**
 * One device served on one socket: {@code TYPE,socket=PATH[,key=value…]} (or {@code connect=PATH}), as given
 * to {@code serve --export} or the control socket's {@code export-add}. Owns its vhost-user back-end and, for
 * blk, its disk; closing it ends its sessions and flushes and closes the disk.
 */
final class Export implements AutoCloseable {
    static final Set<String> BLK_KEYS = Set.of("socket", "connect", "image", "readonly", "queues", "cache", "aio",
            "threads", "poll-us", "nbd-reconnect");
    static final Set<String> NET_KEYS = Set.of("socket", "connect", "ip", "tap", "tap-per-connection", "queues",
            "poll-us", "pollers", "generate");
    static final Set<String> OTHER_KEYS = Set.of("socket", "connect");

    final String type;
    final String socket;
    final VhostUserBackend backend;
    /** blk: the disk and the devices currently serving it (one per connection). */
    final BlockBackend disk;
    final List<BlkDevice> disks;
    /** net: the NICs currently serving guests (one per connection). */
    final List<NetDevice> nics;
    private final String description;

    private Export(String type, String socket, boolean connecting, Supplier<VirtioDeviceModel> devices, BlockBackend disk,
                   List<BlkDevice> disks, List<NetDevice> nics, String description) throws IOException {
        this.disks = disks;
        this.nics = nics;
        this.type = type;
        this.socket = socket;
        this.disk = disk;
        this.description = description;
        this.backend = connecting ? VhostUserBackend.connect(Path.of(socket), devices)
                : new VhostUserBackend(Path.of(socket), devices);
    }

    /** Parses {@code TYPE,key=value,…}; the message names the bad part. */
    static Map<String, String> parse(String spec) {
        String[] parts = spec.split(",");
        Map<String, String> m = new LinkedHashMap<>();
        m.put("type", parts[0].trim());
        for (int i = 1; i < parts.length; i++) {
            int eq = parts[i].indexOf('=');
            String key = (eq < 0 ? parts[i] : parts[i].substring(0, eq)).trim();
            String value = eq < 0 ? "true" : parts[i].substring(eq + 1).trim();
            if (key.isEmpty() || m.containsKey(key)) {
                throw new IllegalArgumentException("export '" + spec + "': bad or repeated key '" + parts[i] + "'");
            }
            m.put(key, value);
        }
        return m;
    }

    /** Opens the export {@code spec} describes; {@code shared} holds what exports of a process share. */
    static Export open(Map<String, String> spec, Shared shared) throws IOException {
        String type = spec.get("type");
        Set<String> keys = switch (type) {
            case "blk" -> BLK_KEYS;
            case "net" -> NET_KEYS;
            case "console", "rng" -> OTHER_KEYS;
            default -> throw new IllegalArgumentException("unknown device type '" + type + "' (blk, net, console, rng)");
        };
        for (String k : spec.keySet()) {
            if (!k.equals("type") && !keys.contains(k)) {
                throw new IllegalArgumentException(type + " export: unknown key '" + k + "' (" + String.join(", ", keys) + ")");
            }
        }
        String socket = spec.get("socket");
        String connect = spec.get("connect");
        if ((socket == null) == (connect == null)) {
            throw new IllegalArgumentException(type + " export: give socket=PATH (listen) or connect=PATH (connect to QEMU), one of them");
        }
        String path = socket != null ? socket : connect;
        return switch (type) {
            case "blk" -> blk(spec, path, connect != null);
            case "net" -> net(spec, path, connect != null, shared);
            case "console" -> new Export(type, path, connect != null, () -> new ConsoleDevice(shared.stdio(), 80, 25), null,
                    List.of(), List.of(),
                    "vhost-user console on " + path + " (this terminal is the guest's console)");
            default -> new Export(type, path, connect != null, RngDevice::new, null, List.of(), List.of(),
                    "vhost-user entropy on " + path);
        };
    }

    /**
     * A NIC per connection: on the process's switch (with its responder, and its TAP uplink with tap=NAME),
     * or with tap-per-connection=TEMPLATE on a TAP device of its own, as QEMU's {@code -netdev tap}.
     */
    private static Export net(Map<String, String> spec, String path, boolean connecting, Shared shared) throws IOException {
        int pairs = (int) number(spec, "queues", 1, 1, 64);
        long pollNanos = number(spec, "poll-us", 0, 0, 1_000_000) * 1000;
        int threads = (int) number(spec, "pollers", 1, 1, 64);
        if (spec.containsKey("pollers") && pollNanos == 0) {
            throw new IllegalArgumentException("net export: pollers=" + threads + " are polling threads: give poll-us=N too");
        }
        PollerGroup poller = shared.netPollers(pollNanos, threads);
        String queues = (pairs == 1 ? "" : ", " + pairs + " queue pairs") + (poller == null ? ""
                : ", queues polled by " + (threads == 1 ? "one thread" : threads + " threads") + " ("
                + pollNanos / 1000 + " µs before sleeping)");
        String own = spec.get("tap-per-connection");
        if (own != null) {
            if (spec.containsKey("tap") || spec.containsKey("ip") || spec.containsKey("generate")) {
                throw new IllegalArgumentException("net export: tap-per-connection gives each guest its own TAP device,"
                        + " without the switch: it does not go with tap=, ip= or generate=");
            }
            Shared.openTap(own).close(); // fail now, naming what is missing, rather than at each connection
            Shared.Net net = shared.net(null, null, null, null);
            List<NetDevice> live = new CopyOnWriteArrayList<>();
            return new Export("net", path, connecting, () -> track(live, net.deviceOnOwnTap(own, pairs).pollWith(poller)), null,
                    List.of(), live, "vhost-user-net on " + path + queues + "; each guest gets its own TAP device " + own);
        }
        Shared.Net net = shared.net(spec.get("ip"), spec.get("tap"), spec.get("generate"), poller);
        String uplink = net.tap() == null ? "" : "; host TAP device " + net.tap().name() + " is on the switch (bring it up:"
                + " ip link set " + net.tap().name() + " up, then address it or add it to a bridge)";
        String source = net.generator() == null ? "" : "; " + net.generator().frameBytes()
                + "-byte UDP frames are broadcast to every guest, as fast as they take them";
        List<NetDevice> live = new CopyOnWriteArrayList<>();
        return new Export("net", path, connecting, () -> track(live, net.device(pairs).pollWith(poller)), null, List.of(), live,
                "vhost-user-net on " + path + queues + "; " + net.ip() + " answers ARP and ping" + uplink + source);
    }

    private static Export blk(Map<String, String> spec, String path, boolean connecting) throws IOException {
        String img = spec.get("image");
        if (img == null) {
            throw new IllegalArgumentException("blk export needs image=FILE");
        }
        int queues = (int) number(spec, "queues", 1, 1, 16);
        int threads = (int) number(spec, "threads", FileBackend.DEFAULT_THREADS, 1, 1024);
        long pollNanos = number(spec, "poll-us", 0, 0, 1_000_000) * 1000;
        long reconnectMs = number(spec, "nbd-reconnect", NbdBackend.DEFAULT_RECONNECT_TIMEOUT_MS / 1000, 1, 86400) * 1000;
        boolean readOnly = Boolean.parseBoolean(spec.getOrDefault("readonly", "false"));
        CacheMode cache = CacheMode.parse(spec.getOrDefault("cache", "writeback"));
        AioEngine aio = AioEngine.parse(spec.getOrDefault("aio", "auto"));
        BlockBackend file;
        if (NbdUri.isNbd(img)) {
            NbdUri uri = NbdUri.parse(img);
            try {
                file = new NbdBackend(uri, reconnectMs);
            } catch (IOException e) {
                throw new IllegalArgumentException("image " + img + ": " + e.getMessage(), e);
            }
        } else {
            Path image = Path.of(img);
            if (!Files.exists(image)) {
                throw new IllegalArgumentException("image " + img + ": no such file or device");
            }
            String noUring = aio == AioEngine.IO_URING ? IoUring.unavailableReason() : null;
            if (noUring != null) {
                throw new IllegalArgumentException("aio io_uring: io_uring is not usable here: " + noUring);
            }
            file = new FileBackend(image, readOnly, cache, aio, threads, 0);
        }
        BlockBackend disk = readOnly && !file.readOnly() ? readOnlyView(file) : file;
        List<BlkDevice> live = new CopyOnWriteArrayList<>();
        Supplier<VirtioDeviceModel> devices = () -> {
            BlkDevice d = new BlkDevice(disk, queues, BlkDevice.DEFAULT_SIZE_MAX, pollNanos);
            live.removeIf(BlkDevice::isClosed);
            live.add(d);
            return d;
        };
        String description = String.format("%s (%,d sectors%s) as vhost-user-blk on %s%n  %s; %d queue(s)%s", img,
                disk.capacity() / 512, disk.readOnly() ? ", read-only" : "", path, disk.describe(), queues,
                pollNanos > 0 ? ", polling " + pollNanos / 1000 + " µs" : "");
        try {
            return new Export("blk", path, connecting, devices, disk, live, List.of(), description);
        } catch (IOException | RuntimeException e) {
            disk.close();
            throw e;
        }
    }

    /** A NIC made for a connection, counted in the statistics while it serves. */
    private static NetDevice track(List<NetDevice> live, NetDevice nic) {
        live.removeIf(NetDevice::isClosed);
        live.add(nic);
        return nic;
    }

    private static long number(Map<String, String> spec, String key, long dflt, long min, long max) {
        String v = spec.get(key);
        if (v == null) {
            return dflt;
        }
        try {
            long n = Long.parseLong(v);
            if (n < min || n > max) {
                throw new IllegalArgumentException(key + " " + v + " is out of range " + min + ".." + max);
            }
            return n;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(key + " '" + v + "' is not a number");
        }
    }

    /** What it serves, for the start-up lines. */
    String describe() {
        return description;
    }

    /** The counters of this export's live devices (blk), and its connections. */
    Map<String, Object> stats() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("type", type);
        m.put("socket", socket);
        m.put("connections", backend.connections());
        m.put("open", backend.activeSessions());
        m.put("messages", backend.messages());
        m.put("ring_errors", backend.ringErrors());
        if (disk != null) {
            m.put("capacity", disk.capacity());
            m.put("backend", disk.describe());
            List<Object> devices = new java.util.ArrayList<>();
            for (BlkDevice d : disks) {
                if (d.isClosed()) {
                    continue;
                }
                Map<String, Object> c = new LinkedHashMap<>();
                c.put("reads", d.reads.sum());
                c.put("writes", d.writes.sum());
                c.put("flushes", d.flushes.sum());
                c.put("bytes_read", d.bytesRead.sum());
                c.put("bytes_written", d.bytesWritten.sum());
                c.put("errors", d.errors.sum());
                c.put("write_cache", d.writeCacheEnabled());
                Map<String, Object> latency = new LinkedHashMap<>();
                latency.put("requests", d.latency.count());
                latency.put("p50_us", d.latency.percentile(50) / 1000.0);
                latency.put("p99_us", d.latency.percentile(99) / 1000.0);
                latency.put("p99_9_us", d.latency.percentile(99.9) / 1000.0);
                c.put("latency", latency);
                List<Object> queues = new java.util.ArrayList<>();
                for (io.jvirtio.devices.QueueThread.Stats q : d.queueStats()) {
                    Map<String, Object> qm = new LinkedHashMap<>();
                    qm.put("queue", q.index());
                    qm.put("in_flight", q.inFlight());
                    qm.put("kicks", q.kicks());
                    qm.put("interrupts", q.interrupts());
                    qm.put("interrupts_suppressed", q.suppressed());
                    queues.add(qm);
                }
                c.put("queues", queues);
                devices.add(c);
            }
            m.put("devices", devices);
        }
        if (type.equals("net")) {
            List<Object> devices = new java.util.ArrayList<>();
            for (NetDevice n : nics) {
                if (n.isClosed()) {
                    continue;
                }
                Map<String, Object> c = new LinkedHashMap<>();
                c.put("rx_frames", n.rxFrames());
                c.put("rx_read_direct", n.rxReadFrames());
                c.put("rx_queued", n.rxQueued.get());
                c.put("tx_frames", n.txFrames());
                c.put("rx_dropped", n.rxDropped.get());
                c.put("rx_filtered", n.rxFiltered.get());
                c.put("tx_dropped", n.txDropped.get());
                devices.add(c);
            }
            m.put("devices", devices);
        }
        return m;
    }

    /** The statistics line printed every {@code --stats} seconds. */
    String line() {
        StringBuilder b = new StringBuilder(type + " " + socket + ": " + backend.connections() + " connection(s), "
                + backend.activeSessions() + " open");
        long reads = 0;
        long writes = 0;
        long flushes = 0;
        long errors = 0;
        long bytesRead = 0;
        long bytesWritten = 0;
        for (BlkDevice d : disks) {
            reads += d.reads.sum();
            writes += d.writes.sum();
            flushes += d.flushes.sum();
            errors += d.errors.sum();
            bytesRead += d.bytesRead.sum();
            bytesWritten += d.bytesWritten.sum();
        }
        if (disk != null) {
            b.append(String.format("; blk: %,d reads (%,d MiB), %,d writes (%,d MiB), %,d flushes, %,d errors", reads,
                    bytesRead >> 20, writes, bytesWritten >> 20, flushes, errors));
        }
        if (type.equals("net")) {
            long in = 0;
            long read = 0;
            long queued = 0;
            long out = 0;
            long dropped = 0;
            for (NetDevice n : nics) {
                in += n.rxFrames();
                read += n.rxReadFrames();
                queued += n.rxQueued.get();
                out += n.txFrames();
                dropped += n.rxDropped.get() + n.txDropped.get();
            }
            b.append(String.format("; net: %,d frames to guests (%,d read straight into their buffers, %,d after"
                    + " waiting in their NIC's queue), %,d from them, %,d dropped", in, read, queued, out, dropped));
        }
        return b.toString();
    }

    /** Resizes a blk export's disk; every connected guest sees the new capacity. */
    Map<String, Object> resize(long bytes, boolean shrink) throws IOException {
        if (disk == null) {
            throw new IllegalArgumentException("resize: " + socket + " serves " + type + ", not blk");
        }
        long now = disk.capacity();
        long size = BlkDevice.resize(disk, bytes, shrink);
        for (BlkDevice d : disks) {
            if (!d.isClosed()) {
                d.capacityChanged();
            }
        }
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("capacity", size);
        m.put("previous", now);
        return m;
    }

    /** Ends its sessions (devices stop after their requests in flight), flushes and closes the disk. */
    @Override
    public void close() throws IOException {
        backend.close();
        if (disk instanceof FileBackend f) {
            f.flush();
        }
        if (disk != null) {
            disk.close();
        }
    }

    /** {@code readonly=true} over a writable back-end: the device offers VIRTIO_BLK_F_RO and refuses writes. */
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

            public BlockQueue open(int q, int depth, BlockCompletion c) throws IOException {
                return b.open(q, depth, c);
            }

            public String describe() {
                return b.describe() + ", read-only";
            }

            public void close() throws IOException {
                b.close();
            }
        };
    }
}
