package io.jvirtio.jcstress;

import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.queue.VirtqueueException;
import org.openjdk.jcstress.annotations.Actor;
import org.openjdk.jcstress.annotations.Expect;
import org.openjdk.jcstress.annotations.JCStressTest;
import org.openjdk.jcstress.annotations.Outcome;
import org.openjdk.jcstress.annotations.State;
import org.openjdk.jcstress.infra.results.IJ_Result;

/**
 * Publication of a buffer through an index (§2.7.13.3, §2.7.8): what the index covers must be written before
 * the index moves, and read after it is seen. The driver writes a descriptor and the available ring entry,
 * then {@code avail.idx} (store-release); the device reads {@code avail.idx} (load-acquire), then the
 * descriptor. The device writes a used element, then {@code used.idx}; the driver reads {@code used.idx},
 * then the element. A reader that sees the new index with the old entry would take a stale descriptor
 * (or a stale length) as the driver's (device's) word.
 *
 * <p>On x86 (TSO) the processor keeps stores in order and loads in order, so these tests catch the
 * index being written before what it covers (in program order or by the JIT); on weaker processors
 * (aarch64) they also catch a plain store in place of the release.
 */
public final class PublishRace {
    private PublishRace() {
    }

    static final int LENGTH = 48;

    /** r1: 1 if the device took a chain (0 if not yet, -1 if what it read was not a valid chain); r2: its bytes. */
    @JCStressTest
    @Outcome(id = {"0, 0", "1, 48"}, expect = Expect.ACCEPTABLE, desc = "not yet published, or published whole")
    @Outcome(expect = Expect.FORBIDDEN, desc = "the device saw avail.idx move before the descriptor it covers")
    @State
    public static class Available {
        final Ring ring = new Ring(false);
        final DescriptorChain chain = new DescriptorChain();
        final Scatterlist sg = new Scatterlist();

        public Available() {
            ring.oneRoundTrip(); // the descriptor the next buffer takes now holds the first buffer's values
        }

        @Actor
        public void driver() {
            PublishRace.driver(ring, sg);
        }

        @Actor
        public void device(IJ_Result r) {
            PublishRace.device(ring, chain, r);
        }
    }

    @io.jvirtio.core.spec.Conformance("split-drv-19")
    static void driver(Ring ring, Scatterlist sg) {
        // a different length and direction from the round trip's buffer (64 bytes, writable)
        ring.driver.addBuf(sg.clear().addReadable(ring.buffer + 8, LENGTH), 2);
    }

    static void device(Ring ring, DescriptorChain chain, IJ_Result r) {
        try {
            if (ring.device.pop(chain)) {
                r.r1 = 1;
                r.r2 = chain.readableBytes() + chain.writableBytes() * 1000;
            }
        } catch (VirtqueueException e) {
            r.r1 = -1;
        }
    }

    /** r1: 1 if the driver reaped the buffer (0 if not yet); r2: the length the device reported. */
    @JCStressTest
    @Outcome(id = {"0, 0", "1, 48"}, expect = Expect.ACCEPTABLE, desc = "not yet used, or used with its length")
    @Outcome(expect = Expect.FORBIDDEN, desc = "the driver saw used.idx move before the used element it covers")
    @State
    public static class Used {
        final Ring ring = new Ring(false);
        final int head;

        public Used() {
            ring.oneRoundTrip(); // the used element the next one takes is still zero; the one before says 64
            ring.oneRoundTrip();
            head = ring.offerAndTake(3);
        }

        @Actor
        public void device() {
            PublishRace.deviceUses(ring, head);
        }

        @Actor
        public void driver(IJ_Result r) {
            PublishRace.driverReaps(ring, r);
        }
    }

    /** r1: 1 if the driver reaped a buffer (0 if none yet, -1 if what it read was not one in flight); r2: its length. */
    static void driverReaps(Ring ring, IJ_Result r) {
        try {
            Integer token = ring.driver.getBuf();
            if (token != null) {
                r.r1 = 1;
                r.r2 = ring.driver.lastLength();
            }
        } catch (VirtqueueException e) {
            r.r1 = -1;
        }
    }

    @io.jvirtio.core.spec.Conformance("split-dev-9")
    static void deviceUses(Ring ring, int head) {
        ring.device.addUsed(head, LENGTH);
        ring.device.publishUsed();
    }

    @io.jvirtio.core.spec.Conformance("packed-drv-8")
    static void driverPacked(Ring ring, Scatterlist sg) {
        driver(ring, sg); // the list's descriptors, then the first one's flags (§2.8.13)
    }

    @JCStressTest
    @Outcome(id = {"0, 0", "1, 48"}, expect = Expect.ACCEPTABLE, desc = "not yet available, or available whole")
    @Outcome(expect = Expect.FORBIDDEN, desc = "the device saw the flags before the descriptor they make available")
    @State
    public static class PackedAvailable {
        final Ring ring = new Ring(false, true);
        final DescriptorChain chain = new DescriptorChain();
        final Scatterlist sg = new Scatterlist();

        public PackedAvailable() {
            ring.oneRoundTrip();
        }

        @Actor
        public void driver() {
            PublishRace.driverPacked(ring, sg);
        }

        @Actor
        public void device(IJ_Result r) {
            PublishRace.device(ring, chain, r);
        }
    }

    @JCStressTest
    @Outcome(id = {"0, 0", "1, 48"}, expect = Expect.ACCEPTABLE, desc = "not yet used, or used with its length")
    @Outcome(expect = Expect.FORBIDDEN, desc = "the driver saw the used flags before the length they cover")
    @State
    public static class PackedUsed {
        final Ring ring = new Ring(false, true);
        final int head;

        public PackedUsed() {
            ring.oneRoundTrip();
            ring.oneRoundTrip();
            head = ring.offerAndTake(3);
        }

        @Actor
        public void device() {
            PublishRace.deviceUses(ring, head);
        }

        @Actor
        public void driver(IJ_Result r) {
            PublishRace.driverReaps(ring, r);
        }
    }
}
