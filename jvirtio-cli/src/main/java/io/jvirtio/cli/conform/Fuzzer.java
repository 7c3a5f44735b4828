package io.jvirtio.cli.conform;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.os.NativeException;
import io.jvirtio.core.os.Posix;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.vhostuser.Message;
import io.jvirtio.vhostuser.VhostUser;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * Seeded fuzzing of a vhost-user back-end: each session is a stream of messages — the protocol's own
 * requests with edge values, wrong sizes, stray or missing descriptors, unknown requests — sometimes after a
 * real ring whose descriptors are random bytes, and then a disconnect. Session {@code k} of a run with seed
 * {@code S} uses seed {@code S + k}, so every failure is replayed by {@code --fuzz 1 --seed S+k}.
 *
 * <p>After every session: a fresh connection must be served, and when the back-end's pid is known its
 * descriptors and guest-memory mappings must come back to where they were, and its RSS must stay bounded.
 */
public final class Fuzzer {
    static final int[] REQUESTS = {VhostUser.GET_FEATURES, VhostUser.SET_FEATURES, VhostUser.SET_OWNER,
            VhostUser.RESET_OWNER, VhostUser.SET_MEM_TABLE, VhostUser.SET_VRING_NUM, VhostUser.SET_VRING_ADDR,
            VhostUser.SET_VRING_BASE, VhostUser.GET_VRING_BASE, VhostUser.SET_VRING_KICK, VhostUser.SET_VRING_CALL,
            VhostUser.SET_VRING_ERR, VhostUser.GET_PROTOCOL_FEATURES, VhostUser.SET_PROTOCOL_FEATURES,
            VhostUser.GET_QUEUE_NUM, VhostUser.SET_VRING_ENABLE, VhostUser.GET_CONFIG, VhostUser.SET_CONFIG,
            VhostUser.GET_INFLIGHT_FD, VhostUser.SET_INFLIGHT_FD, VhostUser.RESET_DEVICE};
    static final long RSS_SLACK = 256L << 20;

    private final Path socket;
    private final DeviceType device;
    private final long pid;
    private final PrintStream out;

    /** @param pid the back-end's process id for the descriptor, mapping and RSS oracles, or -1 */
    public Fuzzer(Path socket, DeviceType device, long pid, PrintStream out) {
        this.socket = socket;
        this.device = device;
        this.pid = pid;
        this.out = out;
    }

    /** Runs {@code sessions} sessions from {@code seed}; returns one FAIL result per broken oracle. */
    public List<Result> run(int sessions, long seed) throws Exception {
        List<Result> failures = new ArrayList<>();
        Grader.target(socket, device); // the back-end is there and speaks vhost-user
        settle();
        Baseline base = pid < 0 ? null : baseline();
        long started = System.nanoTime();
        for (int k = 0; k < sessions; k++) {
            long s = seed + k;
            String problem;
            try {
                session(new Random(s));
                problem = check(base);
            } catch (Exception e) {
                problem = "fuzzer error " + e;
            }
            if (problem != null) {
                // The session alone replays with its own seed; a back-end that keeps state across
                // connections may need the sessions before it as well.
                Result r = Result.fail("fuzz-" + k, "seed " + s + ": " + problem + " (replay: --fuzz 1 --seed " + s
                        + (k > 0 ? "; with the sessions before it: --fuzz " + (k + 1) + " --seed " + seed : "") + ")");
                failures.add(r);
                out.printf("%-4s %-26s %s%n", r.status(), r.id(), r.detail());
                if (Grader.alive(socket) != null) {
                    break; // nothing more can be learnt from a dead back-end
                }
                base = pid < 0 ? null : baseline();
            }
            if ((k + 1) % 100 == 0 || k + 1 == sessions) {
                out.printf("fuzz: %d/%d sessions, %d failures, %.1f s%n", k + 1, sessions, failures.size(),
                        (System.nanoTime() - started) / 1e9);
            }
        }
        return failures;
    }

    record Baseline(long fds, long mappings, long rss) {
    }

    private Baseline baseline() throws IOException {
        return new Baseline(fds(), mappings(), rss());
    }

    private long fds() throws IOException {
        try (var s = Files.list(Path.of("/proc/" + pid + "/fd"))) {
            return s.count();
        }
    }

    private long mappings() throws IOException {
        return Files.readAllLines(Path.of("/proc/" + pid + "/maps")).stream()
                .filter(l -> l.contains("memfd:") && !l.contains("jvirtio-inflight")).count();
    }

    private long rss() throws IOException {
        for (String l : Files.readAllLines(Path.of("/proc/" + pid + "/status"))) {
            if (l.startsWith("VmRSS:")) {
                return Long.parseLong(l.replaceAll("[^0-9]", "")) * 1024;
            }
        }
        return 0;
    }

    private static void settle() throws InterruptedException {
        Thread.sleep(20);
    }

    /** Null when every oracle holds after a session. */
    private String check(Baseline base) throws Exception {
        String dead = Grader.alive(socket);
        if (dead != null) {
            return dead;
        }
        if (base == null) {
            return null;
        }
        long deadline = System.nanoTime() + 3_000_000_000L;
        long fds, maps;
        do {
            settle();
            fds = fds();
            maps = mappings();
        } while ((fds > base.fds() || maps > base.mappings()) && System.nanoTime() < deadline);
        if (fds > base.fds()) {
            return "back-end holds " + (fds - base.fds()) + " more descriptors than before the session";
        }
        if (maps > base.mappings()) {
            return "back-end holds " + (maps - base.mappings()) + " more guest-memory mappings than before the session";
        }
        long rss = rss();
        if (rss > base.rss() + RSS_SLACK) {
            return "back-end RSS grew from " + (base.rss() >> 20) + " to " + (rss >> 20) + " MiB";
        }
        return null;
    }

