package io.jvirtio.devices.net;

import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.DeviceHarness;
import io.jvirtio.devices.Poller;
import io.jvirtio.devices.PollerGroup;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * NICs whose queues one {@link Poller} serves: frames a driver makes available are sent without a kick while
 * the poller spins, a poller that slept wakes for a kick, and a device reset lets every queue go.
 */
class PolledNicTest {
    static final long FEATURES = Feature.maskOf(Feature.VERSION_1, Feature.NET_MAC);
    final List<DeviceHarness> harnesses = new ArrayList<>();
    Poller poller;

    @AfterEach
    void tearDown() {
        harnesses.forEach(DeviceHarness::close);
        if (poller != null) {
            poller.close();
        }
    }

    DeviceHarness nic(VirtualSwitch sw, int n) throws Exception {
        DeviceHarness h = new DeviceHarness(new NetDevice(sw.port(), new byte[] {0x52, 0x54, 0, 9, 9, (byte) n}, 1)
                .pollWith(poller), FEATURES);
        harnesses.add(h);
        return h;
    }

    static byte[] frame(int to, int from, int tag) {
        byte[] p = new byte[12 + 60];
        byte[] dst = {0x52, 0x54, 0, 9, 9, (byte) to};
        byte[] src = {0x52, 0x54, 0, 9, 9, (byte) from};
        System.arraycopy(dst, 0, p, 12, 6);
        System.arraycopy(src, 0, p, 18, 6);
        p[24] = 0x08;
        p[30] = (byte) tag;
        return p;
    }

    /** Makes {@code frames} available on the transmit queue, kicking or not; the tokens come back as used. */
    static void transmit(DeviceHarness h, List<byte[]> frames, boolean kick) throws Exception {
        DriverQueue<Object> tx = h.queues.get(1);
        for (byte[] f : frames) {
            long buf = h.alloc.allocate(f.length, 8);
            h.memory.write(buf, f, 0, f.length);
            assertThat(tx.addBuf(new Scatterlist().addReadable(buf, f.length), buf)).isTrue();
        }
        if (kick) {
            tx.kick();
        }
    }

    /** Tags of the frames {@code h}'s driver receives within {@code ms}, with {@code buffers} buffers posted. */
    static List<Integer> receive(DeviceHarness h, int buffers, int expected, long ms) throws Exception {
        DriverQueue<Object> rx = h.queues.get(0);
        for (int i = 0; i < buffers; i++) {
            long buf = h.alloc.allocate(2048, 8);
            rx.addInBuf(buf, 2048, buf);
        }
        rx.kick();
        return take(h, expected, ms);
    }

