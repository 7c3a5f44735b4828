package io.jvirtio.core.queue;

import io.jvirtio.core.spec.Feature;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Random interleavings of everything both sides can do, over one guest memory: every token comes back
 * exactly once, with the length the device reported and the bytes it wrote; and neither side ever
 * misses a notification the other one asked for.
 */
class RingPropertyTest {

    enum Kind { ADD, KICK, POP, COMPLETE, PUBLISH, GET, DRIVER_ENABLE, DRIVER_DISABLE, DEVICE_ENABLE, DEVICE_DISABLE }

    record Op(Kind kind, int a, int b, int c) {
    }

    record Request(byte[] payload, long[] in, int[] inLen) {
        int inTotal() {
            int t = 0;
            for (int l : inLen) {
                t += l;
            }
            return t;
        }
    }

    record Done(int token, int len) {
    }

    @Provide
    Arbitrary<List<Op>> ops() {
        Arbitrary<Op> op = Combinators.combine(
                Arbitraries.of(Kind.class),
                Arbitraries.integers().between(0, 1000),
                Arbitraries.integers().between(0, 1000),
                Arbitraries.integers().between(0, 1000)).as(Op::new);
        return op.list().ofMinSize(1).ofMaxSize(300);
    }

    /** Split rings round these down to a power of two; packed rings take them as they are. */
    @Provide
    Arbitrary<Integer> sizes() {
        return Arbitraries.of(1, 2, 3, 4, 5, 8, 13, 16);
    }

