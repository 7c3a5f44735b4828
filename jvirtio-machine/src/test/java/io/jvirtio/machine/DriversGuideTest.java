package io.jvirtio.machine;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.devices.console.ConsoleDevice;
import io.jvirtio.devices.console.EchoBackend;
import io.jvirtio.devices.net.NetDevice;
import io.jvirtio.devices.net.VirtualSwitch;
import io.jvirtio.devices.rng.RngDevice;
import io.jvirtio.drivers.console.ConsoleDriver;
import io.jvirtio.drivers.console.VirtioConsole;
import io.jvirtio.drivers.net.NetDriver;
import io.jvirtio.drivers.net.VirtioNet;
import io.jvirtio.drivers.rng.RngDriver;
import io.jvirtio.transport.pci.VirtioPciDriver;
import org.junit.jupiter.api.Test;

import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/** The example of docs/drivers.md, kept compiling and true. */
class DriversGuideTest {

    @Test
    void driversGuideExampleRuns() throws Exception {
        byte[] frame;
        byte[] got;
        byte[] echoed;
        byte[] random;
        try (Machine machine = new Machine(256L << 20)) {
            VirtualSwitch sw = new VirtualSwitch();
            machine.plug(new NetDevice(sw.port(), new byte[] {0x52, 0x54, 0, 0, 0, 1}, 1));
            machine.plug(new NetDevice(sw.port(), new byte[] {0x52, 0x54, 0, 0, 0, 2}, 1));
            machine.plug(new ConsoleDevice(new EchoBackend(), 80, 25));
            machine.plug(new RngDevice());

            VirtioBus bus = new VirtioBus();
            NetDriver net = new NetDriver();
            ConsoleDriver console = new ConsoleDriver();
            RngDriver rng = new RngDriver();
            bus.registerDriver(net);
            bus.registerDriver(console);
            bus.registerDriver(rng);
            new VirtioPciDriver(machine, bus).scan();

            VirtioNet a = net.nics().get(0), b = net.nics().get(1);
            frame = new byte[60];
            System.arraycopy(b.mac(), 0, frame, 0, 6);
            System.arraycopy(a.mac(), 0, frame, 6, 6);
            frame[12] = (byte) 0x88; frame[13] = (byte) 0xb5;
            a.send(frame);
            got = b.receive(5, TimeUnit.SECONDS);

            VirtioConsole tty = console.consoles().getFirst();
            tty.output().write("hello\n".getBytes());
            tty.output().flush();
            echoed = tty.input().readNBytes(6);

            random = new byte[32];
            rng.devices().getFirst().read(random);
        }
        assertThat(got).isEqualTo(frame);
        assertThat(new String(echoed)).isEqualTo("hello\n");
        assertThat(random).isNotEqualTo(new byte[32]);
    }
}
