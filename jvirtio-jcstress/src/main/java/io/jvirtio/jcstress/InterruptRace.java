package io.jvirtio.jcstress;

import org.openjdk.jcstress.annotations.Actor;
import org.openjdk.jcstress.annotations.Expect;
import org.openjdk.jcstress.annotations.JCStressTest;
import org.openjdk.jcstress.annotations.Outcome;
import org.openjdk.jcstress.annotations.State;
import org.openjdk.jcstress.infra.results.ZZ_Result;

/**
 * The used-buffer notification handshake (§2.7.7, §2.7.13.5 and Linux {@code virtqueue_enable_cb}). The
 * driver had interrupts disabled and is about to wait: it re-enables them and re-checks the used ring
 * ({@code DriverQueue.enableCallbacks}). Meanwhile the device publishes a used buffer and asks whether to
 * interrupt ({@code DeviceQueue.needsNotification}). Without either side's fence both may see the old value:
 * no interrupt, and a driver that waits for one forever.
 *
 * <p>r1: the device interrupts; r2: the driver's re-check sees the used buffer.
 */
public final class InterruptRace {
    private InterruptRace() {
    }

    /** One buffer served to the end (used_event now stale), a second one taken by the device. */
    static Ring prepare(boolean eventIdx) {
        return prepare(eventIdx, false);
    }

    static Ring prepare(boolean eventIdx, boolean packed) {
        Ring ring = new Ring(eventIdx, packed);
        ring.oneRoundTrip();
        ring.head = ring.offerAndTake(2);
        ring.driver.disableCallbacks();
        return ring;
    }

    static void device(Ring ring, ZZ_Result r) {
        ring.device.addUsed(ring.head, 64);
        ring.device.publishUsed();
        r.r1 = ring.device.needsNotification();
    }

    static void driver(Ring ring, ZZ_Result r) {
        r.r2 = !ring.driver.enableCallbacks(); // false means "used buffers are already there"
    }

    @JCStressTest
    @Outcome(id = "false, false", expect = Expect.FORBIDDEN, desc = "lost interrupt: the driver would wait forever")
    @Outcome(expect = Expect.ACCEPTABLE, desc = "the driver reaps the buffer")
    @State
    public static class WithoutEventIdx {
        final Ring ring = prepare(false);

        @Actor
        public void device(ZZ_Result r) {
            InterruptRace.device(ring, r);
        }

        @Actor
        public void driver(ZZ_Result r) {
            InterruptRace.driver(ring, r);
        }
    }

    @JCStressTest
    @Outcome(id = "false, false", expect = Expect.FORBIDDEN, desc = "lost interrupt: the driver would wait forever")
    @Outcome(expect = Expect.ACCEPTABLE, desc = "the driver reaps the buffer")
    @State
    public static class WithEventIdx {
        final Ring ring = prepare(true);

        @Actor
        public void device(ZZ_Result r) {
            InterruptRace.device(ring, r);
        }

        @Actor
        public void driver(ZZ_Result r) {
            InterruptRace.driver(ring, r);
        }
    }

    @JCStressTest
    @Outcome(id = "false, false", expect = Expect.FORBIDDEN, desc = "lost interrupt: the driver would wait forever")
    @Outcome(expect = Expect.ACCEPTABLE, desc = "the driver reaps the buffer")
    @State
    public static class PackedWithoutEventIdx {
        final Ring ring = prepare(false, true);

        @Actor
        public void device(ZZ_Result r) {
            InterruptRace.device(ring, r);
        }

        @Actor
        public void driver(ZZ_Result r) {
            InterruptRace.driver(ring, r);
        }
    }

    @JCStressTest
    @Outcome(id = "false, false", expect = Expect.FORBIDDEN, desc = "lost interrupt: the driver would wait forever")
    @Outcome(expect = Expect.ACCEPTABLE, desc = "the driver reaps the buffer")
    @State
    public static class PackedWithEventIdx {
        final Ring ring = prepare(true, true);

        @Actor
        public void device(ZZ_Result r) {
            InterruptRace.device(ring, r);
        }

        @Actor
        public void driver(ZZ_Result r) {
            InterruptRace.driver(ring, r);
        }
    }
}
