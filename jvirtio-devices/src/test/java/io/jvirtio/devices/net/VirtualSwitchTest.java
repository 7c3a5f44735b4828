package io.jvirtio.devices.net;

import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** The switch's learning and forwarding, and a link (a TAP device, another switch) plugged into a port. */
class VirtualSwitchTest {
    static byte[] frame(int to, int from) {
        byte[] f = new byte[60];
        f[0] = 0x52;
        f[5] = (byte) to;
        f[6] = 0x52;
        f[11] = (byte) from;
        f[12] = 0x08;
        return f;
    }

    static void send(NetBackend port, byte[] f) {
        port.transmit(MemorySegment.ofArray(f), f.length);
    }

    /** A port's frames, as the last byte of their destination and source. */
    static List<String> recording(NetBackend port) {
        List<String> got = new ArrayList<>();
        port.connect((b, at, n) -> got.add(b.get(java.lang.foreign.ValueLayout.JAVA_BYTE, at + 5) + "<"
                + b.get(java.lang.foreign.ValueLayout.JAVA_BYTE, at + 11) + ":" + n));
        return got;
    }

    @Test
    void aLinkPluggedIntoAPortCarriesFramesBothWaysAndClosingItUnplugsIt() {
        VirtualSwitch a = new VirtualSwitch();
        VirtualSwitch b = new VirtualSwitch();
        NetBackend nicA = a.port();
        NetBackend nicB = b.port();
        List<String> atA = recording(nicA);
        List<String> atB = recording(nicB);
        VirtualSwitch.Attached link = a.attach(b.port()); // two switches joined, as a TAP joins the host's stack
        assertThat(a.portCount()).isEqualTo(2);

        send(nicA, frame(2, 1));           // unknown destination: flooded over the link to b, and to nicB
        assertThat(atB).containsExactly("2<1:60");
        send(nicB, frame(1, 2));           // b learned nothing of 1 yet: flooded back; a knows 1 is nicA
        assertThat(atA).containsExactly("1<2:60");
        send(nicA, frame(2, 1));           // a learned 2 is behind the link: forwarded, not flooded
        assertThat(atB).containsExactly("2<1:60", "2<1:60");
        assertThat(a.forwarded()).isEqualTo(2);

        link.close();
        assertThat(a.portCount()).as("the link's port left switch a").isEqualTo(1);
        assertThat(b.portCount()).as("and the link, a port of b, was closed").isEqualTo(1);
        send(nicA, frame(2, 1));
        assertThat(atB).as("nothing crosses an unplugged link").hasSize(2);
    }

    /** A port closed is gone for good: what it still sends reaches nobody, and its address is not learned again. */
    @Test
    void aClosedPortSwitchesNothingAndIsNotLearnedAgain() {
        VirtualSwitch sw = new VirtualSwitch();
        NetBackend one = sw.port();
        NetBackend two = sw.port();
        List<String> atTwo = recording(two);
        one.close();
        send(one, frame(2, 1)); // a late sender on the closed port
        assertThat(atTwo).as("nothing from a closed port").isEmpty();
        send(two, frame(1, 2)); // to 1: were 1 learned behind the closed port, it would be forwarded there
        assertThat(sw.forwarded()).as("1 unknown: flooded, not forwarded to a closed port").isZero();
        assertThat(sw.flooded()).isEqualTo(1);
    }

    /**
     * Switching allocates nothing per frame — also when an address flaps between two ports on every frame,
     * as a forwarding loop makes it (this used to copy the address table, under a lock, per frame), and with
     * the responder on the switch (it used to copy every IPv4 frame flooded to it).
     */
    @org.junit.jupiter.params.ParameterizedTest(name = "offload ports: {0}")
    @org.junit.jupiter.params.provider.ValueSource(booleans = {false, true})
    void switchingAFlappingAddressAllocatesNothingPerFrame(boolean offload) throws Exception {
        VirtualSwitch sw = new VirtualSwitch();
        // offload ports (serve net's NICs): frames behind a virtio-net header, passed on as they are
        NetBackend one = offload ? sw.offloadPort() : sw.port();
        NetBackend two = offload ? sw.offloadPort() : sw.port();
        one.acceptOffloads(VirtualSwitch.OFFLOADS);
        two.acceptOffloads(VirtualSwitch.OFFLOADS);
        int h = offload ? io.jvirtio.core.spec.Net.HDR_SIZE : 0;
        long[] seen = new long[2];
        one.connect((b, at, n) -> seen[0]++);
        two.connect((b, at, n) -> seen[1]++);
        // and the demo host, which every flooded frame reaches too: an IPv4 frame not for it is not copied
        Responder host = new Responder(sw, new byte[] {0x52, 0x54, 0, 0, 0, 7}, new byte[] {10, 0, 0, 1});
        MemorySegment f = java.lang.foreign.Arena.global().allocate(h + 60);
        MemorySegment.copy(MemorySegment.ofArray(frame(9, 1)), 0, f, h, 60); // to an address never seen
        // Through reflection, as NoAllocationTest: the module under test does not read java.management.
        Object mx;
        java.lang.reflect.Method allocatedBytes;
        try {
            mx = Class.forName("java.lang.management.ManagementFactory").getMethod("getThreadMXBean").invoke(null);
            allocatedBytes = Class.forName("com.sun.management.ThreadMXBean").getMethod("getCurrentThreadAllocatedBytes");
        } catch (ReflectiveOperationException e) {
            org.junit.jupiter.api.Assumptions.abort("SKIPPED: no per-thread allocation counters here: " + e);
            return;
        }
        for (int warm = 0; warm < 100_000; warm++) { // long enough for C2 on a busy machine
            one.transmit(f, h + 60);
            two.transmit(f, h + 60);
        }
        long best = Long.MAX_VALUE; // the best of five rounds: a JIT recompilation may allocate meanwhile
        for (int round = 0; round < 5; round++) {
            long before = (long) allocatedBytes.invoke(mx);
            for (int i = 0; i < 100_000; i++) {
                one.transmit(f, h + 60);  // source 1 behind port one...
                two.transmit(f, h + 60);  // ...then behind port two
            }
            best = Math.min(best, (long) allocatedBytes.invoke(mx) - before);
        }
        assertThat(seen[0] + seen[1]).isEqualTo(200_000 + 1_000_000);
        assertThat(best).as("bytes allocated for 200,000 frames").isLessThan(10_000);
        assertThat(host.echoReplies.get() + host.arpReplies.get()).isZero();
    }
}
