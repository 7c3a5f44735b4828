package io.jvirtio.machine;

import io.jvirtio.core.spec.Conformance;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.drivers.console.ConsoleDriver;
import io.jvirtio.drivers.console.VirtioConsole;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.InputStream;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * What the console driver hands its readers from a received buffer: exactly the bytes the device says it wrote —
 * not a phantom byte for an empty buffer, nothing from a buffer the device claims to have overfilled.
 */
@Timeout(30)
class ConsoleDriverChecksTest {
    static final int BUFFER = 4096; // the driver's input buffer (VirtioConsole.BUFFER)

    @Test
    @Conformance("split-drv-15")
    void aReaderGetsWhatTheDeviceWroteAndNothingOfABufferItClaimsToHaveOverfilled() throws Exception {
        try (DriverRulesTest.Rig rig = new DriverRulesTest.Rig()) {
            NetDriverChecksTest.HandDevice dev = new NetDriverChecksTest.HandDevice(DeviceType.CONSOLE,
                    Feature.VERSION_1.mask(), BUFFER);
            ConsoleDriver driver = new ConsoleDriver();
            rig.drive(dev, driver);
            assertThat(dev.started.await(5, TimeUnit.SECONDS)).isTrue();
            VirtioConsole console = driver.consoles().getFirst();
            byte[] stale = new byte[BUFFER];
            java.util.Arrays.fill(stale, (byte) '!');
            dev.deliver(new byte[][] {"hello".getBytes(), new byte[0], stale, stale, "abc".getBytes()},
                    new long[] {5, 0, BUFFER + 1, 0x8000_0000L, 3});
            InputStream in = console.input();
            byte[] got = new byte[8];
            for (int i = 0; i < 8; i++) {
                got[i] = (byte) in.read(); // one byte at a time: an empty buffer once read as a 0 byte here
            }
            assertThat(new String(got)).isEqualTo("helloabc");
            assertThat(console.rxDropped.get()).as("past the buffer, and 2^31").isEqualTo(2);
            assertThat(in.available()).isZero();
        }
    }
}
