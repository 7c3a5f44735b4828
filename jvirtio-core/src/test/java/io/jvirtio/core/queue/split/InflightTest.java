package io.jvirtio.core.queue.split;

import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.QueueState;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** vhost-user in-flight tracking: a device that dies mid-batch is finished by the next one. */
class InflightTest {

    @Test
    @io.jvirtio.core.spec.Conformance("vu-inflight-1")
    void restartedDeviceFinishesWhatTheOldOneTookButNeverPublished() throws Exception {
        try (RingFixture f = new RingFixture(8, 0); Arena arena = Arena.ofConfined()) {
            MemorySegment log = arena.allocate(SplitInflight.bytes(8));
            long b = f.buffer(64);
            for (int t = 0; t < 5; t++) {
                f.driver.addOutBuf(b, 8, t);
            }
            DeviceQueue first = f.device;
            first.trackInflight(log); // all zero: a fresh log
            DescriptorChain c = new DescriptorChain();
            List<Integer> taken = new ArrayList<>();
            for (int i = 0; i < 4; i++) {
                assertThat(first.pop(c)).isTrue();
                taken.add(c.head());
            }
            first.addUsed(taken.get(0), 0);
            first.publishUsed();          // token 0 done and logged
            first.addUsed(taken.get(1), 0); // staged, never published: the device dies here

            DeviceQueue second = DeviceQueue.create(f.memory, 0, 8, f.driver.addresses(), 0, QueueState.INITIAL);
            second.trackInflight(log);
            List<Integer> again = new ArrayList<>();
            for (int i = 0; i < 3; i++) {
                assertThat(second.pop(c)).isTrue();
                again.add(c.head());
            }
            assertThat(again).as("in flight, oldest first").containsExactly(taken.get(1), taken.get(2), taken.get(3));
            assertThat(second.pop(c)).as("then the one never taken").isTrue();
            int fifth = c.head();
            assertThat(second.pop(c)).isFalse();
            for (int h : again) {
                second.addUsed(h, 0);
            }
            second.addUsed(fifth, 0);
            second.publishUsed();
            List<Integer> tokens = new ArrayList<>();
            Integer t;
            while ((t = f.driver.getBuf()) != null) {
                tokens.add(t);
            }
            assertThat(tokens).containsExactly(0, 1, 2, 3, 4);
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("vu-inflight-1")
    void batchPublishedButNotLoggedIsNotRedone() throws Exception {
        try (RingFixture f = new RingFixture(8, 0); Arena arena = Arena.ofConfined()) {
            MemorySegment log = arena.allocate(SplitInflight.bytes(8));
            long b = f.buffer(64);
            f.driver.addOutBuf(b, 8, 0);
            f.driver.addOutBuf(b, 8, 1);
            f.device.trackInflight(log);
            DescriptorChain c = new DescriptorChain();
            f.device.pop(c);
            int h0 = c.head();
            f.device.pop(c);
            int h1 = c.head();
            f.device.addUsed(h0, 0);
            f.device.addUsed(h1, 0);
            // the device dies after used.idx reached the ring but before the log cleared the batch
            f.memory.writeU16(f.driver.addresses().usedRing() + 2, (short) 2);

            DeviceQueue second = DeviceQueue.create(f.memory, 0, 8, f.driver.addresses(), 0, QueueState.INITIAL);
            second.trackInflight(log);
            assertThat(second.pop(c)).as("nothing to redo, nothing new").isFalse();
            assertThat(f.driver.getBuf()).isEqualTo(0);
            assertThat(f.driver.getBuf()).isEqualTo(1);
        }
    }
}
