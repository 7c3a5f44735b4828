package io.jvirtio.devices.net;

import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.DeviceHarness;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Frames handed on in bursts ({@link FrameBurst}) go where, and as, they would one at a time — the switch's
 * learning and forwarding, a NIC's drops, order — while a run to one place is one call, written into a receive ring
 * with one publish, and a transmit ring's buffers stay the device's until the burst they lie in was handed on.
 */
@Timeout(60)
class FrameBurstTest {
    static final byte[] MAC = {0x52, 0x54, 0, 1, 2, 3};
    static final long FEATURES = Feature.maskOf(Feature.VERSION_1, Feature.NET_MAC);

    DeviceHarness h;

    @AfterEach
    void tearDown() {
        if (h != null) {
            h.close();
        }
    }

    /** A 60-byte frame to address ...{@code to} from ...{@code from} (0xff: broadcast), numbered {@code seq}. */
    static byte[] frame(int to, int from, int seq) {
        byte[] f = VirtualSwitchTest.frame(to, from);
        if (to == 0xff) {
            java.util.Arrays.fill(f, 0, 6, (byte) 0xff);
        }
        f[20] = (byte) seq;
        return f;
    }

    /** What a port got, frame by frame ("to<from#seq"), and the size of each call a burst came in. */
    static class Recording implements NetBackend.Receiver {
        final List<String> frames = new ArrayList<>();
        final List<Integer> calls = new ArrayList<>();

        @Override
        public void receive(MemorySegment b, long at, long n) {
            frames.add(b.get(ValueLayout.JAVA_BYTE, at + 5) + "<" + b.get(ValueLayout.JAVA_BYTE, at + 11) + "#"
                    + b.get(ValueLayout.JAVA_BYTE, at + 20));
            calls.add(1);
        }

        @Override
        public void receive(FrameBurst burst, int from, int to) {
            for (int i = from; i < to; i++) {
                receive(burst.data(i), burst.offset(i), burst.length(i));
                calls.removeLast();
            }
            calls.add(to - from);
        }
    }

    /** Three plain ports; {@code sent} through the first as one burst or frame by frame; what each other port got. */
    static List<Recording> switched(List<byte[]> sent, boolean burst) {
        VirtualSwitch sw = new VirtualSwitch();
        NetBackend one = sw.port();
        NetBackend two = sw.port();
        NetBackend three = sw.port();
        Recording atTwo = new Recording();
        Recording atThree = new Recording();
        two.connect(atTwo);
        three.connect(atThree);
        one.connect((b, at, n) -> { });
        VirtualSwitchTest.send(two, frame(9, 2, 0)); // 2 is behind port two
        VirtualSwitchTest.send(three, frame(9, 3, 0)); // 3 behind port three
        atTwo.frames.clear();
        atTwo.calls.clear();
        atThree.frames.clear();
        atThree.calls.clear();
        FrameBurst b = new FrameBurst();
        for (byte[] f : sent) {
            MemorySegment s = Arena.ofAuto().allocate(f.length);
            MemorySegment.copy(MemorySegment.ofArray(f), 0, s, 0, f.length);
            if (burst) {
                b.add(s, 0, f.length);
            } else {
                one.transmit(s, f.length);
            }
        }
        if (burst) {
            one.transmit(0, b);
        }
        return List.of(atTwo, atThree);
    }

