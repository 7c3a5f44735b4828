package io.jvirtio.devices.net;

import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.DeviceHarness;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A backend with a queue per pair (a multi-queue TAP device): pair {@code i} sends on the backend's queue
 * {@code i} and receives what arrives there — not steered by address — so a flow the host put on a queue
 * stays on its pair; a queue beyond the pairs the driver uses folds onto the active ones.
 */
class MultiQueueBackendTest {
    static final byte[] MAC = {0x52, 0x54, 0, 1, 2, 3};
    static final long FEATURES = Feature.maskOf(Feature.VERSION_1, Feature.NET_MAC, Feature.NET_CTRL_VQ, Feature.NET_MQ);

    /** Two queues; records which queue each frame went out on. */
    static final class TwoQueues implements NetBackend {
        final Receiver[] receivers = new Receiver[2];
        final List<String> sent = new CopyOnWriteArrayList<>();

        public int queues() {
            return 2;
        }

        public void transmit(MemorySegment buffer, long offset, long length) {
            throw new AssertionError("a multi-queue backend is sent to by queue");
        }

        public void transmit(int queue, MemorySegment buffer, long offset, long length) {
            sent.add(queue + ":" + buffer.get(ValueLayout.JAVA_BYTE, offset + 20));
        }

        public void connect(Receiver receiver) {
            throw new AssertionError("a multi-queue backend is connected by queue");
        }

        public void connect(int queue, Receiver receiver) {
            receivers[queue] = receiver;
        }
    }

    final TwoQueues wire = new TwoQueues();
    DeviceHarness h;

    @AfterEach
    void tearDown() {
        if (h != null) {
            h.close();
        }
    }

    static byte[] frame(int tag) {
        byte[] f = new byte[60];
        System.arraycopy(MAC, 0, f, 0, 6);
        f[6] = 0x52;
        f[11] = 9; // one source: steering by address would put every frame on one pair
        f[12] = 0x08;
        f[20] = (byte) tag;
        return f;
    }

    Object received(DriverQueue<Object> rx) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (System.nanoTime() < deadline) {
            Object t = rx.getBuf();
            if (t != null) {
                return t;
            }
            Thread.sleep(1);
        }
        return null;
    }

    @Test
    void eachPairHasItsBackendQueueBothWays() throws Exception {
        NetDevice dev = new NetDevice(wire, MAC, 2);
        h = new DeviceHarness(dev, FEATURES);
        long cmd = h.alloc.allocate(8, 8);
        h.memory.write(cmd, new byte[] {4, 0, 2, 0}, 0, 4); // VQ_PAIRS_SET 2
        h.roundTrip(4, new Scatterlist().addReadable(cmd, 4).addWritable(cmd + 4, 1));

        for (int q : new int[] {0, 2}) {
            h.queues.get(q).addInBuf(h.alloc.allocate(2048, 8), 2048, "rx" + q);
            h.queues.get(q).kick();
        }
        byte[] f = frame(1);
        wire.receivers[1].receive(MemorySegment.ofArray(f), f.length);
        assertThat(received(h.queues.get(2))).as("queue 1's frame on pair 1").isEqualTo("rx2");
        f = frame(0);
        wire.receivers[0].receive(MemorySegment.ofArray(f), f.length);
        assertThat(received(h.queues.get(0))).as("queue 0's frame on pair 0").isEqualTo("rx0");

        for (int pair = 0; pair < 2; pair++) {
            long tx = h.alloc.allocate(12 + 60, 8);
            h.memory.write(tx + 12, frame(10 + pair), 0, 60);
            h.roundTrip(2 * pair + 1, new Scatterlist().addReadable(tx, 12 + 60));
        }
        assertThat(wire.sent).containsExactly("0:10", "1:11");
    }

    @Test
    void aQueueBeyondThePairsInUseFoldsOntoThem() throws Exception {
        NetDevice dev = new NetDevice(wire, MAC, 2);
        h = new DeviceHarness(dev, FEATURES); // the driver has not asked for a second pair: one in use
        h.queues.get(0).addInBuf(h.alloc.allocate(2048, 8), 2048, "rx0");
        h.queues.get(0).kick();
        byte[] f = frame(1);
        wire.receivers[1].receive(MemorySegment.ofArray(f), f.length);
        assertThat(received(h.queues.get(0))).as("queue 1's frame on the one pair in use").isEqualTo("rx0");
    }
}
