package io.jvirtio.jcstress;

import io.jvirtio.core.queue.VirtqueueException;
import org.openjdk.jcstress.annotations.Actor;
import org.openjdk.jcstress.annotations.Expect;
import org.openjdk.jcstress.annotations.JCStressTest;
import org.openjdk.jcstress.annotations.Outcome;
import org.openjdk.jcstress.annotations.State;
import org.openjdk.jcstress.infra.results.ZZ_Result;

/**
 * The available-buffer notification handshake (§2.7.10, §2.7.13.4). The device was serving with
 * notifications disabled and is about to sleep: it re-enables them and re-checks the ring
 * ({@code DeviceQueue.enableNotifications}). Meanwhile the driver publishes a buffer and asks whether to
 * kick ({@code DriverQueue.kickPrepare}). Each side stores, fences, then loads what the other stored; without
 * either fence both loads may see the old values (x86 reorders a store with a later load), the driver does
 * not kick, the device sleeps, and the buffer is never served.
 *
 * <p>r1: the driver kicks; r2: the device's re-check sees the buffer.
 */
public final class KickRace {
    private KickRace() {
    }

    @io.jvirtio.core.spec.Conformance("split-drv-20")
    static void driver(Ring ring, ZZ_Result r) {
        ring.driver.addOutBuf(ring.buffer, 64, 1);
        r.r1 = ring.driver.kickPrepare();
    }

    static void device(Ring ring, ZZ_Result r) {
        try {
            r.r2 = ring.device.enableNotifications();
        } catch (VirtqueueException e) {
            throw new AssertionError(e);
        }
    }

    @JCStressTest
    @Outcome(id = "false, false", expect = Expect.FORBIDDEN, desc = "lost kick: the buffer would never be served")
    @Outcome(expect = Expect.ACCEPTABLE, desc = "the device serves the buffer")
    @State
    public static class WithoutEventIdx {
        final Ring ring = new Ring(false);

        public WithoutEventIdx() {
            ring.oneRoundTrip();
            ring.device.disableNotifications();
        }

        @Actor
        public void driver(ZZ_Result r) {
            KickRace.driver(ring, r);
        }

        @Actor
        public void device(ZZ_Result r) {
            KickRace.device(ring, r);
        }
    }

    @JCStressTest
    @Outcome(id = "false, false", expect = Expect.FORBIDDEN, desc = "lost kick: the buffer would never be served")
    @Outcome(expect = Expect.ACCEPTABLE, desc = "the device serves the buffer")
    @State
    public static class WithEventIdx {
        final Ring ring = new Ring(true);

        public WithEventIdx() {
            ring.oneRoundTrip(); // avail_event is now stale: without the device's update, no kick
            ring.device.disableNotifications();
        }

        @Actor
        public void driver(ZZ_Result r) {
            KickRace.driver(ring, r);
        }

        @Actor
        public void device(ZZ_Result r) {
            KickRace.device(ring, r);
        }
    }

    @io.jvirtio.core.spec.Conformance("packed-drv-9")
    static void driverPacked(Ring ring, ZZ_Result r) {
        driver(ring, r); // the same handshake over the event suppression structures of §2.8.10
    }

    @JCStressTest
    @Outcome(id = "false, false", expect = Expect.FORBIDDEN, desc = "lost kick: the buffer would never be served")
    @Outcome(expect = Expect.ACCEPTABLE, desc = "the device serves the buffer")
    @State
    public static class PackedWithoutEventIdx {
        final Ring ring = new Ring(false, true);

        public PackedWithoutEventIdx() {
            ring.oneRoundTrip();
            ring.device.disableNotifications();
        }

        @Actor
        public void driver(ZZ_Result r) {
            KickRace.driverPacked(ring, r);
        }

        @Actor
        public void device(ZZ_Result r) {
            KickRace.device(ring, r);
        }
    }

    @JCStressTest
    @Outcome(id = "false, false", expect = Expect.FORBIDDEN, desc = "lost kick: the buffer would never be served")
    @Outcome(expect = Expect.ACCEPTABLE, desc = "the device serves the buffer")
    @State
    public static class PackedWithEventIdx {
        final Ring ring = new Ring(true, true);

        public PackedWithEventIdx() {
            ring.oneRoundTrip();
            ring.device.disableNotifications();
        }

        @Actor
        public void driver(ZZ_Result r) {
            KickRace.driverPacked(ring, r);
        }

        @Actor
        public void device(ZZ_Result r) {
            KickRace.device(ring, r);
        }
    }
}
