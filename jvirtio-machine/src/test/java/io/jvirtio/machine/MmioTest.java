package io.jvirtio.machine;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.bus.VirtioDevice;
import io.jvirtio.core.spec.DeviceStatus;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.MemoryBackend;
import io.jvirtio.devices.console.ConsoleDevice;
import io.jvirtio.devices.console.EchoBackend;
import io.jvirtio.devices.rng.RngDevice;
import io.jvirtio.drivers.blk.BlkDriver;
import io.jvirtio.drivers.blk.VirtioBlock;
import io.jvirtio.drivers.console.ConsoleDriver;
import io.jvirtio.drivers.console.VirtioConsole;
import io.jvirtio.drivers.rng.RngDriver;
import io.jvirtio.transport.mmio.VirtioMmio;
import io.jvirtio.transport.mmio.VirtioMmioDriver;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/** virtio-mmio (VIRTIO 1.2 §4.2) both sides through the machine: registers, one interrupt line, rings. */
class MmioTest {

    @Test
    @io.jvirtio.core.spec.Conformance({"mmio-dev-1", "mmio-dev-2", "basic-dev-9", "mmio-drv-3"})
    void registersIdentifyTheDeviceAndAnEmptyWindowIsNoDevice() throws Exception {
        try (Machine m = new Machine(16 << 20)) {
            Machine.MmioSlot blk = m.plugMmio(new BlkDevice(new MemoryBackend(1 << 20, false)));
            assertThat(m.mmioRead(blk.base() + VirtioMmio.MAGIC_VALUE, 4)).isEqualTo(0x74726976L);
            assertThat(m.mmioRead(blk.base() + VirtioMmio.VERSION, 4)).isEqualTo(2);
            assertThat(m.mmioRead(blk.base() + VirtioMmio.DEVICE_ID, 4)).isEqualTo(2);
            assertThat(m.mmioRead(blk.base() + VirtioMmio.CONFIG, 4)).as("capacity, low half").isEqualTo(2048);
            assertThat(m.mmioRead(blk.base() + VirtioMmio.STATUS, 2)).as("registers are 32-bit only").isZero();
            VirtioBus bus = new VirtioBus();
            assertThat(new VirtioMmioDriver(m, bus).probe(blk.base() + 0x1000, 5)).as("nothing there").isNull();
        }
    }

    @Test
    void blkConsoleAndRngOverMmio() throws Exception {
        try (Machine m = new Machine(64 << 20)) {
            MemoryBackend disk = new MemoryBackend(8 << 20, false);
            List<Machine.MmioSlot> slots = List.of(m.plugMmio(new BlkDevice(disk)), m.plugMmio(new RngDevice()),
                    m.plugMmio(new ConsoleDevice(new EchoBackend(), 80, 25)));
            VirtioBus bus = new VirtioBus();
            BlkDriver blk = new BlkDriver();
            RngDriver rng = new RngDriver();
            ConsoleDriver con = new ConsoleDriver();
            bus.registerDriver(blk);
            bus.registerDriver(rng);
            bus.registerDriver(con);
            VirtioMmioDriver mmio = new VirtioMmioDriver(m, bus);
            for (Machine.MmioSlot s : slots) {
                VirtioDevice d = mmio.probe(s.base(), s.irq());
                assertThat(d.status() & DeviceStatus.DRIVER_OK).as(d.toString()).isNotZero();
            }
            assertThat(blk.disks().getFirst().device().config().busInfo()).contains("virtio-mmio@0xd0000000");

            VirtioBlock d = blk.disks().getFirst();
            byte[] data = new byte[2 << 20];
            new Random(4).nextBytes(data);
            List<CompletableFuture<Void>> fs = new ArrayList<>();
            for (int i = 0; i < 32; i++) {
                fs.add(d.write(i * 128L, MemorySegment.ofArray(data).asSlice(i * 65536L, 65536)));
            }
            CompletableFuture.allOf(fs.toArray(CompletableFuture[]::new)).get(20, TimeUnit.SECONDS);
            MemorySegment back = Arena.ofAuto().allocate(data.length);
            d.read(0, back).get(10, TimeUnit.SECONDS);
            assertThat(back.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE)).isEqualTo(data);

            byte[] entropy = new byte[5000];
            rng.devices().getFirst().read(entropy);
            assertThat(entropy).isNotEqualTo(new byte[5000]);

            VirtioConsole c = con.consoles().getFirst();
            c.output().write("over mmio\n".getBytes());
            c.output().flush();
            assertThat(new String(c.input().readNBytes(10))).isEqualTo("over mmio\n");
            assertThat(m.mmioRead(slots.getFirst().base() + VirtioMmio.INTERRUPT_STATUS, 4))
                    .as("every interrupt was acknowledged").isZero();
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("mmio-drv-14")
    void configChangeRaisesTheConfigInterruptAndBumpsTheGeneration() throws Exception {
        try (Machine m = new Machine(32 << 20)) {
            ConsoleDevice dev = new ConsoleDevice(new EchoBackend(), 80, 25);
            Machine.MmioSlot s = m.plugMmio(dev);
            VirtioBus bus = new VirtioBus();
            ConsoleDriver con = new ConsoleDriver();
            bus.registerDriver(con);
            new VirtioMmioDriver(m, bus).probe(s.base(), s.irq());
            long before = m.mmioRead(s.base() + VirtioMmio.CONFIG_GENERATION, 4);
            dev.resize(132, 50);
            assertThat(m.mmioRead(s.base() + VirtioMmio.CONFIG_GENERATION, 4)).isNotEqualTo(before);
            VirtioConsole c = con.consoles().getFirst();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while (c.columns() != 132 && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            assertThat(c.columns()).isEqualTo(132);
            assertThat(c.rows()).isEqualTo(50);
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("basic-dev-6")
    void unbindResetsAndFreesThenRebindWorks() throws Exception {
        try (Machine m = new Machine(32 << 20)) {
            Machine.MmioSlot s = m.plugMmio(new BlkDevice(new MemoryBackend(1 << 20, false)));
            VirtioBus bus = new VirtioBus();
            BlkDriver blk = new BlkDriver();
            bus.registerDriver(blk);
            long before = m.dma().used();
            VirtioDevice dev = new VirtioMmioDriver(m, bus).probe(s.base(), s.irq());
            bus.unbind(dev);
            assertThat(m.dma().used()).isEqualTo(before);
            assertThat(m.mmioRead(s.base() + VirtioMmio.QUEUE_READY, 4)).as("queues back to not ready").isZero();
            assertThat(bus.bind(dev, blk)).isTrue();
            MemorySegment sector = Arena.ofAuto().allocate(512);
            blk.disks().getFirst().read(0, sector).get(5, TimeUnit.SECONDS);
        }
    }
}
