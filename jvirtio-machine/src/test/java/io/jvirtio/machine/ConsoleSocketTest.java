package io.jvirtio.machine;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.devices.console.ConsoleDevice;
import io.jvirtio.devices.console.StreamBackend;
import io.jvirtio.drivers.console.ConsoleDriver;
import io.jvirtio.drivers.console.VirtioConsole;
import io.jvirtio.transport.pci.VirtioPciDriver;
import org.junit.jupiter.api.Test;

import java.io.InputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;

import static org.assertj.core.api.Assertions.assertThat;

/** A console on a real loopback TCP socket: the host end talks to the guest's streams. */
class ConsoleSocketTest {

    @Test
    void hostSocketAndGuestStreamsTalk() throws Exception {
        try (ServerSocket server = new ServerSocket(0, 1, InetAddress.getLoopbackAddress());
             Socket host = new Socket(InetAddress.getLoopbackAddress(), server.getLocalPort());
             Socket deviceSide = server.accept();
             Machine machine = new Machine(32 << 20)) {
            machine.plug(new ConsoleDevice(StreamBackend.socket(deviceSide), 80, 24));
            VirtioBus bus = new VirtioBus();
            ConsoleDriver driver = new ConsoleDriver();
            bus.registerDriver(driver);
            new VirtioPciDriver(machine, bus).scan();
            VirtioConsole console = driver.consoles().getFirst();

            host.getOutputStream().write("login: root\n".getBytes(StandardCharsets.US_ASCII));
            byte[] got = console.input().readNBytes(12);
            assertThat(new String(got, StandardCharsets.US_ASCII)).isEqualTo("login: root\n");

            console.output().write("# \n".getBytes(StandardCharsets.US_ASCII));
            console.output().flush();
            InputStream hostIn = host.getInputStream();
            assertThat(new String(hostIn.readNBytes(3), StandardCharsets.US_ASCII)).isEqualTo("# \n");
        }
    }

    @Test
    void fileBackendAppendsTheGuestsOutput(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) throws Exception {
        java.nio.file.Path log = dir.resolve("console.log");
        java.nio.file.Files.writeString(log, "earlier\n");
        try (Machine machine = new Machine(32 << 20)) {
            machine.plug(new ConsoleDevice(StreamBackend.file(log), 80, 24));
            VirtioBus bus = new VirtioBus();
            ConsoleDriver driver = new ConsoleDriver();
            bus.registerDriver(driver);
            new VirtioPciDriver(machine, bus).scan();
            VirtioConsole console = driver.consoles().getFirst();
            console.output().write("boot complete\n".getBytes(StandardCharsets.US_ASCII));
            console.output().flush();
        }
        assertThat(java.nio.file.Files.readString(log)).isEqualTo("earlier\nboot complete\n");
    }
}
