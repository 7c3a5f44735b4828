package io.jvirtio.vhostuser;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.devices.net.NetBackend;
import io.jvirtio.devices.net.NetDevice;
import io.jvirtio.devices.net.VirtualSwitch;
import io.jvirtio.drivers.net.NetDriver;
import io.jvirtio.drivers.net.VirtioNet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A ring message touches its ring only: a NIC's receive filter, set by the driver through the control queue,
 * survives SET_VRING_ENABLE, GET_VRING_BASE of another ring and a new memory table (QEMU sends each while a
 * guest runs) — and only a device reset drops it.
 */
@Timeout(60)
class RingControlTest {
    static final byte[] MAC = {0x52, 0x54, 1, 0, 0, 1};
    static final byte[] OTHER = {0x52, 0x54, 1, 0, 0, 9};

    static byte[] frame(byte[] to) {
        byte[] f = new byte[60];
        System.arraycopy(to, 0, f, 0, 6);
        System.arraycopy(new byte[] {0x52, 0x54, 1, 0, 0, 7}, 0, f, 6, 6);
        f[12] = 0x08;
        return f;
    }

    /** Whether a frame to {@code to}, sent on the switch, reaches the guest's NIC. */
    static boolean delivered(NetBackend wire, VirtioNet nic, byte[] to) throws Exception {
        byte[] f = frame(to);
        wire.transmit(MemorySegment.ofArray(f), f.length);
        return nic.receive(300, TimeUnit.MILLISECONDS) != null;
    }

    @Test
    @io.jvirtio.core.spec.Conformance("vu-be-9")
    void theReceiveFilterSurvivesRingMessagesAndOnlyAResetDropsIt(@TempDir Path dir) throws Exception {
        VirtualSwitch sw = new VirtualSwitch();
        NetBackend wire = sw.port();
        wire.connect((f, at, n) -> { });
        NetDevice[] device = new NetDevice[1];
        try (VhostUserBackend backend = new VhostUserBackend(dir.resolve("net.sock"),
                () -> device[0] = new NetDevice(sw.port(), MAC, 1));
             GuestMemory mem = GuestMemory.memfd(0x1_0000_0000L, 16 << 20);
             VhostUserFrontend fe = VhostUserFrontend.connect(backend.socket(), mem,
                     new GuestAllocator(mem, 0x1_0000_0000L, 16 << 20))) {
            VirtioBus bus = new VirtioBus();
            NetDriver driver = new NetDriver();
            bus.registerDriver(driver);
            bus.registerDevice(DeviceType.NET.id(), fe);
            VirtioNet nic = driver.nics().getFirst();
            assertThat(delivered(wire, nic, OTHER)).as("promiscuous at first").isTrue();
            nic.setPromiscuous(false);
            assertThat(delivered(wire, nic, OTHER)).as("filtered once promiscuous mode is off").isFalse();
            assertThat(delivered(wire, nic, MAC)).isTrue();

            fe.request(Message.of(VhostUser.SET_VRING_ENABLE, Message.vringState(1, 0)));
            fe.request(Message.of(VhostUser.SET_VRING_ENABLE, Message.vringState(1, 1)));
            assertThat(delivered(wire, nic, OTHER)).as("after SET_VRING_ENABLE of the transmit ring").isFalse();
            assertThat(delivered(wire, nic, MAC)).isTrue();

            fe.sendMemTable();
            assertThat(delivered(wire, nic, OTHER)).as("after a new memory table").isFalse();
            assertThat(delivered(wire, nic, MAC)).as("the receive ring moved and goes on").isTrue();

            Message base = fe.call(Message.of(VhostUser.GET_VRING_BASE, Message.vringState(1, 0)));
            assertThat(base.body().getInt(0)).isEqualTo(1);
            assertThat(delivered(wire, nic, OTHER)).as("after GET_VRING_BASE of the transmit ring").isFalse();
            assertThat(delivered(wire, nic, MAC)).isTrue();

            fe.request(Message.of(VhostUser.RESET_DEVICE, new byte[0]));
            long filtered = device[0].rxFiltered.get();
            assertThat(filtered).as("frames were filtered by the device, not lost").isPositive();
        }
    }
}
