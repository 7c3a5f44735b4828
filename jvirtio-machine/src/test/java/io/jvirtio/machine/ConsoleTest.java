package io.jvirtio.machine;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.devices.console.ConsoleDevice;
import io.jvirtio.devices.console.StreamBackend;
import io.jvirtio.drivers.console.ConsoleDriver;
import io.jvirtio.drivers.console.VirtioConsole;
import io.jvirtio.transport.pci.VirtioPciDriver;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PipedInputStream;
import java.io.PipedOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.Random;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/** The console through the machine: host input reaches the driver's stream, driver output the host. */
class ConsoleTest {

    @Test
    @io.jvirtio.core.spec.Conformance({"con-dev-2", "con-drv-1"})
    void bytesFlowBothWaysInOrderAndSizeAndEmergencyWriteWork() throws Exception {
        PipedOutputStream hostTypes = new PipedOutputStream();
        PipedInputStream deviceInput = new PipedInputStream(hostTypes, 1 << 20);
        ByteArrayOutputStream hostSees = new ByteArrayOutputStream();
        OutputStream syncOut = new OutputStream() {
            @Override
            public synchronized void write(int b) {
                hostSees.write(b);
            }

            @Override
            public synchronized void write(byte[] b, int off, int len) {
                hostSees.write(b, off, len);
            }
        };
        ConsoleDevice device = new ConsoleDevice(new StreamBackend(deviceInput, syncOut), 132, 43);
        try (Machine machine = new Machine(32 << 20)) {
            machine.plug(device);
            VirtioBus bus = new VirtioBus();
            ConsoleDriver driver = new ConsoleDriver();
            bus.registerDriver(driver);
            new VirtioPciDriver(machine, bus).scan();
            VirtioConsole console = driver.consoles().getFirst();
            assertThat(console.columns()).isEqualTo(132);
            assertThat(console.rows()).isEqualTo(43);

            // host → guest: 200 KiB, more than all receive buffers together, in order
            byte[] typed = new byte[200 * 1024];
            new Random(5).nextBytes(typed);
            Thread.ofPlatform().start(() -> {
                try {
                    hostTypes.write(typed);
                    hostTypes.flush();
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            });
            byte[] got = new InputStreamReaderWithTimeout(console.input()).readExactly(typed.length, 20);
            assertThat(got).isEqualTo(typed);

            // guest → host
            byte[] message = "hello from the guest\n".repeat(5000).getBytes(StandardCharsets.US_ASCII);
            console.output().write(message);
            console.output().flush();
            synchronized (syncOut) {
                assertThat(hostSees.toByteArray()).isEqualTo(message);
            }

            console.emergencyWrite('!');
            synchronized (syncOut) {
                assertThat(hostSees.toByteArray()[message.length]).isEqualTo((byte) '!');
            }

            device.resize(80, 25);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while (console.columns() != 80 && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            assertThat(console.columns()).as("config change interrupt re-read the size").isEqualTo(80);
            assertThat(console.rows()).isEqualTo(25);
        }
    }

    /**
     * The driver's configuration reads and writes through each transport's own path: modern PCI, the legacy
     * I/O BAR with and without MSI-X (the device configuration moves from offset 20 to 24 when MSI-X is on,
     * §4.1.4.10), and virtio-mmio. The size is read, and an emergency byte written reaches the host.
     */
    @org.junit.jupiter.params.ParameterizedTest
    @org.junit.jupiter.params.provider.ValueSource(strings = {"modern", "legacy", "legacy-intx", "mmio"})
    @io.jvirtio.core.spec.Conformance("con-dev-2")
    void theSizeIsReadAndAnEmergencyByteWrittenThroughEachTransport(String transport) throws Exception {
        StringBuffer host = new StringBuffer();
        io.jvirtio.devices.console.ConsoleBackend backend = new io.jvirtio.devices.console.ConsoleBackend() {
            public void start(java.util.function.Consumer<byte[]> input) { }
            public void write(byte[] data, int offset, int length) {
                host.append(new String(data, offset, length, StandardCharsets.ISO_8859_1));
            }
            public void close() { }
        };
        ConsoleDevice device = new ConsoleDevice(backend, 132, 43);
        try (Machine machine = new Machine(32 << 20)) {
            VirtioBus bus = new VirtioBus();
            ConsoleDriver driver = new ConsoleDriver();
            bus.registerDriver(driver);
            switch (transport) {
                case "modern" -> {
                    machine.plug(device);
                    new VirtioPciDriver(machine, bus).scan();
                }
                case "legacy", "legacy-intx" -> {
                    machine.plug(device, transport.equals("legacy") ? 3 : 0, true);
                    new VirtioPciDriver(machine, bus, true).scan();
                }
                default -> {
                    Machine.MmioSlot slot = machine.plugMmio(device);
                    new io.jvirtio.transport.mmio.VirtioMmioDriver(machine, bus).probe(slot.base(), slot.irq());
                }
            }
            VirtioConsole console = driver.consoles().getFirst();
            assertThat(console.device().config().interruptMode())
                    .contains(switch (transport) {
                        case "modern" -> "(modern)";
                        case "legacy" -> "MSI-X";
                        case "legacy-intx" -> "INTx";
                        default -> "mmio";
                    });
            assertThat(console.columns()).isEqualTo(132);
            assertThat(console.rows()).isEqualTo(43);
            console.emergencyWrite('!');
            console.emergencyWrite(0x100 | 'x'); // the low byte only
            assertThat(host.toString()).isEqualTo("!x");
        }
    }

    /** Reads exactly n bytes or fails after a deadline (a lost notification must not hang the test). */
    record InputStreamReaderWithTimeout(InputStream in) {
        byte[] readExactly(int n, int seconds) throws Exception {
            byte[] out = new byte[n];
            Thread reader = Thread.ofPlatform().start(() -> {
                try {
                    int at = 0;
                    while (at < n) {
                        int r = in.read(out, at, n - at);
                        if (r < 0) {
                            break;
                        }
                        at += r;
                    }
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            });
            reader.join(seconds * 1000L);
            assertThat(reader.isAlive()).as("all bytes arrived within %d s", seconds).isFalse();
            return out;
        }
    }
}
