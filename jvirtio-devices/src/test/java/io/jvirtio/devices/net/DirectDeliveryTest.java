package io.jvirtio.devices.net;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.DeviceHarness;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Senders write frames straight into a NIC's receive ring when nobody else serves it (RxWorker#tryDeliver),
 * else queue them for its thread. Whoever serves the ring owns it alone: under many senders every frame is
 * delivered exactly once, each sender's frames in its order, none torn; and once the ring's
 * thread has stopped, no sender writes to the ring again.
 */
@Timeout(120)
class DirectDeliveryTest {
    static final byte[] MAC = {0x52, 0x54, 0, 1, 2, 3};
    static final long FEATURES = Feature.maskOf(Feature.VERSION_1, Feature.NET_MAC);

    final NetDeviceTest.Wire wire = new NetDeviceTest.Wire();
    DeviceHarness h;

    @AfterEach
    void tearDown() {
        if (h != null) {
            h.close();
        }
    }

    /** A 200-byte frame to the NIC saying who sent it and its number, its body a pattern of both. */
    static MemorySegment frame(MemorySegment buf, int sender, int seq) {
        MemorySegment.copy(MemorySegment.ofArray(MAC), 0, buf, 0, 6);
        buf.set(ValueLayout.JAVA_SHORT_UNALIGNED, 12, (short) 0x0800);
        buf.set(ValueLayout.JAVA_INT_UNALIGNED, 14, sender);
        buf.set(ValueLayout.JAVA_INT_UNALIGNED, 18, seq);
        for (int i = 22; i < 200; i++) {
            buf.set(ValueLayout.JAVA_BYTE, i, (byte) (sender * 31 + seq + i));
        }
        return buf;
    }

    @Test
    void manySendersEveryFrameOnceInEachSendersOrderNoneTorn() throws Exception {
        NetDevice dev = new NetDevice(wire, MAC, 1);
        h = new DeviceHarness(dev, FEATURES);
        DriverQueue<Object> rx = h.queues.get(0);
        int buffers = 128;
        long[] addr = new long[buffers];
        for (int i = 0; i < buffers; i++) {
            addr[i] = h.alloc.allocate(2048, 8);
            rx.addInBuf(addr[i], 2048, i);
        }
        rx.kick();
        int senders = 3;
        int each = 30_000;
        // a frame in flight per receive buffer at most: none needs dropping, so every one must arrive
        java.util.concurrent.Semaphore credits = new java.util.concurrent.Semaphore(buffers);
        List<Thread> threads = new ArrayList<>();
        for (int s = 0; s < senders; s++) {
            int sender = s;
            threads.add(Thread.ofPlatform().start(() -> {
                MemorySegment buf = java.lang.foreign.Arena.ofAuto().allocate(200);
                for (int seq = 0; seq < each; seq++) {
                    credits.acquireUninterruptibly();
                    wire.receiver.receive(frame(buf, sender, seq), 200);
                }
            }));
        }
        int[] last = new int[senders];
        java.util.Arrays.fill(last, -1);
        long received = 0;
        byte[] got = new byte[12 + 200];
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
        while (received < (long) senders * each && dev.rxDropped.get() == 0 && System.nanoTime() < deadline) {
            Object token = rx.getBuf();
            if (token == null) {
                Thread.onSpinWait();
                continue;
            }
            int i = (Integer) token;
            assertThat(rx.lastLength()).isEqualTo(12 + 200);
            h.memory.read(addr[i], got, 0, got.length);
            MemorySegment f = MemorySegment.ofArray(got).asSlice(12);
            int sender = f.get(ValueLayout.JAVA_INT_UNALIGNED, 14);
            int seq = f.get(ValueLayout.JAVA_INT_UNALIGNED, 18);
            assertThat(seq).as("sender %d's frames in order, each once", sender).isGreaterThan(last[sender]);
            last[sender] = seq;
            for (int b = 22; b < 200; b++) {
                if (f.get(ValueLayout.JAVA_BYTE, b) != (byte) (sender * 31 + seq + b)) {
                    throw new AssertionError("frame " + sender + "/" + seq + " torn at byte " + b);
                }
            }
            received++;
            rx.addInBuf(addr[i], 2048, i);
            rx.kick();
            credits.release();
        }
        for (Thread t : threads) {
            t.join();
        }
        assertThat(dev.rxDropped.get()).as("frames dropped with a buffer for each").isZero();
        assertThat(received).as("every frame delivered, once").isEqualTo((long) senders * each);
        assertThat(dev.rxFrames()).isEqualTo(received);
    }

    @Test
    void onceTheRingsThreadHasStoppedNoSenderWritesToTheRing() throws Exception {
        NetDevice dev = new NetDevice(wire, MAC, 1);
        h = new DeviceHarness(dev, FEATURES);
        DriverQueue<Object> rx = h.queues.get(0);
        for (int i = 0; i < 200; i++) {
            rx.addInBuf(h.alloc.allocate(2048, 8), 2048, i);
        }
        rx.kick();
        AtomicBoolean go = new AtomicBoolean(true);
        Thread sender = Thread.ofPlatform().start(() -> {
            MemorySegment buf = java.lang.foreign.Arena.ofAuto().allocate(200);
            for (int seq = 0; go.get(); seq++) {
                wire.receiver.receive(frame(buf, 0, seq), 200);
            }
        });
        long usedRing = rx.addresses().usedRing();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (dev.rxFrames() < 20 && System.nanoTime() < deadline) {
            Thread.sleep(1);
        }
        assertThat(dev.rxFrames()).as("frames flowed before the stop").isGreaterThanOrEqualTo(20);
        var state = dev.stopQueue(0); // as GET_VRING_BASE does, with the sender still sending
        short usedIdx = h.memory.readU16(usedRing + 2);
        long frames = dev.rxFrames();
        Thread.sleep(200);
        go.set(false);
        sender.join();
        assertThat(h.memory.readU16(usedRing + 2)).as("used.idx after the stop").isEqualTo(usedIdx);
        assertThat(dev.rxFrames()).as("frames delivered after the stop").isEqualTo(frames);
        assertThat(state.nextUsed() & 0xffff).isEqualTo(usedIdx & 0xffff);
    }
}
