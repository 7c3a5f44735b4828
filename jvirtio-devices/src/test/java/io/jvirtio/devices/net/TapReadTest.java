package io.jvirtio.devices.net;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.DeviceHarness;
import io.jvirtio.devices.Poller;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Frames from the host read by the TAP device straight into the driver's receive buffers (DirectRead: one
 * {@code readv} over the buffers peeked, the kernel's copy the only one), against a real TAP device whose host side
 * sends exact frames from a packet socket in a network namespace the test makes: byte for byte, the header the
 * driver reads (num_buffers, over several mergeable buffers), and what is not for the driver — too large, filtered
 * out — leaving the buffers it was read into to the next frame. A polled NIC's TAP is read by the poller in its
 * rounds, straight into the polled ring, its reader thread only waking the poller when it sleeps.
 */
class TapReadTest {
    static final byte[] MAC = {0x52, 0x54, 0, 7, 7, 7};
    static final long BASE = Feature.maskOf(Feature.VERSION_1, Feature.NET_MAC);
    /** The test's own frames: an EtherType for local experiments, which nothing else on the TAP sends. */
    static final int ETHERTYPE = 0x88b5;

    final String ns = "jvrd" + ProcessHandle.current().pid();
    final String ifname = "jvrd" + (ProcessHandle.current().pid() % 100000);
    TapBackend tap;
    /** Set before {@link #start}: the NIC's rings and the TAP's reads in its rounds. */
    Poller poller;
    NetDevice dev;
    DeviceHarness h;
    Process sender;
    PrintStream toSender;
    BufferedReader fromSender;

