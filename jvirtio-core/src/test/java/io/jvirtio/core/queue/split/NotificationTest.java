package io.jvirtio.core.queue.split;

import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.VirtqueueException;
import io.jvirtio.core.spec.Feature;
import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;

/** Notification suppression in both directions, §2.7.7 and §2.7.10, with and without EVENT_IDX. */
class NotificationTest {
    static final long EVENT_IDX = Feature.EVENT_IDX.mask();

    @Test
    void needEventIsTheSpecFormulaAcrossWraparound() {
        assertThat(Virtq.needEvent(5, 6, 5)).isTrue();     // crossed exactly
        assertThat(Virtq.needEvent(5, 5, 4)).isFalse();    // not reached (idx must pass event)
        assertThat(Virtq.needEvent(5, 10, 6)).isFalse();   // already passed before old
        assertThat(Virtq.needEvent(0xffff, 0, 0xfffe)).isTrue();   // wraps
        assertThat(Virtq.needEvent(0xfffe, 3, 0xfff0)).isTrue();
        assertThat(Virtq.needEvent(2, 3, 0xfffd)).isTrue();
        assertThat(Virtq.needEvent(4, 3, 0xfffd)).isFalse();
        assertThat(Virtq.needEvent(7, 7, 7)).isFalse();    // nothing new
    }

    @Test
    @io.jvirtio.core.spec.Conformance("split-drv-17")
    void noNotifyFlagSuppressesKicksWithoutEventIdx() throws Exception {
        try (RingFixture f = new RingFixture(8, 0)) {
            long b = f.buffer(8);
            f.device.disableNotifications();
            assertThat(f.usedFlags()).isEqualTo(1);
            f.driver.addOutBuf(b, 8, 1);
            assertThat(f.driver.kick()).isFalse();
            assertThat(f.device.enableNotifications()).as("a buffer arrived while notifications were off").isTrue();
            assertThat(f.usedFlags()).isZero();
            f.driver.addOutBuf(b, 8, 2);
            assertThat(f.driver.kick()).isTrue();
            assertThat(f.doorbells.get()).isEqualTo(1);
        }
    }