    @Test
    void whileThePollerSpinsFramesLeaveWithoutAKick() throws Exception {
        poller = new Poller("test-poller", TimeUnit.SECONDS.toNanos(30)); // never sleeps during the test
        VirtualSwitch sw = new VirtualSwitch();
        DeviceHarness a = nic(sw, 1);
        DeviceHarness b = nic(sw, 2);
        assertThat(poller.queueCount()).as("both NICs' receive and transmit queues").isEqualTo(4);
        List<Integer> got = new ArrayList<>();
        Thread.ofPlatform().start(() -> {
            try {
                got.addAll(receive(b, 16, 8, 5000));
            } catch (Exception e) {
                throw new RuntimeException(e);
            }
        });
        Thread.sleep(200); // b's buffers posted
        List<byte[]> frames = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            frames.add(frame(2, 1, i));
        }
        transmit(a, frames, false);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (got.size() < 8 && System.nanoTime() < deadline) {
            Thread.sleep(10);
        }
        assertThat(got).as("polled, not kicked: every frame, in order").containsExactly(0, 1, 2, 3, 4, 5, 6, 7);
    }

    /**
     * The poller writes what it switches straight into the other NIC's ring while serving the sender's and
     * publishes after that round; what cannot go in (no buffers) queues, and goes in before any later frame.
     * 200 frames, more than three rounds of the sender's ring, half of them sent while the receiver had buffers
     * for only some: all arrive, in order.
     */
    @Test
    void framesThePollerSwitchesBetweenItsRingsArriveCompleteAndInOrder() throws Exception {
        poller = new Poller("test-poller", TimeUnit.SECONDS.toNanos(30));
        VirtualSwitch sw = new VirtualSwitch();
        DeviceHarness a = nic(sw, 1);
        DeviceHarness b = nic(sw, 2);
        DriverQueue<Object> rx = b.queues.get(0);
        for (int i = 0; i < 60; i++) { // buffers for 60 of the first 100
            long buf = b.alloc.allocate(2048, 8);
            rx.addInBuf(buf, 2048, buf);
        }
        rx.kick();
        List<Integer> sent = new ArrayList<>();
        List<byte[]> first = new ArrayList<>();
        for (int i = 0; i < 100; i++) {
            first.add(frame(2, 1, i));
            sent.add((int) (byte) i);
        }
        transmit(a, first, false);
        List<Integer> got = new ArrayList<>(take(b, 60, 5000)); // 60 went straight in; 40 wait in b's queue
        for (int i = 0; i < 140; i++) {
            long buf = b.alloc.allocate(2048, 8);
            rx.addInBuf(buf, 2048, buf);
        }
        rx.kick();
        List<byte[]> second = new ArrayList<>();
        for (int i = 100; i < 200; i++) {
            second.add(frame(2, 1, i));
            sent.add((int) (byte) i);
        }
        transmit(a, second, false); // behind the 40 that waited, whichever round moves them
        got.addAll(take(b, 140, 5000));
        assertThat(got).as("every frame, in the order sent").containsExactlyElementsOf(sent);
    }

    /**
     * Two pollers (--pollers 2): each NIC's pairs go to them in turn from where the NIC before started — a NIC of two
     * pairs spans both, two one-pair NICs get one each — and a frame from one poller's ring to the other's waits in
     * the receiving NIC's queue for its poller, arriving complete and in order.
     */
    @Test
    void pairsSpreadOverSeveralPollersAndFramesCrossFromOneToTheOther() throws Exception {
        try (PollerGroup group = new PollerGroup("test-pollers", 2, TimeUnit.SECONDS.toNanos(30))) {
            VirtualSwitch sw = new VirtualSwitch();
            NetDevice two = new NetDevice(sw.port(), new byte[] {0x52, 0x54, 0, 9, 9, 3}, 2).pollWith(group);
            harnesses.add(new DeviceHarness(two, FEATURES | Feature.NET_MQ.mask() | Feature.NET_CTRL_VQ.mask()));
            assertThat(group.poller(0).queueCount()).as("poller 0: pair 0 of the two-pair NIC").isEqualTo(2);
            assertThat(group.poller(1).queueCount()).as("poller 1: its pair 1").isEqualTo(2);
            NetDevice na = new NetDevice(sw.port(), new byte[] {0x52, 0x54, 0, 9, 9, 1}, 1).pollWith(group);
            NetDevice nb = new NetDevice(sw.port(), new byte[] {0x52, 0x54, 0, 9, 9, 2}, 1).pollWith(group);
            DeviceHarness a = new DeviceHarness(na, FEATURES);
            harnesses.add(a);
            DeviceHarness b = new DeviceHarness(nb, FEATURES);
            harnesses.add(b);
            assertThat(group.poller(0).queueCount()).as("poller 0: and the next NIC's pair").isEqualTo(4);
            assertThat(group.poller(1).queueCount()).as("poller 1: and the one after").isEqualTo(4);
            DriverQueue<Object> rx = b.queues.get(0);
            for (int i = 0; i < 100; i++) {
                long buf = b.alloc.allocate(2048, 8);
                rx.addInBuf(buf, 2048, buf);
            }
            rx.kick();
            List<byte[]> frames = new ArrayList<>();
            List<Integer> sent = new ArrayList<>();
            for (int i = 0; i < 100; i++) {
                frames.add(frame(2, 1, i));
                sent.add((int) (byte) i);
            }
            transmit(a, frames, false);
            assertThat(take(b, 100, 5000)).as("every frame, in order, across pollers").containsExactlyElementsOf(sent);
            assertThat(nb.rxQueued.get()).as("each waited for the receiving ring's poller").isEqualTo(100);
        }
    }

    /** Tags of up to {@code n} frames {@code h}'s driver receives within {@code ms}, on buffers already posted. */
    static List<Integer> take(DeviceHarness h, int n, long ms) throws Exception {
        DriverQueue<Object> rx = h.queues.get(0);
        List<Integer> tags = new ArrayList<>();
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(ms);
        while (tags.size() < n && System.nanoTime() < deadline) {
            Object t = rx.getBuf();
            if (t == null) {
                Thread.sleep(1);
                continue;
            }
            byte[] f = new byte[rx.lastLength()];
            h.memory.read((Long) t, f, 0, f.length);
            tags.add((int) f[30]);
        }
        return tags;
    }

    /**
     * A traffic source in the poller's rounds ({@code serve net --generate}): its frames go straight into a
     * polled NIC's ring, as many as the driver offers buffers for.
     */
    @Test
    void aTrafficSourceInThePollersRoundsFillsAPolledRing() throws Exception {
        poller = new Poller("test-poller", TimeUnit.SECONDS.toNanos(30));
        VirtualSwitch sw = new VirtualSwitch();
        DeviceHarness b = nic(sw, 2);
        try (PacketGenerator g = new PacketGenerator(sw, 100, 0, poller)) {
            DriverQueue<Object> rx = b.queues.get(0);
            for (int i = 0; i < 64; i++) {
                long buf = b.alloc.allocate(2048, 8);
                rx.addInBuf(buf, 2048, buf);
            }
            rx.kick();
            int frames = 0;
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (frames < 64 && System.nanoTime() < deadline) {
                Object t = rx.getBuf();
                if (t == null) {
                    Thread.sleep(1);
                    continue;
                }
                assertThat(rx.lastLength()).as("header and the 100-byte frame").isEqualTo(12 + 100);
                byte[] f = new byte[100];
                b.memory.read((Long) t + 12, f, 0, 100);
                assertThat(java.util.Arrays.copyOfRange(f, 0, 6)).as("broadcast").containsOnly((byte) -1);
                assertThat(f[23]).as("UDP").isEqualTo((byte) 17);
                frames++;
            }
            assertThat(frames).as("every buffer offered filled").isEqualTo(64);
            assertThat(g.sent()).isGreaterThanOrEqualTo(64);
        }
    }

    /**
     * The traffic source's path as {@code serve net --generate --poll-us} runs it — switch, NIC on an offload port,
     * straight into the polled ring — allocates nothing per frame on the poller's thread.
     */
    @Test
    void thePollersPathFromTheTrafficSourceIntoARingAllocatesNothingPerFrame() throws Exception {
        poller = new Poller("alloc-poller", TimeUnit.SECONDS.toNanos(30));
        VirtualSwitch sw = new VirtualSwitch();
        DeviceHarness b = polledOffloadNic(sw, 2);
        java.util.function.LongSupplier allocated = allocatedBy("alloc-poller");
        DriverQueue<Object> rx = postReceiveBuffers(b);
        try (PacketGenerator g = new PacketGenerator(sw, 64, 0, poller)) {
            receiveAndRepost(rx, 200_000); // long enough for C2 on a busy machine
            long best = Long.MAX_VALUE; // the best of five rounds: a JIT recompilation may allocate meanwhile
            for (int round = 0; round < 5; round++) {
                long before = allocated.getAsLong();
                receiveAndRepost(rx, 100_000);
                best = Math.min(best, allocated.getAsLong() - before);
            }
            assertThat(best).as("bytes the poller allocated while 100,000 frames reached the driver").isLessThan(10_000);
        }
    }

    /** A NIC on an offload port of {@code sw}, served by the test's poller, as {@code serve net --poll-us} has it. */
    DeviceHarness polledOffloadNic(VirtualSwitch sw, int n) throws Exception {
        DeviceHarness h = new DeviceHarness(new NetDevice(sw.offloadPort(), new byte[] {0x52, 0x54, 0, 9, 9, (byte) n}, 1)
                .pollWith(poller), FEATURES);
        harnesses.add(h);
        return h;
    }

    /** 128 receive buffers of 256 bytes posted on {@code h}'s receive queue, the token of each its address. */
    static DriverQueue<Object> postReceiveBuffers(DeviceHarness h) throws Exception {
        DriverQueue<Object> rx = h.queues.get(0);
        for (int i = 0; i < 128; i++) {
            long buf = h.alloc.allocate(256, 8);
            rx.addInBuf(buf, 256, buf);
        }
        rx.kick();
        return rx;
    }

    /** Bytes the thread named {@code name} has allocated so far (the test is skipped where that is not counted). */
    static java.util.function.LongSupplier allocatedBy(String name) throws Exception {
        Object mx;
        java.lang.reflect.Method allocatedBytes;
        try { // through reflection, as VirtualSwitchTest: the module under test does not read java.management
            mx = Class.forName("java.lang.management.ManagementFactory").getMethod("getThreadMXBean").invoke(null);
            allocatedBytes = Class.forName("com.sun.management.ThreadMXBean").getMethod("getThreadAllocatedBytes", long.class);
        } catch (ReflectiveOperationException e) {
            org.junit.jupiter.api.Assumptions.abort("SKIPPED: no per-thread allocation counters here: " + e);
            return null;
        }
        long thread = Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().equals(name))
                .findFirst().orElseThrow().threadId();
        return () -> {
            try {
                return (long) allocatedBytes.invoke(mx, thread);
            } catch (ReflectiveOperationException e) {
                throw new IllegalStateException(e);
            }
        };
    }

    /**
     * A guest's frames to another's on the switch, both NICs polled on offload ports as {@code serve net --poll-us}
     * runs them: the frame goes from the sender's buffer (one buffer, an empty header) straight into the receiver's
     * ring — and the poller allocates nothing per frame on the way (no slice for the frame's offset either).
     */
    @Test
    void thePollersPathFromOneGuestsTransmitRingIntoAnothersAllocatesNothingPerFrame() throws Exception {
        poller = new Poller("tx-poller", TimeUnit.SECONDS.toNanos(30));
        VirtualSwitch sw = new VirtualSwitch();
        DeviceHarness a = polledOffloadNic(sw, 1);
        DeviceHarness b = polledOffloadNic(sw, 2);
        java.util.function.LongSupplier allocated = allocatedBy("tx-poller");
        DriverQueue<Object> rx = postReceiveBuffers(b);
        List<byte[]> frames = new ArrayList<>();
        for (int i = 0; i < 64; i++) {
            frames.add(frame(2, 1, i));
        }
        transmit(a, frames, true);
        DriverQueue<Object> tx = a.queues.get(1);
        Scatterlist sg = new Scatterlist();
        sendAndReceive(tx, rx, sg, 200_000); // long enough for C2 on a busy machine
        long best = Long.MAX_VALUE; // the best of five rounds: a JIT recompilation may allocate meanwhile
        for (int round = 0; round < 5; round++) {
            long before = allocated.getAsLong();
            sendAndReceive(tx, rx, sg, 100_000);
            best = Math.min(best, allocated.getAsLong() - before);
        }
        assertThat(best).as("bytes the poller allocated while 100,000 frames went from one guest to the other")
                .isLessThan(10_000);
    }

    /** Gives each transmitted buffer back to the ring as it is used and each received one as it arrives. */
    private static void sendAndReceive(DriverQueue<Object> tx, DriverQueue<Object> rx, Scatterlist sg, int frames)
            throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        for (int n = 0; n < frames; ) {
            Object sent = tx.getBuf();
            if (sent != null) {
                tx.addBuf(sg.clear().addReadable((Long) sent, 72), sent);
            }
            Object got = rx.getBuf();
            if (got != null) {
                rx.addInBuf((Long) got, 256, got);
                n++;
            }
            if (sent == null && got == null) {
                assertThat(System.nanoTime()).as("frames still arriving").isLessThan(deadline);
                Thread.onSpinWait();
            }
        }
    }

    /** Takes {@code frames} received frames from {@code rx}, giving each buffer back at once. */
    private static void receiveAndRepost(DriverQueue<Object> rx, int frames) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        for (int n = 0; n < frames; ) {
            Object t = rx.getBuf();
            if (t == null) {
                assertThat(System.nanoTime()).as("frames still arriving").isLessThan(deadline);
                Thread.onSpinWait();
                continue;
            }
            rx.addInBuf((Long) t, 256, t);
            if (++n % 64 == 0) {
                rx.kick(); // as a driver does per batch (the device asked for none: it polls)
            }
        }
    }

    @Test
    void aPollerThatSleptWakesForAKickAndAResetLetsItsQueuesGo() throws Exception {
        poller = new Poller("test-poller", TimeUnit.MICROSECONDS.toNanos(200));
        VirtualSwitch sw = new VirtualSwitch();
        DeviceHarness a = nic(sw, 1);
        DeviceHarness b = nic(sw, 2);
        Thread.sleep(100); // long past 200 µs without work: asleep, notifications on
        transmit(a, List.of(frame(2, 1, 5)), true);
        assertThat(receive(b, 4, 1, 5000)).containsExactly(5);
        a.close();
        harnesses.remove(a);
        assertThat(poller.queueCount()).as("a's queues let go at its reset").isEqualTo(2);
        b.close();
        harnesses.remove(b);
        assertThat(poller.queueCount()).isZero();
    }
}