    @Test
    void aBurstIsSwitchedAsItsFramesWouldBeOneAtATime() {
        List<byte[]> sent = new ArrayList<>();
        sent.add(frame(2, 1, 1));     // forwarded to two
        sent.add(frame(2, 1, 2));
        sent.add(frame(3, 1, 3));     // to three
        sent.add(frame(0xff, 1, 4));  // broadcast: both
        sent.add(frame(5, 1, 5));     // 5 unknown: flooded...
        sent.add(frame(5, 5, 6));     // ...until 5 is learned behind port one itself: this one goes nowhere
        sent.add(frame(5, 1, 7));     // and neither does this
        byte[] runt = new byte[10];   // too short to switch: dropped, the frames around it go on
        sent.add(runt);
        sent.add(frame(2, 1, 8));
        List<Recording> one = switched(sent, false);
        List<Recording> burst = switched(sent, true);
        assertThat(one.get(0).frames).containsExactly("2<1#1", "2<1#2", "-1<1#4", "5<1#5", "2<1#8");
        assertThat(one.get(1).frames).containsExactly("3<1#3", "-1<1#4", "5<1#5");
        assertThat(burst.get(0).frames).isEqualTo(one.get(0).frames);
        assertThat(burst.get(1).frames).isEqualTo(one.get(1).frames);
        assertThat(burst.get(0).calls).as("runs to one address arrive together").containsExactly(2, 1, 1, 1);
    }

    @Test
    void aRunToOnePortIsOneCall() {
        List<byte[]> sent = new ArrayList<>();
        for (int i = 0; i < 32; i++) {
            sent.add(frame(2, 1, i));
        }
        Recording atTwo = switched(sent, true).get(0);
        assertThat(atTwo.frames).hasSize(32).startsWith("2<1#0").endsWith("2<1#31");
        assertThat(atTwo.calls).containsExactly(32);
    }

    NetDevice dev;

    @Test
    void theSwitchFloodsOnlyToReceiversThatWantTheAddress() {
        VirtualSwitch sw = new VirtualSwitch();
        NetBackend one = sw.port();
        NetBackend two = sw.port();
        one.connect((b, at, n) -> { });
        long wanted = VirtualSwitch.mac(frame(7, 0, 0), 0);
        Recording got = new Recording() {
            @Override
            public boolean wants(long dst) {
                return dst == wanted;
            }
        };
        two.connect(got);
        VirtualSwitchTest.send(one, frame(8, 1, 1));             // to an address nobody has: flooded, not wanted
        VirtualSwitchTest.send(one, frame(7, 1, 2));             // flooded, wanted
        FrameBurst b = burstOf(frame(8, 1, 3), frame(8, 1, 4), frame(7, 1, 5));
        one.transmit(0, b);
        assertThat(got.frames).containsExactly("7<1#2", "7<1#5");
    }

    /** The demo host wants broadcasts and its own address: it still answers ARP, and then a ping, as before. */
    @Test
    void theResponderStillAnswersArpAndPing() {
        VirtualSwitch sw = new VirtualSwitch();
        byte[] hostMac = {0x52, 0x54, 0, 0, 0, 7};
        byte[] hostIp = {10, 0, 0, 1};
        Responder host = new Responder(sw, hostMac, hostIp);
        NetBackend guest = sw.port();
        byte[] guestMac = {0x52, 0x54, 0, 0, 0, 9};
        List<byte[]> replies = new ArrayList<>();
        guest.connect((b, at, n) -> replies.add(b.asSlice(at, n).toArray(ValueLayout.JAVA_BYTE)));
        byte[] arp = new byte[60];
        java.util.Arrays.fill(arp, 0, 6, (byte) 0xff);
        System.arraycopy(guestMac, 0, arp, 6, 6);
        arp[12] = 0x08;
        arp[13] = 0x06;
        arp[15] = 1;      // Ethernet
        arp[16] = 0x08;   // IPv4
        arp[18] = 6;
        arp[19] = 4;
        arp[21] = 1;      // request
        System.arraycopy(guestMac, 0, arp, 22, 6);
        System.arraycopy(new byte[] {10, 0, 0, 2}, 0, arp, 28, 4);
        System.arraycopy(hostIp, 0, arp, 38, 4);
        VirtualSwitchTest.send(guest, arp);
        assertThat(host.arpReplies.get()).isEqualTo(1);
        assertThat(replies).hasSize(1);
        assertThat(replies.getFirst()[21]).as("an ARP reply").isEqualTo((byte) 2);

        byte[] ping = new byte[14 + 20 + 8];
        System.arraycopy(hostMac, 0, ping, 0, 6);
        System.arraycopy(guestMac, 0, ping, 6, 6);
        ping[12] = 0x08;
        ping[14] = 0x45;
        ping[17] = 28;    // IPv4 total length
        ping[22] = 64;
        ping[23] = 1;     // ICMP
        System.arraycopy(new byte[] {10, 0, 0, 2}, 0, ping, 26, 4);
        System.arraycopy(hostIp, 0, ping, 30, 4);
        ping[34] = 8;     // echo request
        byte[] padded = java.util.Arrays.copyOf(ping, 60);
        VirtualSwitchTest.send(guest, padded);
        assertThat(host.echoReplies.get()).isEqualTo(1);
        assertThat(replies).hasSize(2);
        assertThat(replies.getLast()[34]).as("an echo reply").isZero();
    }

