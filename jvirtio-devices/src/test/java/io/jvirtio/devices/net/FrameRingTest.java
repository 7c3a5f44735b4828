package io.jvirtio.devices.net;

import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The queue senders' threads put frames in for a NIC's receive thread: with producers racing each other and the
 * consumer, every frame comes out whole (its bytes and length as offered, never a slot still being written),
 * each producer's in its order, and a full queue refuses rather than overwrites.
 */
class FrameRingTest {
    static final int PER_PRODUCER = 200_000;

    @Test
    void framesFromRacingProducersComeOutWholeAndInEachProducersOrder() throws Exception {
        FrameRing ring = new FrameRing(64, 256);
        Thread[] producers = new Thread[2];
        for (int p = 0; p < producers.length; p++) {
            int producer = p;
            producers[p] = Thread.ofPlatform().start(() -> {
                MemorySegment frame = MemorySegment.ofArray(new byte[256]);
                for (int seq = 0; seq < PER_PRODUCER; seq++) {
                    int length = 8 + seq % 200; // lengths vary, so a stale length shows too
                    frame.set(ValueLayout.JAVA_INT_UNALIGNED, 0, producer);
                    frame.set(ValueLayout.JAVA_INT_UNALIGNED, 4, seq);
                    for (int i = 8; i < length; i++) {
                        frame.set(ValueLayout.JAVA_BYTE, i, (byte) (seq + i));
                    }
                    while (!ring.offer(frame, 0, length)) {
                        Thread.onSpinWait(); // full: refused, offered again
                    }
                }
            });
        }
        int[] next = new int[producers.length];
        long deadline = System.nanoTime() + 60_000_000_000L;
        int taken = 0;
        while (taken < producers.length * PER_PRODUCER && System.nanoTime() < deadline) {
            if (ring.isEmpty()) {
                Thread.onSpinWait();
                continue;
            }
            MemorySegment s = ring.slots();
            long at = ring.headOffset();
            int length = ring.headLength();
            int producer = s.get(ValueLayout.JAVA_INT_UNALIGNED, at);
            int seq = s.get(ValueLayout.JAVA_INT_UNALIGNED, at + 4);
            assertThat(producer).isBetween(0, producers.length - 1);
            assertThat(seq).as("producer %d's frames in order", producer).isEqualTo(next[producer]);
            assertThat(length).as("frame %d of producer %d: its length", seq, producer).isEqualTo(8 + seq % 200);
            for (int i = 8; i < length; i++) {
                if (s.get(ValueLayout.JAVA_BYTE, at + i) != (byte) (seq + i)) {
                    throw new AssertionError("frame " + seq + " of producer " + producer + ": byte " + i + " not as offered");
                }
            }
            next[producer]++;
            ring.poll();
            taken++;
        }
        for (Thread t : producers) {
            t.join();
        }
        assertThat(next).containsOnly(PER_PRODUCER);
        assertThat(ring.isEmpty()).isTrue();
        ring.close();
    }

    @Test
    void aFullQueueRefusesTheNextFrameAndAFrameLargerThanASlot() {
        FrameRing ring = new FrameRing(4, 64);
        MemorySegment frame = MemorySegment.ofArray(new byte[128]);
        for (int i = 0; i < 4; i++) {
            frame.set(ValueLayout.JAVA_BYTE, 0, (byte) i);
            assertThat(ring.offer(frame, 0, 60)).isTrue();
        }
        assertThat(ring.offer(frame, 0, 60)).as("full").isFalse();
        assertThat(ring.slots().get(ValueLayout.JAVA_BYTE, ring.headOffset())).as("the first kept").isZero();
        ring.poll();
        assertThat(ring.offer(frame, 0, 60)).as("a slot freed").isTrue();
        assertThat(ring.offer(frame, 0, 65)).as("larger than a slot").isFalse();
        ring.close();
    }
}
