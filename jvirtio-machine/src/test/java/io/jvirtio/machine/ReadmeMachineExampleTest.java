package io.jvirtio.machine;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.FileBackend;
import io.jvirtio.devices.rng.RngDevice;
import io.jvirtio.drivers.blk.BlkDriver;
import io.jvirtio.drivers.blk.VirtioBlock;
import io.jvirtio.drivers.rng.RngDriver;
import io.jvirtio.transport.pci.VirtioPciDriver;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;

/** The "A machine from Java" example of README.md, kept compiling and true. */
class ReadmeMachineExampleTest {

    @Test
    void readmeMachineExampleRuns(@TempDir Path dir) throws Exception {
        Path image = dir.resolve("disk.img");
        try (Machine machine = new Machine(256L << 20)) {
            machine.plug(new BlkDevice(FileBackend.create(image, 64L << 20)));
            machine.plug(new RngDevice());
            VirtioBus bus = new VirtioBus();
            BlkDriver blk = new BlkDriver();
            bus.registerDriver(blk);
            bus.registerDriver(new RngDriver());
            new VirtioPciDriver(machine, bus).scan();

            VirtioBlock disk = blk.disks().getFirst();
            MemorySegment buf = disk.allocateBuffer(4096);
            buf.fill((byte) 0x5a);
            disk.write(0, buf).join();
            disk.flush().join();
            buf.fill((byte) 0);
            disk.read(0, buf).join();
            assertThat(buf.toArray(ValueLayout.JAVA_BYTE)).containsOnly(0x5a);
        }
        assertThat(java.util.Arrays.copyOf(Files.readAllBytes(image), 4096)).containsOnly(0x5a);
    }
}