    /** A NIC's receive ring and the test as its backend. */
    NetDeviceTest.Wire nic() throws Exception {
        NetDeviceTest.Wire wire = new NetDeviceTest.Wire();
        dev = new NetDevice(wire, MAC, 1);
        h = new DeviceHarness(dev, FEATURES);
        return wire;
    }

    long[] receiveBuffers(int n) throws Exception {
        DriverQueue<Object> rx = h.queues.get(0);
        long[] addr = new long[n];
        for (int i = 0; i < n; i++) {
            addr[i] = h.alloc.allocate(2048, 8);
            rx.addInBuf(addr[i], 2048, i);
        }
        rx.kick();
        return addr;
    }

    static FrameBurst burst(int first, int n) {
        FrameBurst b = new FrameBurst();
        for (int i = first; i < first + n; i++) {
            byte[] f = NetDeviceTest.frame(60 + i);
            f[20] = (byte) i;
            MemorySegment s = Arena.ofAuto().allocate(f.length);
            MemorySegment.copy(MemorySegment.ofArray(f), 0, s, 0, f.length);
            b.add(s, 0, f.length);
        }
        return b;
    }

    /** The frames the driver got, as their numbers, each checked whole against what was sent. */
    List<Integer> received(long[] addr, int n) throws Exception {
        DriverQueue<Object> rx = h.queues.get(0);
        List<Integer> got = new ArrayList<>();
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (got.size() < n && System.nanoTime() < deadline) {
            Object token = rx.getBuf();
            if (token == null) {
                Thread.onSpinWait();
                continue;
            }
            int len = rx.lastLength() - io.jvirtio.core.spec.Net.HDR_SIZE;
            byte[] f = new byte[len];
            h.memory.read(addr[(Integer) token] + io.jvirtio.core.spec.Net.HDR_SIZE, f, 0, len);
            int seq = f[20];
            byte[] want = NetDeviceTest.frame(60 + seq);
            want[20] = (byte) seq;
            assertThat(f).isEqualTo(want);
            got.add(seq);
        }
        return got;
    }

    @Test
    void aBurstGoesIntoTheRingInOrderWithOnePublishAndOneInterrupt() throws Exception {
        NetDeviceTest.Wire wire = nic();
        long[] first = receiveBuffers(1);
        wire.receiver.receive(burst(0, 1), 0, 1); // the ring's thread has started (and has nothing to do)
        assertThat(received(first, 1)).containsExactly(0);
        long[] addr = receiveBuffers(8);
        h.takeInterrupts();
        wire.receiver.receive(burst(0, 8), 0, 8);
        assertThat(received(addr, 8)).containsExactly(0, 1, 2, 3, 4, 5, 6, 7);
        // without EVENT_IDX and with interrupts on, every publish interrupts: one frame at a time would be 8
        assertThat(h.takeInterrupts()).isEqualTo(1);
    }

    @Test
    void whatTheRingCannotTakeNowWaitsAndFollowsInOrder() throws Exception {
        NetDeviceTest.Wire wire = nic();
        long[] addr = receiveBuffers(3);
        FrameBurst b = burst(0, 6);
        wire.receiver.receive(b, 0, 6);
        assertThat(received(addr, 3)).containsExactly(0, 1, 2);
        long[] more = receiveBuffers(3); // tokens 0..2 again: their addresses are the new buffers
        assertThat(received(more, 3)).containsExactly(3, 4, 5);
    }