    static void sh(String... cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.waitFor()).as("%s: %s", String.join(" ", cmd), out).isZero();
    }

    void start(boolean vnetHeader, long features) throws Exception {
        start(vnetHeader, features, 1);
    }

    /**
     * The TAP (with the virtio-net header or without; {@code pairs} queues) in a namespace, MTU 9000, a NIC of as
     * many pairs on it, and a packet socket on it there.
     */
    void start(boolean vnetHeader, long features, int pairs) throws Exception {
        boolean usable = Files.exists(Path.of("/dev/net/tun")) && Files.isExecutable(Path.of("/usr/sbin/ip"))
                && Files.isExecutable(Path.of("/usr/bin/python3")) && "root".equals(System.getProperty("user.name"));
        if (!usable) {
            System.err.println("TapReadTest SKIPPED: needs /dev/net/tun, /usr/sbin/ip, python3 and root");
        }
        Assumptions.assumeTrue(usable, "needs /dev/net/tun, ip, python3 and root");
        tap = new TapBackend(ifname, vnetHeader, pairs);
        sh("ip", "netns", "add", ns);
        sh("ip", "link", "set", ifname, "netns", ns);
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf." + ifname + ".disable_ipv6=1");
        sh("ip", "netns", "exec", ns, "ip", "link", "set", ifname, "mtu", "9000", "up");
        dev = new NetDevice(tap, MAC, pairs, 9000).pollWith(poller);
        h = new DeviceHarness(dev, features);
        sender = new ProcessBuilder("ip", "netns", "exec", ns, "python3", "-u", "-c", """
                import socket, sys
                s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
                s.bind(('%s', 0))
                print('READY')
                for line in sys.stdin:
                    count, frame = line.split()
                    frame = bytes.fromhex(frame)
                    for _ in range(int(count)):
                        try:
                            s.send(frame)
                        except OSError:
                            pass  # the device's queue refused it: the kernel counts it
                    print('SENT')
                """.formatted(ifname)).redirectErrorStream(true).start();
        toSender = new PrintStream(sender.getOutputStream(), true, StandardCharsets.US_ASCII);
        fromSender = new BufferedReader(new InputStreamReader(sender.getInputStream(), StandardCharsets.US_ASCII));
        assertThat(fromSender.readLine()).isEqualTo("READY");
    }

    @AfterEach
    void tearDown() throws Exception {
        if (sender != null) {
            sender.destroyForcibly();
        }
        if (h != null) {
            h.close();
        }
        if (tap != null) {
            tap.close();
            new ProcessBuilder("ip", "netns", "del", ns).start().waitFor(10, TimeUnit.SECONDS);
        }
        if (poller != null) {
            poller.close();
        }
    }

    /** A frame of {@code length} bytes to {@code dst}, from the host, its payload numbered from {@code seed}. */
    static byte[] frame(byte[] dst, int length, int seed) {
        byte[] f = new byte[length];
        System.arraycopy(dst, 0, f, 0, 6);
        System.arraycopy(new byte[] {0x02, 0, 0, 0, 0, 1}, 0, f, 6, 6);
        f[12] = (byte) (ETHERTYPE >> 8);
        f[13] = (byte) ETHERTYPE;
        for (int i = 14; i < length; i++) {
            f[i] = (byte) (seed + i);
        }
        return f;
    }

    void send(byte[] frame) throws Exception {
        send(1, frame);
    }

    /** {@code count} copies of {@code frame}, as fast as the packet socket takes them. */
    void send(int count, byte[] frame) throws Exception {
        toSender.println(count + " " + HexFormat.of().formatHex(frame));
        assertThat(fromSender.readLine()).isEqualTo("SENT");
    }

    /** Posts {@code count} receive buffers of {@code size} bytes, their addresses as tokens. */
    DriverQueue<Object> post(int count, int size) {
        DriverQueue<Object> rx = h.queues.get(0);
        for (int i = 0; i < count; i++) {
            long buf = h.alloc.allocate(size, 8);
            assertThat(rx.addInBuf(buf, size, buf)).isTrue();
        }
        rx.kick();
        return rx;
    }

    /** What the device wrote into the next buffer it used, within two seconds. */
    byte[] next(DriverQueue<Object> rx) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(2);
        while (System.nanoTime() < deadline) {
            Object token = rx.getBuf();
            if (token == null) {
                Thread.sleep(1);
                continue;
            }
            byte[] got = new byte[rx.lastLength()];
            h.memory.read((Long) token, got, 0, got.length);
            return got;
        }
        throw new AssertionError("no buffer used within two seconds");
    }

    /** {@code counter} once it counts something, or after two seconds. */
    static long firstCount(ThreadCounter counter) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(2);
        while (counter.get() == 0 && System.nanoTime() < deadline) {
            Thread.sleep(1);
        }
        return counter.get();
    }

    static int numBuffers(byte[] used) {
        return Short.toUnsignedInt(MemorySegment.ofArray(used).get(GuestMemory.U16, 10));
    }

    @Test
    void framesFromTheHostAreReadStraightIntoTheDriversBuffersByteForByte() throws Exception {
        start(true, BASE);
        DriverQueue<Object> rx = post(8, 2048);
        List<byte[]> sent = new ArrayList<>();
        for (int length : new int[] {60, 100, 1514, 77}) {
            byte[] f = frame(length == 100 ? new byte[] {-1, -1, -1, -1, -1, -1} : MAC, length, length);
            sent.add(f);
            send(f);
        }
        for (byte[] f : sent) {
            byte[] got = next(rx);
            assertThat(got).as("header and frame").hasSize(12 + f.length);
            assertThat(Arrays.copyOfRange(got, 0, 10)).as("the kernel's header: no offload asked").containsOnly(0);
            assertThat(numBuffers(got)).as("num_buffers").isEqualTo(1);
            assertThat(Arrays.copyOfRange(got, 12, got.length)).as("the frame").isEqualTo(f);
        }
        assertThat(dev.rxReadFrames()).as("read straight into the driver's buffers").isEqualTo(4);
        assertThat(dev.rxFrames()).isEqualTo(4);
    }

    @Test
    @io.jvirtio.core.spec.Conformance({"net-dev-7", "net-dev-8"})
    void aFrameOverSeveralMergeableBuffersIsReadIntoThemWithOneRead() throws Exception {
        start(true, BASE | Feature.NET_MRG_RXBUF.mask());
        DriverQueue<Object> rx = post(8, 1024);
        byte[] f = frame(MAC, 5000, 3);
        send(f);
        byte[] joined = new byte[0];
        List<Integer> lengths = new ArrayList<>();
        byte[] first = next(rx);
        assertThat(numBuffers(first)).as("num_buffers: 12 + 5,000 bytes in buffers of 1,024").isEqualTo(5);
        joined = concat(joined, first);
        lengths.add(first.length);
        for (int i = 1; i < 5; i++) {
            byte[] b = next(rx);
            lengths.add(b.length);
            joined = concat(joined, b);
        }
        assertThat(lengths).as("every buffer but the last filled completely")
                .containsExactly(1024, 1024, 1024, 1024, 916);
        assertThat(Arrays.copyOfRange(joined, 12, joined.length)).as("the frame, in order").isEqualTo(f);
        assertThat(dev.rxReadFrames()).isEqualTo(1);
        send(frame(MAC, 60, 9)); // the three buffers left take the next frame
        byte[] small = next(rx);
        assertThat(numBuffers(small)).isEqualTo(1);
        assertThat(Arrays.copyOfRange(small, 12, small.length)).isEqualTo(frame(MAC, 60, 9));
    }

    static byte[] concat(byte[] a, byte[] b) {
        byte[] c = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, c, a.length, b.length);
        return c;
    }

    @Test
    void aFrameLargerThanTheBufferIsDroppedAndTheBufferTakesTheNext() throws Exception {
        start(true, BASE);
        DriverQueue<Object> rx = post(1, 1024);
        send(frame(MAC, 3000, 1)); // without MRG_RXBUF a frame must fit one buffer: never truncated
        assertThat(firstCount(dev.rxDropped)).as("dropped and counted").isEqualTo(1);
        byte[] f = frame(MAC, 200, 2);
        send(f);
        byte[] got = next(rx);
        assertThat(Arrays.copyOfRange(got, 12, got.length)).as("the next frame, in the buffer the first was read into")
                .isEqualTo(f);
        assertThat(dev.rxFrames()).isEqualTo(1);
        assertThat(dev.rxReadFrames()).isEqualTo(1);
    }

    @Test
    void aFrameTheReceiveFilterRefusesLeavesItsBufferToTheNext() throws Exception {
        start(true, BASE | Feature.maskOf(Feature.NET_CTRL_VQ, Feature.NET_CTRL_RX));
        long cmd = h.alloc.allocate(32, 8);
        h.memory.write(cmd, new byte[] {0, 0, 0}, 0, 3); // VIRTIO_NET_CTRL_RX_PROMISC off
        h.roundTrip(2, new Scatterlist().addReadable(cmd, 3).addWritable(cmd + 31, 1));
        DriverQueue<Object> rx = post(1, 2048);
        send(frame(new byte[] {0x52, 0x54, 0, 9, 9, 9}, 100, 4));
        assertThat(firstCount(dev.rxFiltered)).as("another station's frame: filtered out").isEqualTo(1);
        byte[] f = frame(MAC, 90, 5);
        send(f);
        byte[] got = next(rx);
        assertThat(Arrays.copyOfRange(got, 12, got.length)).isEqualTo(f);
        assertThat(dev.rxFrames()).isEqualTo(1);
    }

    @Test
    void readingFramesStraightIntoTheRingAllocatesNothingPerFrame() throws Exception {
        start(true, BASE | Feature.NET_MRG_RXBUF.mask());
        DriverQueue<Object> rx = post(128, 2048);
        java.util.function.LongSupplier allocated = PolledNicTest.allocatedBy("jvirtio-tap-" + tap.name() + "-q0");
        byte[] f = frame(MAC, 64, 8);
        Thread reposting = Thread.ofPlatform().start(() -> {
            try {
                while (!Thread.currentThread().isInterrupted()) { // the driver: each buffer back once used
                    Object token = rx.getBuf();
                    if (token == null) {
                        // not a spin: on two CPUs it would starve the compiler the warm-up waits for
                        java.util.concurrent.locks.LockSupport.parkNanos(20_000);
                        continue;
                    }
                    rx.addInBuf((Long) token, 2048, token);
                    rx.kick();
                }
            } catch (io.jvirtio.core.queue.VirtqueueException e) {
                throw new IllegalStateException(e);
            }
        });
        try {
            send(300_000, f); // long enough for C2
            long best = Long.MAX_VALUE; // the best of five rounds: a JIT recompilation may allocate meanwhile
            for (int round = 0; round < 5; round++) {
                long before = allocated.getAsLong();
                send(20_000, f);
                best = Math.min(best, allocated.getAsLong() - before);
            }
            assertThat(dev.rxReadFrames()).as("frames read straight into the ring").isPositive();
            assertThat(best).as("bytes the TAP's reader allocated while 20,000 frames came in").isLessThan(10_000);
        } finally {
            reposting.interrupt();
            reposting.join();
        }
    }

    /** The TAP device's own count of frames it dropped for want of a reader (its queue full). */
    long kernelDropped() throws Exception {
        Process p = new ProcessBuilder("ip", "netns", "exec", ns, "cat",
                "/sys/class/net/" + ifname + "/statistics/tx_dropped").redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.US_ASCII).strip();
        assertThat(p.waitFor()).isZero();
        return Long.parseLong(out);
    }

    /** The driver taking each used buffer and giving it back, until none comes for half a second; how many. */
    static int takeUntilQuiet(DriverQueue<Object> rx) throws Exception {
        int received = 0;
        long quiet = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(500);
        while (System.nanoTime() < quiet) {
            Object token = rx.getBuf();
            if (token == null) {
                Thread.sleep(1);
                continue;
            }
            received++;
            rx.addInBuf((Long) token, 2048, token);
            rx.kick();
            quiet = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(500);
        }
        return received;
    }

    @Test
    void framesForADriverThatTakesNoneStayInTheKernelUntilItDoes() throws Exception {
        start(true, BASE);
        send(3000, frame(MAC, 100, 10)); // no receive buffer posted
        Thread.sleep(300);
        assertThat(dev.rxDropped.get()).as("frames the NIC read only to drop them").isZero();
        long inKernel = kernelDropped();
        assertThat(inKernel).as("what overflowed the TAP's own queue, dropped and counted by the kernel").isPositive();
        DriverQueue<Object> rx = post(128, 2048);
        int received = takeUntilQuiet(rx);
        assertThat(received).as("what waited in the NIC's queue and then in the kernel's, once the driver took frames")
                .isGreaterThan(NetDevice.SEGMENT_LIMIT);
        assertThat(received + kernelDropped()).as("every frame sent: delivered, or dropped by the kernel")
                .isEqualTo(3000);
        assertThat(dev.rxDropped.get()).isZero();
    }

    @Test
    void aDeviceDeletedUnderItsReaderEndsTheReaderInsteadOfSpinning() throws Exception {
        deletedUnderItsReader();
    }

    @Test
    void aPolledDeviceDeletedEndsItsReaderAndThePollerSleeps() throws Exception {
        poller = new Poller("tap-test-poller", TimeUnit.MICROSECONDS.toNanos(50));
        deletedUnderItsReader();
        assertThat(sleeps(thread("tap-test-poller").orElseThrow())).as("the poller, nothing left to read").isTrue();
    }

    void deletedUnderItsReader() throws Exception {
        start(true, BASE);
        String reader = "jvirtio-tap-" + tap.name() + "-q0";
        assertThat(thread(reader)).as("the reader runs").isPresent();
        sh("ip", "netns", "exec", ns, "ip", "link", "del", ifname); // poll then says POLLERR, reads fail
        java.util.Optional<Thread> t = thread(reader);
        if (t.isPresent()) {
            t.get().join(2000);
        }
        assertThat(thread(reader).map(Thread::isAlive)).as("the reader, once its device is gone").isNotEqualTo(
                java.util.Optional.of(true));
    }

    /** The thread called {@code name}, if it runs. */
    static java.util.Optional<Thread> thread(String name) {
        return Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().equals(name)).findFirst();
    }

    /** Whether the poller sleeps (parked), within two seconds. */
    static boolean sleeps(Thread poller) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(2);
        while (poller.getState() != Thread.State.WAITING && System.nanoTime() < deadline) {
            Thread.sleep(1);
        }
        return poller.getState() == Thread.State.WAITING;
    }

    @Test
    void aPollerReadsTheTapInItsRoundsStraightIntoThePolledRingAndWakesForAFrameWhenItSleeps() throws Exception {
        poller = new Poller("tap-test-poller", TimeUnit.MICROSECONDS.toNanos(50));
        start(true, BASE);
        DriverQueue<Object> rx = post(8, 2048);
        Thread p = thread("tap-test-poller").orElseThrow();
        for (int length : new int[] {60, 1514, 333}) {
            assertThat(sleeps(p)).as("the poller, with nothing to do, sleeps").isTrue();
            byte[] f = frame(MAC, length, length);
            send(f); // only the TAP's reader thread, waiting for a frame, can wake it
            byte[] got = next(rx);
            assertThat(numBuffers(got)).isEqualTo(1);
            assertThat(Arrays.copyOfRange(got, 12, got.length)).as("the frame").isEqualTo(f);
        }
        assertThat(dev.rxReadFrames()).as("read by the poller straight into the polled ring").isEqualTo(3);
        // 200 frames for the 5 buffers left: the NIC's queue takes what the ring cannot until it is full, the rest
        // waits in the kernel's queue; then buffers for all of them
        send(200, frame(MAC, 100, 7));
        // the kernel may pass the last of them to the TAP a while after the sender is done (its qdisc, on a busy
        // machine): wait for the NIC's queue to fill rather than for the sender
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while ((dev.rxFrames() < 8 || dev.rxQueued.get() < NetDevice.SEGMENT_LIMIT) && System.nanoTime() < deadline) {
            Thread.sleep(1);
        }
        assertThat(dev.rxFrames()).as("the ring filled").isEqualTo(8);
        assertThat(dev.rxQueued.get()).as("the NIC's queue filled: the rest waits in the kernel's").isEqualTo(
                NetDevice.SEGMENT_LIMIT);
        assertThat(sleeps(p)).as("the poller, with every frame it can take taken, sleeps").isTrue();
        post(240, 2048);
        int received = takeUntilQuiet(rx);
        assertThat(received).as("each frame delivered").isEqualTo(200);
        assertThat(dev.rxDropped.get()).isZero();
        assertThat(dev.rxFrames() - dev.rxReadFrames())
                .as("frames that waited in the NIC's queue: those read while the ring had no buffer, no more — once the"
                        + " queue is emptied into the ring, the poller reads into the ring again")
                .isEqualTo(NetDevice.SEGMENT_LIMIT);
        assertThat(dev.rxQueued.get()).as("counted as they were queued").isEqualTo(NetDevice.SEGMENT_LIMIT);
    }

    @Test
    void aPolledTapClosedWhileFramesComeLeavesThePollerServingTheRest() throws Exception {
        poller = new Poller("tap-test-poller", TimeUnit.SECONDS.toNanos(30)); // spins throughout
        start(true, BASE);
        DriverQueue<Object> rx = post(128, 2048);
        send(frame(MAC, 60, 1));
        next(rx);
        Thread flood = Thread.ofPlatform().start(() -> {
            try {
                send(200_000, frame(MAC, 60, 2));
            } catch (Exception | AssertionError e) {
                // the sender ended under the flood: expected
            }
        });
        Thread.sleep(50);
        tap.close(); // descriptors and buffers freed once the poller is out of the TAP's round
        Thread p = thread("tap-test-poller").orElseThrow();
        Thread.sleep(100);
        assertThat(p.isAlive()).as("the poller, after the TAP it read closed under it").isTrue();
        sender.destroyForcibly();
        flood.join(5000);
        // the poller still serves the NIC's rings: a frame the guest sends is taken (the TAP drops it, closed)
        DriverQueue<Object> tx = h.queues.get(1);
        long buf = h.alloc.allocate(12 + 60, 8);
        assertThat(tx.addBuf(new Scatterlist().addReadable(buf, 12 + 60), buf)).isTrue();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(2);
        Object used = null;
        while (used == null && System.nanoTime() < deadline) {
            used = tx.getBuf();
            Thread.sleep(1);
        }
        assertThat(used).as("the guest's frame, taken by the poller").isEqualTo(buf);
    }

    /** The device's queues as the kernel counts them: those attached (sysfs lists tx-0 … of the namespace). */
    int attachedQueues() throws Exception {
        Process p = new ProcessBuilder("ip", "netns", "exec", ns, "ls", "/sys/class/net/" + ifname + "/queues")
                .redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.US_ASCII);
        assertThat(p.waitFor()).as(out).isZero();
        return (int) Arrays.stream(out.split("\\s+")).filter(q -> q.startsWith("tx-")).count();
    }

    /** VQ_PAIRS_SET {@code n} on the control queue of a two-pair NIC; the device's ack. */
    byte pairsSet(int n) throws Exception {
        long cmd = h.alloc.allocate(8, 8);
        h.memory.write(cmd, new byte[] {4, 0, (byte) n, 0}, 0, 4);
        h.roundTrip(4, new Scatterlist().addReadable(cmd, 4).addWritable(cmd + 4, 1));
        byte[] ack = new byte[1];
        h.memory.read(cmd + 4, ack, 0, 1);
        return ack[0];
    }

    /**
     * As QEMU with a multi-queue TAP device: the queues of the pairs the driver does not use are detached, so the
     * kernel steers the host's flows to the others only, each read for the pair that uses it; a queue attached again
     * is read again.
     */
    @Test
    void aMultiQueueTapHasTheQueuesOfThePairsInUseAttachedAndNoOthers() throws Exception {
        multiQueueAttached();
    }

    @Test
    void aPolledMultiQueueTapHasTheQueuesOfThePairsInUseAttachedAndNoOthers() throws Exception {
        poller = new Poller("tap-test-poller", TimeUnit.MICROSECONDS.toNanos(50));
        multiQueueAttached();
    }

    void multiQueueAttached() throws Exception {
        start(true, BASE | Feature.maskOf(Feature.NET_MQ, Feature.NET_CTRL_VQ), 2);
        assertThat(attachedQueues()).as("one pair in use until the driver sets more").isEqualTo(1);
        assertThat(pairsSet(2)).isZero();
        assertThat(attachedQueues()).as("VQ_PAIRS_SET 2").isEqualTo(2);
        assertThat(pairsSet(1)).isZero();
        assertThat(attachedQueues()).as("VQ_PAIRS_SET 1").isEqualTo(1);
        Thread.sleep(400); // longer than the reader's poll: it waits on the detached queue, then on the attached one
        assertThat(pairsSet(2)).isZero();
        assertThat(attachedQueues()).as("and 2 again").isEqualTo(2);
        for (int q : new int[] {0, 2}) { // both pairs' receive rings
            for (int i = 0; i < 40; i++) {
                long buf = h.alloc.allocate(2048, 8);
                h.queues.get(q).addInBuf(buf, 2048, buf);
            }
            h.queues.get(q).kick();
        }
        // 32 UDP flows: the kernel spreads them over both queues by their hash, and both readers read theirs
        for (int flow = 0; flow < 32; flow++) {
            send(udp(flow));
        }
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (dev.rxFrames() < 32 && System.nanoTime() < deadline) {
            Thread.sleep(1);
        }
        assertThat(dev.rxFrames()).as("every flow's frame, over both queues").isEqualTo(32);
        assertThat(dev.rxReadFrames()).as("each read straight into its pair's ring").isEqualTo(32);
        assertThat(dev.rxDropped.get()).isZero();
        assertThat(h.queues.get(2).getBuf()).as("a frame on pair 1: the kernel used the second queue").isNotNull();
        dev.reset(); // as when the driver resets the device, or its front-end goes away
        assertThat(attachedQueues()).as("one queue again after a reset, as at the start").isEqualTo(1);
    }

    /** An IPv4/UDP frame to the NIC from port {@code flow}: the kernel hashes the ports to pick a queue. */
    static byte[] udp(int flow) {
        byte[] f = frame(MAC, 60, flow);
        f[12] = 0x08;
        f[13] = 0x00;
        byte[] ip = {0x45, 0, 0, 46, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1};
        System.arraycopy(ip, 0, f, 14, 20);
        f[34] = (byte) (1000 + flow >> 8);
        f[35] = (byte) (1000 + flow);
        f[36] = 0x13;
        f[37] = (byte) 0x89;
        f[38] = 0;
        f[39] = 26;
        f[40] = 0;
        f[41] = 0;
        return f;
    }

    @Test
    void withoutTheTapsHeaderTheNicWritesItsOwnInFrontOfTheFrameRead() throws Exception {
        start(false, BASE);
        DriverQueue<Object> rx = post(2, 2048);
        byte[] f = frame(MAC, 1514, 6);
        send(f);
        byte[] got = next(rx);
        assertThat(got).hasSize(12 + 1514);
        assertThat(Arrays.copyOfRange(got, 0, 10)).as("the header that asks nothing").containsOnly(0);
        assertThat(numBuffers(got)).isEqualTo(1);
        assertThat(Arrays.copyOfRange(got, 12, got.length)).isEqualTo(f);
        assertThat(dev.rxReadFrames()).isEqualTo(1);
    }
}
