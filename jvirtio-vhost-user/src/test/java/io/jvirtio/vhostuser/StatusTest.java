package io.jvirtio.vhostuser;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.os.UnixSockets;
import io.jvirtio.core.spec.DeviceStatus;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.net.NetDevice;
import io.jvirtio.devices.net.VirtualSwitch;
import io.jvirtio.devices.rng.RngDevice;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/** VHOST_USER_PROTOCOL_F_STATUS: the device's say at FEATURES_OK, and what status 0 resets (and what not). */
@Timeout(30)
class StatusTest {
    static final long PF = (1L << VhostUser.PROTOCOL_F_STATUS) | (1L << VhostUser.PROTOCOL_F_REPLY_ACK);

    static long status(Channel ch) throws Exception {
        ch.write(Message.of(VhostUser.GET_STATUS, new byte[0]));
        Message r = ch.read();
        assertThat(r.request()).isEqualTo(VhostUser.GET_STATUS);
        return r.u64();
    }

    static void acked(Channel ch, Message m) throws Exception {
        ch.write(new Message(m.request(), m.flags() | VhostUser.FLAG_NEED_REPLY, m.payload(), m.fds()));
        Message ack = ch.read();
        assertThat(ack.u64()).as("%s acked", VhostUser.name(m.request())).isZero();
    }

    @Test
    @io.jvirtio.core.spec.Conformance("vu-be-10")
    void featuresOkIsTheDevicesToRefuseAndStatusZeroKeepsRingPositions(@TempDir Path dir) throws Exception {
        VirtualSwitch sw = new VirtualSwitch();
        try (VhostUserBackend net = new VhostUserBackend(dir.resolve("net.sock"),
                () -> new NetDevice(sw.port(), new byte[] {0x52, 0x54, 1, 0, 0, 1}, 1));
             Channel ch = new Channel(UnixSockets.connect(net.socket().toString()))) {
            acked(ch, Message.u64(VhostUser.SET_PROTOCOL_FEATURES, PF));
            int early = DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER;
            // CTRL_RX without CTRL_VQ: a combination the NIC cannot operate (§5.1.3.1)
            acked(ch, Message.u64(VhostUser.SET_FEATURES, Feature.maskOf(Feature.VERSION_1, Feature.NET_CTRL_RX)));
            acked(ch, Message.u64(VhostUser.SET_STATUS, early | DeviceStatus.FEATURES_OK));
            assertThat(status(ch)).as("FEATURES_OK refused by the device").isEqualTo(early);
            acked(ch, Message.u64(VhostUser.SET_FEATURES, Feature.VERSION_1.mask()));
            acked(ch, Message.u64(VhostUser.SET_STATUS, early | DeviceStatus.FEATURES_OK));
            assertThat(status(ch)).isEqualTo(early | DeviceStatus.FEATURES_OK);
            ch.write(Message.u64(VhostUser.SET_STATUS, 0x1ff)); // not a status byte
            assertThat(ch.read()).as("refused: the connection ends").isNull();
        }
        try (VhostUserBackend rng = new VhostUserBackend(dir.resolve("rng.sock"), RngDevice::new);
             GuestMemory mem = GuestMemory.memfd(0, 1 << 20);
             Channel ch = new Channel(UnixSockets.connect(rng.socket().toString()))) {
            acked(ch, Message.u64(VhostUser.SET_PROTOCOL_FEATURES, PF));
            long user = mem.region(0).segment().address();
            acked(ch, Message.of(VhostUser.SET_MEM_TABLE, ByteBuffer.allocate(40).order(ByteOrder.LITTLE_ENDIAN)
                    .putInt(1).putInt(0).putLong(0).putLong(1 << 20).putLong(user).putLong(0).array(), mem.region(0).fd()));
            acked(ch, Message.u64(VhostUser.SET_FEATURES, Feature.VERSION_1.mask()));
            acked(ch, Message.u64(VhostUser.SET_STATUS, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER
                    | DeviceStatus.FEATURES_OK | DeviceStatus.DRIVER_OK));
            acked(ch, Message.of(VhostUser.SET_VRING_NUM, Message.vringState(0, 8)));
            acked(ch, Message.of(VhostUser.SET_VRING_ADDR, ByteBuffer.allocate(40).order(ByteOrder.LITTLE_ENDIAN)
                    .putInt(0).putInt(0).putLong(user + 0x1000).putLong(user + 0x1200).putLong(user + 0x1100)
                    .putLong(0).array()));
            for (int i = 0; i < 3; i++) {
                mem.writeU64(0x1000 + 16L * i, 0x8000 + 0x100L * i);
                mem.writeU32(0x1000 + 16L * i + 8, 64);
                mem.writeU16(0x1000 + 16L * i + 12, (short) 2); // VIRTQ_DESC_F_WRITE
                mem.writeU16(0x1100 + 4 + 2L * i, (short) i);
            }
            mem.writeU16(0x1102, (short) 3);
            acked(ch, Message.u64(VhostUser.SET_VRING_CALL, VhostUser.VRING_NOFD));
            acked(ch, Message.u64(VhostUser.SET_VRING_KICK, VhostUser.VRING_NOFD)); // polled
            acked(ch, Message.of(VhostUser.SET_VRING_ENABLE, Message.vringState(0, 1)));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while ((mem.readU16(0x1202) & 0xffff) < 3 && System.nanoTime() < deadline) {
                Thread.sleep(2);
            }
            assertThat(mem.readU16(0x1202)).as("three entropy requests served").isEqualTo((short) 3);
            acked(ch, Message.u64(VhostUser.SET_STATUS, 0));
            assertThat(status(ch)).isZero();
            ch.write(Message.of(VhostUser.GET_VRING_BASE, Message.vringState(0, 0)));
            Message base = ch.read();
            assertThat(base.body().getInt(4)).as("the ring's position, asked for after status 0 (as QEMU does)")
                    .isEqualTo(3);
        }
    }
}