    @Test
    void aFrameTheNicDropsInABurstEndsARunAndIsCounted() throws Exception {
        NetDeviceTest.Wire wire = nic();
        long[] addr = receiveBuffers(4);
        FrameBurst b = new FrameBurst();
        FrameBurst good = burst(0, 4);
        b.add(good.data(0), 0, good.length(0));
        b.add(good.data(1), 0, good.length(1));
        b.add(Arena.ofAuto().allocate(10), 0, 10); // shorter than an Ethernet header
        b.add(good.data(2), 0, good.length(2));
        b.add(good.data(3), 0, good.length(3));
        wire.receiver.receive(b, 0, 5);
        assertThat(received(addr, 4)).containsExactly(0, 1, 2, 3);
        assertThat(dev.rxDropped.get()).isEqualTo(1);
    }

    /** Each of {@code frames} in a segment of its own, one burst. */
    static FrameBurst burstOf(byte[]... frames) {
        FrameBurst b = new FrameBurst();
        for (byte[] f : frames) {
            MemorySegment s = Arena.ofAuto().allocate(f.length);
            MemorySegment.copy(MemorySegment.ofArray(f), 0, s, 0, f.length);
            b.add(s, 0, f.length);
        }
        return b;
    }

    /** The next used receive buffer: its token and the bytes written into it (waits up to 10 s). */
    record Used(Object token, byte[] bytes) {
    }

    Used nextUsed(long[] addr) throws Exception {
        DriverQueue<Object> rx = h.queues.get(0);
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (System.nanoTime() < deadline) {
            Object token = rx.getBuf();
            if (token != null) {
                byte[] got = new byte[rx.lastLength()];
                h.memory.read(addr[(Integer) token], got, 0, got.length);
                return new Used(token, got);
            }
            Thread.onSpinWait();
        }
        throw new AssertionError("no buffer used within 10 s");
    }

    /** Offers {@code n} receive buffers of 128 bytes (tokens 0..n-1) and kicks; their addresses. */
    long[] smallBuffers(int n) {
        DriverQueue<Object> rx = h.queues.get(0);
        long[] addr = new long[n];
        for (int i = 0; i < n; i++) {
            addr[i] = h.alloc.allocate(128, 8);
            rx.addInBuf(addr[i], 128, i);
        }
        rx.kick();
        return addr;
    }

    /**
     * The next three used buffers, tokens {@code first} on, hold {@code frame} behind one header: num_buffers 3 in
     * the first (net-dev-7), all but the last filled completely (net-dev-8).
     */
    void assertSpansThreeBuffersFrom(long[] addr, int first, byte[] frame) throws Exception {
        int hdr = io.jvirtio.core.spec.Net.HDR_SIZE;
        byte[] spanned = new byte[0];
        for (int i = first; i < first + 3; i++) {
            Used u = nextUsed(addr);
            assertThat(u.token()).isEqualTo(i);
            if (i == first) {
                assertThat(u.bytes()[10]).as("num_buffers").isEqualTo((byte) 3);
            }
            if (i < first + 2) {
                assertThat(u.bytes()).as("filled completely").hasSize(128);
            }
            byte[] joined = java.util.Arrays.copyOf(spanned, spanned.length + u.bytes().length);
            System.arraycopy(u.bytes(), 0, joined, spanned.length, u.bytes().length);
            spanned = joined;
        }
        assertThat(java.util.Arrays.copyOfRange(spanned, hdr, spanned.length)).isEqualTo(frame);
    }