    @Property(tries = 300)
    void everyTokenComesBackOnceWithItsBytes(@ForAll("ops") List<Op> ops, @ForAll("sizes") int size,
                                             @ForAll boolean eventIdx, @ForAll boolean indirect,
                                             @ForAll boolean packed, @ForAll boolean inOrder) throws Exception {
        long features = (eventIdx ? Feature.EVENT_IDX.mask() : 0) | (indirect ? Feature.INDIRECT_DESC.mask() : 0)
                | (packed ? Feature.RING_PACKED.mask() : 0) | (inOrder ? Feature.IN_ORDER.mask() : 0);
        try (Rings f = new Rings(size, features, 4)) {
            size = f.driver.size();
            Map<Integer, Request> inFlight = new HashMap<>();
            List<DescriptorChain> popped = new ArrayList<>();
            Map<Integer, Integer> headToToken = new HashMap<>();
            List<Done> staged = new ArrayList<>();
            Map<Integer, Integer> publishedLen = new HashMap<>();
            Set<Integer> returned = new HashSet<>();
            int nextToken = 0;
            int addsWhileSleeping = 0;
            boolean deviceSleeping = false;
            boolean driverWaiting = false;
            boolean newlyPublished = false;
            Scatterlist sg = new Scatterlist();

            for (Op op : ops) {
                switch (op.kind()) {
                    case ADD -> {
                        int nOut = 1 + op.a() % 3;
                        int nIn = op.b() % 3;
                        byte[] payload = new byte[nOut * 8 + op.c() % 8];
                        for (int i = 0; i < payload.length; i++) {
                            payload[i] = (byte) (nextToken * 31 + i);
                        }
                        sg.clear();
                        long out = f.buffer(payload.length);
                        f.memory.write(out, payload, 0, payload.length);
                        // split the payload over nOut buffers
                        int per = payload.length / nOut;
                        for (int i = 0; i < nOut; i++) {
                            int len = i + 1 == nOut ? payload.length - per * i : per;
                            sg.addReadable(out + (long) per * i, len);
                        }
                        long[] in = new long[nIn];
                        int[] inLen = new int[nIn];
                        for (int i = 0; i < nIn; i++) {
                            inLen[i] = 1 + (op.c() + i) % 13;
                            in[i] = f.buffer(inLen[i]);
                            sg.addWritable(in[i], inLen[i]);
                        }
                        int token = nextToken;
                        int needed = indirect && nOut + nIn > 1 && nOut + nIn <= 4 ? 1 : nOut + nIn;
                        if (nOut + nIn > size) { // split-drv-8: no chain longer than the queue, indirect or not
                            org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                                    () -> f.driver.addBuf(sg, token));
                        } else if (f.driver.addBuf(sg, token)) {
                            inFlight.put(token, new Request(payload, in, inLen));
                            nextToken++;
                            addsWhileSleeping++;
                        } else {
                            // refused only when there really is no room
                            assertThat(f.driver.numFree()).isLessThan(needed);
                        }
                    }
                    case KICK -> {
                        boolean kicked = f.driver.kick();
                        if (deviceSleeping && addsWhileSleeping > 0) {
                            assertThat(kicked).as("device slept and new buffers were added").isTrue();
                            deviceSleeping = false;
                        }
                    }
                    case POP -> {
                        DescriptorChain c = new DescriptorChain();
                        if (f.device.pop(c)) {
                            popped.add(c);
                            deviceSleeping = false;
                        }
                    }
                    case COMPLETE -> {
                        if (!popped.isEmpty()) {
                            // IN_ORDER: the device uses buffers in the order it took them
                            DescriptorChain c = popped.remove(inOrder ? 0 : op.a() % popped.size());
                            MemorySegment got = Arena.ofAuto().allocate(Math.max(1, c.readableBytes()));
                            assertThat(c.readReadable(0, got)).isEqualTo(c.readableBytes());
                            int token = tokenOf(got, inFlight, c.readableBytes());
                            Request r = inFlight.get(token);
                            byte[] answer = transform(r.payload());
                            int len = (int) c.writeWritable(0, MemorySegment.ofArray(answer));
                            assertThat(len).isEqualTo(Math.min(answer.length, r.inTotal()));
                            // by chain: with IN_ORDER, buffers filled completely share one used entry
                            f.device.addUsed(c, len);
                            staged.add(new Done(token, len));
                        }
                    }
                    case PUBLISH -> {
                        f.device.publishUsed();
                        for (Done d : staged) {
                            publishedLen.put(d.token(), d.len());
                        }
                        newlyPublished |= !staged.isEmpty();
                        staged.clear();
                        boolean notify = f.device.needsNotification();
                        if (driverWaiting && newlyPublished) {
                            assertThat(notify).as("driver enabled callbacks and waits").isTrue();
                        }
                        if (notify) {
                            driverWaiting = false;
                        }
                        newlyPublished = false;
                    }
                    case GET -> {
                        Integer token = f.driver.getBuf();
                        if (token == null) {
                            assertThat(publishedLen.keySet()).as("published but not returned")
                                    .isSubsetOf(returned);
                        } else {
                            driverWaiting = false;
                            assertThat(returned.add(token)).as("token %d returned twice", token).isTrue();
                            assertThat(publishedLen).containsKey(token);
                            assertThat(f.driver.lastLength()).isEqualTo(publishedLen.get(token));
                            check(f, inFlight.remove(token), f.driver.lastLength());
                        }
                    }
                    case DRIVER_ENABLE -> driverWaiting = f.driver.enableCallbacks();
                    case DRIVER_DISABLE -> {
                        f.driver.disableCallbacks();
                        driverWaiting = false;
                    }
                    case DEVICE_ENABLE -> {
                        deviceSleeping = !f.device.enableNotifications();
                        addsWhileSleeping = 0;
                    }
                    case DEVICE_DISABLE -> {
                        f.device.disableNotifications();
                        deviceSleeping = false;
                    }
                }
            }
            // Drain: the device finishes everything, the driver reclaims everything.
            DescriptorChain c = new DescriptorChain();
            List<DescriptorChain> rest = new ArrayList<>(popped);
            while (f.device.pop(c)) {
                rest.add(c);
                c = new DescriptorChain();
            }
            for (DescriptorChain d : rest) {
                MemorySegment got = Arena.ofAuto().allocate(Math.max(1, d.readableBytes()));
                d.readReadable(0, got);
                int token = tokenOf(got, inFlight, d.readableBytes());
                int len = (int) d.writeWritable(0, MemorySegment.ofArray(transform(inFlight.get(token).payload())));
                f.device.addUsed(d, len);
                staged.add(new Done(token, len));
            }
            f.device.publishUsed();
            for (Done d : staged) {
                publishedLen.put(d.token(), d.len());
            }
            Integer token;
            while ((token = f.driver.getBuf()) != null) {
                assertThat(returned.add(token)).isTrue();
                assertThat(f.driver.lastLength()).isEqualTo(publishedLen.get(token));
                check(f, inFlight.remove(token), f.driver.lastLength());
            }
            assertThat(inFlight).as("tokens never returned").isEmpty();
            assertThat(returned).hasSize(nextToken);
            assertThat(f.driver.numFree()).isEqualTo(size);
        }
    }

    /** The device identifies the request by its payload, exactly as the driver wrote it. */
    private static int tokenOf(MemorySegment got, Map<Integer, Request> inFlight, long len) {
        byte[] bytes = got.asSlice(0, len).toArray(ValueLayout.JAVA_BYTE);
        for (Map.Entry<Integer, Request> e : inFlight.entrySet()) {
            if (java.util.Arrays.equals(e.getValue().payload(), bytes)) {
                return e.getKey();
            }
        }
        throw new AssertionError("device read bytes no driver request contains");
    }

    private static byte[] transform(byte[] payload) {
        byte[] out = new byte[payload.length];
        for (int i = 0; i < out.length; i++) {
            out[i] = (byte) (payload[payload.length - 1 - i] ^ 0x5a);
        }
        return out;
    }

    private static void check(Rings f, Request r, int len) throws Exception {
        byte[] expect = transform(r.payload());
        byte[] seen = new byte[len];
        int at = 0;
        for (int i = 0; i < r.in().length && at < len; i++) {
            int n = Math.min(r.inLen()[i], len - at);
            f.memory.read(r.in()[i], seen, at, n);
            at += n;
        }
        assertThat(seen).isEqualTo(java.util.Arrays.copyOf(expect, len));
    }
}