    /**
     * A polling device disables notifications every round: once they are off, nothing more is written — a store
     * to the line the driver reads {@code used.idx} from would take that line from the driver's CPU each round.
     */
    @Test
    void disablingNotificationsThatAreOffWritesNothing() throws Exception {
        try (RingFixture f = new RingFixture(8, 0)) {
            f.device.disableNotifications();
            assertThat(f.usedFlags()).isEqualTo(1);
            f.memory.writeU16(f.driver.addresses().usedRing(), (short) 0); // a marker: a second write would reset it
            f.device.disableNotifications();
            assertThat(f.usedFlags()).as("already off: not written again").isZero();
            f.device.enableNotifications();
            f.device.disableNotifications();
            assertThat(f.usedFlags()).as("on, then off: written").isEqualTo(1);
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("split-drv-18")
    void availEventDecidesKicksWithEventIdx() throws Exception {
        try (RingFixture f = new RingFixture(8, EVENT_IDX)) {
            long b = f.buffer(8);
            DescriptorChain c = new DescriptorChain();
            assertThat(f.device.enableNotifications()).isFalse();
            assertThat(f.availEvent(8)).isZero();
            f.driver.addOutBuf(b, 8, 1);
            assertThat(f.driver.kick()).as("crossed avail_event 0").isTrue();
            f.device.disableNotifications();
            assertThat(f.usedFlags()).as("with EVENT_IDX the device leaves the flags alone").isZero();
            f.driver.addOutBuf(b, 8, 2);
            assertThat(f.driver.kick()).as("avail_event still 0; device is busy").isFalse();
            assertThat(f.device.pop(c)).isTrue();
            assertThat(f.device.pop(c)).isTrue();
            assertThat(f.device.enableNotifications()).isFalse();
            assertThat(f.availEvent(8)).isEqualTo(2);
            f.driver.addOutBuf(b, 8, 3);
            f.driver.addOutBuf(b, 8, 4);
            assertThat(f.driver.kick()).as("batch 2..4 crossed avail_event 2").isTrue();
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("split-dev-7")
    void noInterruptFlagSuppressesInterruptsWithoutEventIdx() throws Exception {
        try (RingFixture f = new RingFixture(8, 0)) {
            long b = f.buffer(8);
            DescriptorChain c = new DescriptorChain();
            f.driver.addOutBuf(b, 8, 1);
            f.driver.addOutBuf(b, 8, 2);
            f.driver.disableCallbacks();
            assertThat(f.availFlags()).isEqualTo(1);
            f.device.pop(c);
            f.device.addUsed(c.head(), 0);
            f.device.publishUsed();
            assertThat(f.device.needsNotification()).isFalse();
            assertThat(f.driver.enableCallbacks()).as("one used buffer is pending").isFalse();
            assertThat(f.availFlags()).isZero();
            f.device.pop(c);
            f.device.addUsed(c.head(), 0);
            f.device.publishUsed();
            assertThat(f.device.needsNotification()).isTrue();
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("split-dev-8")
    void usedEventDecidesInterruptsWithEventIdx() throws Exception {
        try (RingFixture f = new RingFixture(8, EVENT_IDX)) {
            long b = f.buffer(8);
            DescriptorChain c = new DescriptorChain();
            for (int t = 0; t < 4; t++) {
                f.driver.addOutBuf(b, 8, t);
            }
            assertThat(f.driver.enableCallbacks()).isTrue();
            assertThat(f.usedEvent(8)).isZero();
            complete(f, c, 1);
            assertThat(f.device.needsNotification()).as("first notification is always sent").isTrue();
            complete(f, c, 1);
            assertThat(f.device.needsNotification()).as("used_event 0 was already passed").isFalse();
            assertThat(f.driver.getBuf()).isEqualTo(0);
            assertThat(f.usedEvent(8)).as("getBuf with callbacks on asks for the next one").isEqualTo(1);
            assertThat(f.driver.getBuf()).isEqualTo(1);
            assertThat(f.usedEvent(8)).isEqualTo(2);
            complete(f, c, 1);
            assertThat(f.device.needsNotification()).isTrue();
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("split-drv-13")
    void disabledCallbacksWithEventIdxKeepFlagsZeroAndSuppressEverything() throws Exception {
        try (RingFixture f = new RingFixture(8, EVENT_IDX)) {
            long b = f.buffer(8);
            DescriptorChain c = new DescriptorChain();
            f.device.needsNotification(); // spend the unconditional first notification
            f.driver.disableCallbacks();
            assertThat(f.availFlags()).as("§2.7.7: with EVENT_IDX the driver MUST set flags to 0").isZero();
            for (int round = 0; round < 40; round++) {
                for (int t = 0; t < 8; t++) {
                    assertThat(f.driver.addOutBuf(b, 8, t)).isTrue();
                }
                for (int t = 0; t < 8; t++) {
                    complete(f, c, 1);
                    assertThat(f.device.needsNotification()).isFalse();
                }
                while (f.driver.getBuf() != null) {
                    // reclaim; callbacks stay off, so used_event is not moved
                }
            }
        }
    }

    @Test
    void enableCallbacksDelayedWaitsForThreeQuarters() throws Exception {
        try (RingFixture f = new RingFixture(8, EVENT_IDX)) {
            long b = f.buffer(8);
            DescriptorChain c = new DescriptorChain();
            f.device.needsNotification();
            f.driver.disableCallbacks();
            for (int t = 0; t < 8; t++) {
                f.driver.addOutBuf(b, 8, t);
            }
            assertThat(f.driver.enableCallbacksDelayed()).isTrue();
            assertThat(f.usedEvent(8)).isEqualTo(6);
            for (int i = 0; i < 6; i++) {
                complete(f, c, 1);
                assertThat(f.device.needsNotification()).as("after %d", i + 1).isFalse();
            }
            complete(f, c, 1);
            assertThat(f.device.needsNotification()).as("7th crosses used_event 6").isTrue();
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("split-drv-18")
    void noKickIsLostAcrossIndexWraparound() throws Exception {
        // 200k buffers through a queue of 4 crosses the 16-bit index wrap three times. Whenever the device
        // has gone to sleep (enableNotifications said "nothing more"), the driver's next kick must fire.
        for (long features : new long[] {0, EVENT_IDX}) {
            try (RingFixture f = new RingFixture(4, features)) {
                long b = f.buffer(8);
                DescriptorChain c = new DescriptorChain();
                java.util.Random rnd = new java.util.Random(42);
                boolean sleeping = !f.device.enableNotifications();
                int outstanding = 0;
                for (int i = 0; i < 200_000; ) {
                    int burst = outstanding < 4 ? 1 + rnd.nextInt(4 - outstanding) : 0;
                    for (int k = 0; k < burst; k++, i++) {
                        assertThat(f.driver.addOutBuf(b, 8, i)).isTrue();
                    }
                    outstanding += burst;
                    boolean kicked = f.driver.kick();
                    if (sleeping && burst > 0) {
                        assertThat(kicked).as("kick after device slept, buffer %d, features %x", i, features).isTrue();
                    }
                    // Device consumes some or all, then maybe goes to sleep.
                    f.device.disableNotifications();
                    int take = rnd.nextInt(outstanding + 1);
                    for (int k = 0; k < take; k++) {
                        assertThat(f.device.pop(c)).isTrue();
                        f.device.addUsed(c.head(), 0);
                    }
                    f.device.publishUsed();
                    outstanding -= take;
                    while (f.driver.getBuf() != null) {
                        // reclaim
                    }
                    sleeping = outstanding == 0 && !f.device.enableNotifications();
                    if (outstanding > 0 && rnd.nextBoolean()) {
                        while (f.device.pop(c)) {
                            f.device.addUsed(c.head(), 0);
                            outstanding--;
                        }
                        f.device.publishUsed();
                        while (f.driver.getBuf() != null) {
                            // reclaim
                        }
                        sleeping = !f.device.enableNotifications();
                    }
                }
            }
        }
    }

    private static void complete(RingFixture f, DescriptorChain c, int n) throws VirtqueueException {
        for (int i = 0; i < n; i++) {
            assertThat(f.device.pop(c)).isTrue();
            f.device.addUsed(c.head(), 0);
        }
        f.device.publishUsed();
    }
}