    /**
     * A frame too large for one buffer, in the middle of a burst written into chains read ahead, goes over as many
     * buffers as it needs (MRG_RXBUF), counted in num_buffers, and the frames around it keep their places.
     */
    @Test
    @io.jvirtio.core.spec.Conformance({"net-dev-7", "net-dev-8"})
    void aFrameLargerThanABufferInABurstSpansBuffersBetweenTheOthers() throws Exception {
        NetDeviceTest.Wire wire = new NetDeviceTest.Wire();
        h = new DeviceHarness(new NetDevice(wire, MAC, 1), FEATURES | Feature.NET_MRG_RXBUF.mask());
        long[] addr = smallBuffers(6);
        byte[] small = NetDeviceTest.frame(60);
        byte[] large = NetDeviceTest.frame(300); // 12 + 300 bytes: three buffers of 128
        byte[] last = NetDeviceTest.frame(61);
        wire.receiver.receive(burstOf(small, large, last), 0, 3);
        int hdr = io.jvirtio.core.spec.Net.HDR_SIZE;
        Used u = nextUsed(addr);
        assertThat(u.token()).isEqualTo(0);
        assertThat(u.bytes()[10]).as("num_buffers").isEqualTo((byte) 1);
        assertThat(java.util.Arrays.copyOfRange(u.bytes(), hdr, u.bytes().length)).isEqualTo(small);
        assertSpansThreeBuffersFrom(addr, 1, large);
        u = nextUsed(addr);
        assertThat(u.token()).isEqualTo(4);
        assertThat(java.util.Arrays.copyOfRange(u.bytes(), hdr, u.bytes().length)).isEqualTo(last);
    }

    /**
     * Frames that waited for buffers go into chains read ahead once the driver offers some, in order; one too large
     * for a buffer spans buffers (MRG_RXBUF) in its place.
     */
    @Test
    @io.jvirtio.core.spec.Conformance({"net-dev-7", "net-dev-8"})
    void framesThatWaitedGoIntoTheBuffersOfferedLaterInOrder() throws Exception {
        NetDeviceTest.Wire wire = new NetDeviceTest.Wire();
        h = new DeviceHarness(new NetDevice(wire, MAC, 1), FEATURES | Feature.NET_MRG_RXBUF.mask());
        byte[] small = NetDeviceTest.frame(60);
        byte[] large = NetDeviceTest.frame(300);
        byte[] last = NetDeviceTest.frame(61);
        wire.receiver.receive(burstOf(small, large, last, small), 0, 4); // no buffers yet: they wait
        long[] addr = smallBuffers(6);
        int hdr = io.jvirtio.core.spec.Net.HDR_SIZE;
        Used u = nextUsed(addr);
        assertThat(u.token()).isEqualTo(0);
        assertThat(java.util.Arrays.copyOfRange(u.bytes(), hdr, u.bytes().length)).isEqualTo(small);
        assertSpansThreeBuffersFrom(addr, 1, large);
        u = nextUsed(addr);
        assertThat(u.token()).isEqualTo(4);
        assertThat(java.util.Arrays.copyOfRange(u.bytes(), hdr, u.bytes().length)).isEqualTo(last);
        u = nextUsed(addr);
        assertThat(u.token()).isEqualTo(5);
        assertThat(u.bytes()[10]).as("num_buffers").isEqualTo((byte) 1);
        assertThat(java.util.Arrays.copyOfRange(u.bytes(), hdr, u.bytes().length)).isEqualTo(small);
    }