    private void session(Random r) throws Exception {
        List<Integer> owned = new ArrayList<>();
        try (GuestMemory mem = GuestMemory.memfd(0, 1 << 20); Session s = Session.open(socket)) {
            if (r.nextBoolean()) {
                randomRing(r, s, mem, owned);
            }
            int n = 1 + r.nextInt(24);
            for (int i = 0; i < n; i++) {
                if (!send(r, s, mem, owned)) {
                    break; // the back-end hung up: that ends this session
                }
            }
        } finally {
            for (int fd : owned) {
                Posix.close(fd);
            }
        }
    }

    /** A well-formed ring 0 (so that the back-end really serves it) over descriptors of random bytes. */
    private void randomRing(Random r, Session s, GuestMemory mem, List<Integer> owned) throws Exception {
        long user = s.memTable(mem);
        byte[] junk = new byte[0x300];
        r.nextBytes(junk);
        mem.write(0x1000, junk, 0, junk.length);
        mem.writeU16(0x1102, (short) r.nextInt(20)); // avail.idx
        s.sendU64(VhostUser.SET_FEATURES, VhostUser.F_PROTOCOL_FEATURES | (1L << 32) | (r.nextBoolean() ? 1L << 28 : 0)
                | (r.nextBoolean() ? 1L << 29 : 0));
        s.send(VhostUser.SET_VRING_NUM, Message.vringState(0, 8 << r.nextInt(3)));
        s.send(VhostUser.SET_VRING_ADDR, ByteBuffer.allocate(40).order(ByteOrder.LITTLE_ENDIAN).putInt(0).putInt(0)
                .putLong(user + 0x1000).putLong(user + 0x1200).putLong(user + 0x1100).putLong(0).array());
        int kick = eventfd(owned);
        s.sendU64(VhostUser.SET_VRING_CALL, 0, eventfd(owned));
        s.sendU64(VhostUser.SET_VRING_KICK, 0, kick);
        s.send(VhostUser.SET_VRING_ENABLE, Message.vringState(0, 1));
        RawRing.signal(kick);
    }

    private static int eventfd(List<Integer> owned) throws NativeException {
        int fd = Posix.eventfd();
        owned.add(fd);
        return fd;
    }

    private static long edge(Random r) {
        return switch (r.nextInt(8)) {
            case 0 -> 0;
            case 1 -> 1;
            case 2 -> 0xffff;
            case 3 -> 0x1_0000;
            case 4 -> -1L;
            case 5 -> 1L << r.nextInt(64);
            case 6 -> r.nextInt(64);
            default -> r.nextLong();
        };
    }

    /** One message; false when the back-end has closed the connection. */
    private boolean send(Random r, Session s, GuestMemory mem, List<Integer> owned) throws Exception {
        int request = r.nextInt(10) < 8 ? REQUESTS[r.nextInt(REQUESTS.length)] : r.nextInt(64);
        int size = switch (request) {
            case VhostUser.SET_MEM_TABLE -> 8 + 32 * r.nextInt(3);
            case VhostUser.SET_VRING_ADDR -> 40;
            case VhostUser.GET_CONFIG, VhostUser.SET_CONFIG -> 12 + r.nextInt(64);
            case VhostUser.GET_INFLIGHT_FD, VhostUser.SET_INFLIGHT_FD -> 24;
            default -> 8;
        };
        if (r.nextInt(8) == 0) {
            size = r.nextInt(300);
        }
        ByteBuffer b = ByteBuffer.allocate(size).order(ByteOrder.LITTLE_ENDIAN);
        while (b.remaining() >= 8) {
            b.putLong(edge(r));
        }
        if (request == VhostUser.SET_VRING_NUM || request == VhostUser.SET_VRING_BASE
                || request == VhostUser.SET_VRING_ENABLE || request == VhostUser.GET_VRING_BASE) {
            if (size >= 8 && r.nextBoolean()) {
                b.putInt(0, r.nextInt(4)).putInt(4, (int) edge(r));
            }
        }
        if (request == VhostUser.SET_MEM_TABLE && size >= 8) {
            b.putInt(0, (size - 8) / 32);
        }
        int nfds = switch (request) {
            case VhostUser.SET_MEM_TABLE -> r.nextInt(3);
            case VhostUser.SET_VRING_KICK, VhostUser.SET_VRING_CALL, VhostUser.SET_VRING_ERR,
                 VhostUser.SET_INFLIGHT_FD -> r.nextInt(4) == 0 ? 0 : 1;
            default -> r.nextInt(10) == 0 ? 1 : 0;
        };
        int[] fds = new int[nfds];
        for (int i = 0; i < nfds; i++) {
            fds[i] = r.nextBoolean() ? eventfd(owned) : mem.region(0).fd();
        }
        int flags = r.nextInt(20) == 0 ? r.nextInt() : VhostUser.VERSION | (r.nextInt(3) == 0 ? VhostUser.FLAG_NEED_REPLY : 0);
        try {
            s.channel.write(new Message(request, flags, b.array(), fds));
        } catch (NativeException e) {
            return false; // EPIPE / ECONNRESET: closed by the back-end
        }
        if (s.channel.await(r.nextInt(4) == 0 ? 50 : 0)) {
            try {
                Message m = s.channel.read();
                if (m == null) {
                    return false;
                }
                for (int fd : m.fds()) {
                    Posix.close(fd); // a reply's descriptor (GET_INFLIGHT_FD) is ours to close
                }
                return true;
            } catch (Exception e) {
                return false;
            }
        }
        return true;
    }
}
