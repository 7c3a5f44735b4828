package io.jvirtio.devices.net;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The switch's traffic source ({@code serve net --generate}): its frame, and when it sends. */
class PacketGeneratorTest {
    @Test
    void itsFrameIsAnIpv4UdpBroadcastOfTheSizeAskedWithAValidHeaderChecksum() {
        MemorySegment f = Arena.ofAuto().allocate(100);
        PacketGenerator.udpFrame(f, 100);
        byte[] b = f.toArray(ValueLayout.JAVA_BYTE);
        assertThat(java.util.Arrays.copyOfRange(b, 0, 6)).containsOnly((byte) 0xff);
        assertThat(java.util.Arrays.copyOfRange(b, 6, 12)).containsExactly(PacketGenerator.MAC);
        assertThat(b[12]).isEqualTo((byte) 0x08);
        assertThat(b[13]).isZero();
        assertThat(((b[16] & 0xff) << 8) | (b[17] & 0xff)).as("IPv4 total length").isEqualTo(86);
        assertThat(b[23]).as("UDP").isEqualTo((byte) 17);
        assertThat(Responder.checksum(b, 14, 20)).as("the header sums to all ones").isZero();
        assertThat(((b[38] & 0xff) << 8) | (b[39] & 0xff)).as("UDP length").isEqualTo(66);
    }

    @Test
    void frameSizesOutsideTheRangeAreRefusedNamingTheValue() {
        assertThatThrownBy(() -> new PacketGenerator(new VirtualSwitch(), 59, 0, null))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("59");
        assertThatThrownBy(() -> new PacketGenerator(new VirtualSwitch(), 9015, 0, null))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("9015");
    }

    @Test
    void onItsOwnThreadItSendsOnlyWhileSomeoneIsThereAndStopsWhenClosed() throws Exception {
        VirtualSwitch sw = new VirtualSwitch();
        List<byte[]> got = new CopyOnWriteArrayList<>();
        try (PacketGenerator g = new PacketGenerator(sw, 64, 0, null)) {
            Thread.sleep(50);
            assertThat(g.sent()).as("nobody on the switch: nothing sent").isZero();
            NetBackend port = sw.port(); // a plain port: frames without the header
            port.connect((buffer, at, length) -> {
                if (got.size() < 10) {
                    got.add(buffer.asSlice(at, length).toArray(ValueLayout.JAVA_BYTE));
                }
            });
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (got.size() < 10 && System.nanoTime() < deadline) {
                Thread.sleep(1);
            }
            MemorySegment expected = Arena.ofAuto().allocate(64);
            PacketGenerator.udpFrame(expected, 64);
            assertThat(got).hasSize(10).allSatisfy(f -> assertThat(f).containsExactly(expected.toArray(ValueLayout.JAVA_BYTE)));
            g.close();
            long after = g.sent();
            Thread.sleep(50);
            assertThat(g.sent()).as("closed: no more").isEqualTo(after);
            assertThat(sw.portCount()).as("its port left the switch").isEqualTo(1);
        }
    }
}