    /**
     * A frame whose header asks what the driver did not accept, in a burst, is dropped and counted; the buffer read
     * ahead for it takes the next frame, and no buffer is used for nothing.
     */
    @Test
    @io.jvirtio.core.spec.Conformance("net-dev-9")
    void whatTheDriverDidNotAcceptInABurstIsDroppedAndItsBufferTakesTheNext() throws Exception {
        NetOffloadTest.HeaderWire wire = new NetOffloadTest.HeaderWire();
        dev = new NetDevice(wire, MAC, 1);
        h = new DeviceHarness(dev, NetOffloadTest.BASE | Feature.NET_CSUM.mask()); // no GUEST_CSUM
        long[] addr = receiveBuffers(3);
        byte[] plain = NetOffloadTest.packet(0, 0, 0, 60);
        byte[] partial = NetOffloadTest.packet(Offloads.HDR_F_NEEDS_CSUM, 0, 0, 60);
        byte[] other = NetOffloadTest.packet(0, 0, 0, 70);
        wire.receiver.receive(burstOf(plain, partial, other), 0, 3);
        Used first = nextUsed(addr);
        Used second = nextUsed(addr);
        assertThat(first.token()).isEqualTo(0);
        assertThat(first.bytes()).hasSize(72);
        assertThat(second.token()).as("the buffer after, not a third").isEqualTo(1);
        assertThat(second.bytes()).hasSize(82);
        assertThat(java.util.Arrays.copyOfRange(second.bytes(), 12, 82))
                .isEqualTo(java.util.Arrays.copyOfRange(other, 12, 82));
        assertThat(second.bytes()[0]).as("flags as sent: nothing asked").isZero();
        assertThat(dev.rxDropped.get()).isEqualTo(1);
        assertThat(h.queues.get(0).getBuf()).as("the third buffer stays the driver's").isNull();
    }

    /** A backend that records bursts and single frames in the order they came, and the transmit ring's used index. */
    static final class Ordered implements NetBackend {
        final List<String> events = new CopyOnWriteArrayList<>();
        volatile java.util.function.IntSupplier usedIdx;

        @Override
        public void transmit(MemorySegment buffer, long offset, long length) {
            events.add("one#" + buffer.get(ValueLayout.JAVA_BYTE, offset + 20) + "@" + usedIdx.getAsInt());
        }

        @Override
        public void transmit(int queue, FrameBurst burst) {
            StringBuilder s = new StringBuilder("burst");
            for (int i = 0; i < burst.count(); i++) {
                s.append('#').append(burst.data(i).get(ValueLayout.JAVA_BYTE, burst.offset(i) + 20));
            }
            events.add(s + "@" + usedIdx.getAsInt());
        }

        @Override
        public void connect(Receiver receiver) {
        }
    }

    @Test
    void aTransmitRingsFramesGoOnTogetherInOrderBeforeTheirBuffersAreUsed() throws Exception {
        Ordered backend = new Ordered();
        h = new DeviceHarness(new NetDevice(backend, MAC, 1), FEATURES);
        DriverQueue<Object> tx = h.queues.get(1);
        long usedIdxAt = tx.addresses().usedRing() + 2;
        backend.usedIdx = () -> {
            try {
                return h.memory.readU16(usedIdxAt);
            } catch (io.jvirtio.core.memory.GuestMemoryException e) {
                throw new IllegalStateException(e);
            }
        };
        int hdr = io.jvirtio.core.spec.Net.HDR_SIZE;
        for (int seq = 1; seq <= 5; seq++) {
            byte[] f = frame(2, 1, seq);
            if (seq == 3) { // over two buffers: gathered into a copy, handed on alone, after the frames before it
                long a = h.alloc.allocate(hdr + 30, 8);
                long c = h.alloc.allocate(30, 8);
                h.memory.write(a + hdr, f, 0, 30);
                h.memory.write(c, f, 30, 30);
                tx.addBuf(new Scatterlist().addReadable(a, hdr + 30).addReadable(c, 30), seq);
            } else {
                long a = h.alloc.allocate(hdr + 60, 8);
                h.memory.write(a + hdr, f, 0, 60);
                tx.addOutBuf(a, hdr + 60, seq);
            }
        }
        tx.kick();
        long deadline = System.nanoTime() + 10_000_000_000L;
        int used = 0;
        while (used < 5 && System.nanoTime() < deadline) {
            if (tx.getBuf() != null) {
                used++;
            }
        }
        assertThat(used).isEqualTo(5);
        // every frame handed on while no buffer of the group was used yet: the guest could not have reused one
        assertThat(backend.events).containsExactly("burst#1#2@0", "one#3@0", "burst#4#5@0");
    }
}
