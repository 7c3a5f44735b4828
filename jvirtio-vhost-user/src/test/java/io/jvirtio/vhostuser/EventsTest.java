package io.jvirtio.vhostuser;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.os.UnixSockets;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.rng.RngDevice;
import jdk.jfr.Recording;
import jdk.jfr.consumer.RecordedEvent;
import jdk.jfr.consumer.RecordingFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/** What a Flight Recorder recording shows of a back-end: sessions, dirty logging, broken rings. */
@Timeout(60)
class EventsTest {
    @Test
    void aRecordingShowsTheSessionItsDirtyLoggingAndItsBrokenRing(@TempDir Path dir) throws Exception {
        Path jfr = dir.resolve("vu.jfr");
        try (Recording recording = new Recording()) {
            recording.enable("io.jvirtio.vhostuser.Session");
            recording.enable("io.jvirtio.vhostuser.RingError");
            recording.enable("io.jvirtio.vhostuser.DirtyLog");
            recording.start();
            try (VhostUserBackend rng = new VhostUserBackend(dir.resolve("rng.sock"), RngDevice::new);
                 GuestMemory mem = GuestMemory.memfd(0, 1 << 20)) {
                try (Channel ch = new Channel(UnixSockets.connect(rng.socket().toString()))) {
                    long user = mem.region(0).segment().address();
                    ch.write(Message.of(VhostUser.SET_MEM_TABLE, ByteBuffer.allocate(40).order(ByteOrder.LITTLE_ENDIAN)
                            .putInt(1).putInt(0).putLong(0).putLong(1 << 20).putLong(user).putLong(0).array(),
                            mem.region(0).fd()));
                    ch.write(Message.u64(VhostUser.SET_FEATURES, Feature.VERSION_1.mask() | VhostUser.F_LOG_ALL));
                    ch.write(Message.u64(VhostUser.SET_FEATURES, Feature.VERSION_1.mask()));
                    ch.write(Message.of(VhostUser.SET_VRING_NUM, Message.vringState(0, 8)));
                    ch.write(Message.of(VhostUser.SET_VRING_ADDR, ByteBuffer.allocate(40).order(ByteOrder.LITTLE_ENDIAN)
                            .putInt(0).putInt(0).putLong(user + 0x1000).putLong(user + 0x1200).putLong(user + 0x1100)
                            .putLong(0).array()));
                    mem.writeU16(0x1100 + 4, (short) 77); // a head beyond the ring: the device breaks it
                    mem.writeU16(0x1102, (short) 1);
                    ch.write(Message.u64(VhostUser.SET_VRING_CALL, VhostUser.VRING_NOFD));
                    ch.write(Message.u64(VhostUser.SET_VRING_KICK, VhostUser.VRING_NOFD));
                    ch.write(Message.of(VhostUser.GET_FEATURES, new byte[0]));
                    ch.read();
                    Thread.sleep(200);
                }
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
                while (rng.activeSessions() > 0 && System.nanoTime() < deadline) {
                    Thread.sleep(10);
                }
                assertThat(rng.ringErrors()).as("counted for the control socket's stats").isEqualTo(1);
            }
            recording.stop();
            recording.dump(jfr);
        }
        List<RecordedEvent> events = RecordingFile.readAllEvents(jfr);
        assertThat(events).anySatisfy(e -> {
            assertThat(e.getEventType().getName()).isEqualTo("io.jvirtio.vhostuser.Session");
            assertThat(e.getString("endReason")).isEqualTo("frontend disconnected");
            assertThat(e.getLong("messages")).isGreaterThanOrEqualTo(8);
        });
        assertThat(events.stream().filter(e -> e.getEventType().getName().equals("io.jvirtio.vhostuser.DirtyLog"))
                .map(e -> e.getBoolean("on")).toList()).containsExactly(true, false);
        assertThat(events).anySatisfy(e -> {
            assertThat(e.getEventType().getName()).isEqualTo("io.jvirtio.vhostuser.RingError");
            assertThat(e.getString("reason")).contains("77");
        });
    }
}
