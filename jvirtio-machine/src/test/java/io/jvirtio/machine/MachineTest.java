package io.jvirtio.machine;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.bus.VirtioDevice;
import io.jvirtio.core.spec.DeviceStatus;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.FileBackend;
import io.jvirtio.devices.blk.MemoryBackend;
import io.jvirtio.devices.rng.RngDevice;
import io.jvirtio.drivers.blk.BlkDriver;
import io.jvirtio.drivers.blk.VirtioBlock;
import io.jvirtio.drivers.rng.RngDriver;
import io.jvirtio.drivers.rng.VirtioRng;
import io.jvirtio.transport.pci.VirtioPciDriver;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Drivers and devices meeting only through the machine: PCI config space, BAR accesses, guest memory
 * and interrupts — enumerated, negotiated and driven end to end.
 */
class MachineTest {
    Machine machine;

    @AfterEach
    void tearDown() {
        if (machine != null) {
            machine.close();
        }
    }

    @Test
    void enumeratesNegotiatesAndMovesDataThroughEveryDevice(@TempDir Path dir) throws Exception {
        machine = new Machine(64 << 20);
        Path image = dir.resolve("disk.img");
        FileBackend file = FileBackend.create(image, 8 << 20);
        int rngSlot = machine.plug(new RngDevice());
        int blkSlot = machine.plug(new BlkDevice(file));

        VirtioBus bus = new VirtioBus();
        RngDriver rngDriver = new RngDriver();
        BlkDriver blkDriver = new BlkDriver();
        bus.registerDriver(rngDriver);
        bus.registerDriver(blkDriver);
        List<VirtioPciDriver.Probed> found = new VirtioPciDriver(machine, bus).scan();

        assertThat(found).extracting(VirtioPciDriver.Probed::slot).containsExactly(rngSlot, blkSlot);
        assertThat(found.get(1).device()).isEqualTo(0x1042);
        assertThat(found.get(1).capabilities()).anyMatch(c -> c.contains("MSI-X"))
                .anyMatch(c -> c.contains("virtio common-cfg")).anyMatch(c -> c.contains("virtio notify"));
        for (VirtioDevice d : bus.devices()) {
            assertThat(d.status()).isEqualTo(DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER
                    | DeviceStatus.FEATURES_OK | DeviceStatus.DRIVER_OK);
            assertThat(d.config().interruptMode()).contains("MSI-X").contains("one per queue");
        }
        assertThat(bus.events()).anyMatch(e -> e.contains("probed by virtio_blk") && e.contains("VIRTIO_BLK_F_FLUSH"));

        VirtioRng rng = rngDriver.devices().getFirst();
        byte[] entropy = new byte[10_000];
        rng.read(entropy);
        assertThat(distinctBytes(entropy)).isGreaterThan(200);

        VirtioBlock disk = blkDriver.disks().getFirst();
        assertThat(disk.capacitySectors()).isEqualTo((8 << 20) / 512);
        assertThat(disk.id().get(5, TimeUnit.SECONDS)).isEqualTo("disk.img");

        // 64 writes of 64 KiB in flight together, from outside guest memory (bounced) and inside (zero copy)
        byte[] data = new byte[4 << 20];
        new Random(1).nextBytes(data);
        List<CompletableFuture<Void>> writes = new ArrayList<>();
        for (int i = 0; i < 64; i++) {
            MemorySegment chunk = MemorySegment.ofArray(data).asSlice(i * 65536L, 65536);
            if (i % 2 == 0) {
                writes.add(disk.write(i * 128L, chunk));
            } else {
                MemorySegment dma = disk.allocateBuffer(65536);
                MemorySegment.copy(chunk, 0, dma, 0, 65536);
                writes.add(disk.write(i * 128L, dma).whenComplete((v, e) -> disk.freeBuffer(dma)));
            }
        }
        CompletableFuture.allOf(writes.toArray(CompletableFuture[]::new)).get(30, TimeUnit.SECONDS);
        disk.flush().get(10, TimeUnit.SECONDS);

        MemorySegment back = Arena.ofAuto().allocate(data.length);
        List<CompletableFuture<Void>> reads = new ArrayList<>();
        for (int i = 0; i < 64; i++) {
            reads.add(disk.read(i * 128L, back.asSlice(i * 65536L, 65536)));
        }
        CompletableFuture.allOf(reads.toArray(CompletableFuture[]::new)).get(30, TimeUnit.SECONDS);
        assertThat(back.toArray(ValueLayout.JAVA_BYTE)).isEqualTo(data);
        byte[] onDisk = Files.readAllBytes(image);
        assertThat(java.util.Arrays.copyOf(onDisk, data.length)).isEqualTo(data);

        // write zeroes and discard reach the file
        disk.writeZeroes(8, 8).get(5, TimeUnit.SECONDS);
        assertThat(java.util.Arrays.copyOfRange(Files.readAllBytes(image), 4096, 8192)).containsOnly(0);

        // a request past the end is refused by the driver, before the device sees it (blk-drv-5)
        MemorySegment sector = Arena.ofAuto().allocate(512);
        assertThatThrownBy(() -> disk.read(disk.capacitySectors(), sector).join())
                .isInstanceOf(CompletionException.class).hasCauseInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("beyond the capacity");
        assertThat(machine.interruptsDelivered()).isPositive();
    }

    @Test
    @io.jvirtio.core.spec.Conformance("blk-drv-6")
    void readOnlyDiskRefusesWritesAndKeepsItsBytes() throws Exception {
        machine = new Machine(32 << 20);
        MemoryBackend mem = new MemoryBackend(1 << 20, true);
        mem.contents().asSlice(0, 512).fill((byte) 7);
        machine.plug(new BlkDevice(mem));
        VirtioBus bus = new VirtioBus();
        BlkDriver blk = new BlkDriver();
        bus.registerDriver(blk);
        new VirtioPciDriver(machine, bus).scan();
        VirtioBlock disk = blk.disks().getFirst();
        assertThat(disk.readOnly()).isTrue();
        MemorySegment buf = Arena.ofAuto().allocate(512);
        disk.read(0, buf).get(5, TimeUnit.SECONDS);
        assertThat(buf.toArray(ValueLayout.JAVA_BYTE)).containsOnly(7);
        assertThatThrownBy(() -> disk.write(0, buf).join()).hasCauseInstanceOf(java.io.IOException.class)
                .hasMessageContaining("read-only");
    }

    /**
     * Interrupts for every device run on the machine's one vCPU thread; a continuation a user attaches to a
     * request's future must not run there, or a slow one holds up every other device. Disk A's continuation
     * waits until disk B's read is done: were it on the vCPU thread, B's completion would never be delivered.
     */
    @Test
    void aSlowContinuationOnOneDiskDoesNotHoldUpAnother() throws Exception {
        machine = new Machine(64 << 20);
        machine.plug(new BlkDevice(new MemoryBackend(16 << 20, false)));
        machine.plug(new BlkDevice(new MemoryBackend(1 << 20, false)));
        VirtioBus bus = new VirtioBus();
        BlkDriver blk = new BlkDriver();
        bus.registerDriver(blk);
        new VirtioPciDriver(machine, bus).scan();
        VirtioBlock a = blk.disks().get(0);
        VirtioBlock b = blk.disks().get(1);
        MemorySegment big = a.allocateBuffer(8 << 20);
        MemorySegment small = b.allocateBuffer(4096);
        Thread test = Thread.currentThread();
        for (int attempt = 0; attempt < 100; attempt++) {
            java.util.concurrent.CountDownLatch bDone = new java.util.concurrent.CountDownLatch(1);
            java.util.concurrent.atomic.AtomicReference<Thread> ranOn = new java.util.concurrent.atomic.AtomicReference<>();
            CompletableFuture<Void> slow = a.read(0, big).thenRun(() -> {
                ranOn.set(Thread.currentThread());
                if (Thread.currentThread() != test) {
                    try {
                        bDone.await(30, TimeUnit.SECONDS);
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                }
            });
            if (ranOn.get() == test) {
                continue; // the read finished before the continuation was attached: it ran here; again
            }
            b.read(0, small).get(10, TimeUnit.SECONDS); // delivered while A's continuation still waits
            bDone.countDown();
            slow.get(10, TimeUnit.SECONDS);
            assertThat(ranOn.get().getName()).as("A's continuation ran on its disk's completion thread")
                    .startsWith("jvirtio-completions-");
            return;
        }
        throw new AssertionError("every read completed before its continuation could be attached");
    }

    /** A load generator's opt-in: continuations on the interrupt thread (the machine's vCPU), and back again. */
    @Test
    void aDiskAskedToCompleteOnTheInterruptThreadRunsContinuationsThere() throws Exception {
        machine = new Machine(64 << 20);
        machine.plug(new BlkDevice(new MemoryBackend(1 << 20, false)));
        VirtioBus bus = new VirtioBus();
        BlkDriver blk = new BlkDriver();
        bus.registerDriver(blk);
        new VirtioPciDriver(machine, bus).scan();
        VirtioBlock disk = blk.disks().getFirst();
        MemorySegment buf = disk.allocateBuffer(4096);
        disk.completeOnInterruptThread(true);
        assertThat(continuationThread(disk, buf)).isEqualTo("jvirtio-vcpu");
        disk.completeOnInterruptThread(false);
        assertThat(continuationThread(disk, buf)).startsWith("jvirtio-completions-");
    }

    /** Where a continuation of a read ran, retried while the read completes before it is attached. */
    private static String continuationThread(VirtioBlock disk, MemorySegment buf) throws Exception {
        Thread test = Thread.currentThread();
        for (int attempt = 0; attempt < 100; attempt++) {
            Thread t = disk.read(0, buf).thenApply(v -> Thread.currentThread()).get(10, TimeUnit.SECONDS);
            if (t != test) {
                return t.getName();
            }
        }
        throw new AssertionError("every read completed before its continuation could be attached");
    }

    @Test
    void multiQueueDiskServesConcurrentThreads() throws Exception {
        machine = new Machine(64 << 20);
        MemoryBackend mem = new MemoryBackend(16 << 20, false);
        machine.plug(new BlkDevice(mem, 4));
        VirtioBus bus = new VirtioBus();
        BlkDriver blk = new BlkDriver();
        bus.registerDriver(blk);
        new VirtioPciDriver(machine, bus).scan();
        VirtioBlock disk = blk.disks().getFirst();
        assertThat(disk.queueCount()).isEqualTo(4);

        int threads = 4;
        int perThread = 500;
        List<Thread> ts = new ArrayList<>();
        List<Throwable> errors = java.util.Collections.synchronizedList(new ArrayList<>());
        for (int t = 0; t < threads; t++) {
            int id = t;
            ts.add(Thread.ofPlatform().start(() -> {
                try {
                    Random rnd = new Random(id);
                    MemorySegment buf = Arena.ofAuto().allocate(4096);
                    MemorySegment check = Arena.ofAuto().allocate(4096);
                    for (int i = 0; i < perThread; i++) {
                        long sector = (id * 1024L + rnd.nextInt(1024 - 8)) & ~7L;
                        buf.fill((byte) (i + id));
                        buf.set(ValueLayout.JAVA_LONG_UNALIGNED, 0, sector * 31 + i);
                        disk.write(sector, buf).get(10, TimeUnit.SECONDS);
                        disk.read(sector, check).get(10, TimeUnit.SECONDS);
                        if (check.mismatch(buf) != -1) {
                            throw new AssertionError("sector " + sector + " read back differently");
                        }
                    }
                } catch (Throwable e) {
                    errors.add(e);
                }
            }));
        }
        for (Thread t : ts) {
            t.join();
        }
        assertThat(errors).isEmpty();
    }

    @Test
    void hotUnplugRemovesTheDriverAndFreesItsMemory() throws Exception {
        machine = new Machine(32 << 20);
        int slot = machine.plug(new BlkDevice(new MemoryBackend(1 << 20, false)));
        VirtioBus bus = new VirtioBus();
        BlkDriver blk = new BlkDriver();
        bus.registerDriver(blk);
        long before = machine.dma().used();
        VirtioPciDriver pci = new VirtioPciDriver(machine, bus);
        pci.scan();
        VirtioBlock disk = blk.disks().getFirst();
        assertThat(machine.dma().used()).isGreaterThan(before);
        pci.unplug(slot);
        machine.unplug(slot);
        assertThat(bus.devices()).isEmpty();
        assertThat(blk.disks()).isEmpty();
        assertThat(machine.dma().used()).as("rings and request slots returned").isEqualTo(before);
        assertThatThrownBy(() -> disk.read(0, Arena.ofAuto().allocate(512)).join())
                .hasMessageContaining("removed");
    }

    /**
     * The same for the other drivers: a NIC with its control queue and two queue pairs, a console, an entropy
     * source — every ring, buffer and slot given back, and what is asked of the device after fails at once.
     */
    @org.junit.jupiter.params.ParameterizedTest
    @org.junit.jupiter.params.provider.ValueSource(strings = {"net", "console", "rng"})
    void hotUnplugOfEachDriverFreesEveryByteAndFailsWhatComesAfter(String type) throws Exception {
        machine = new Machine(32 << 20);
        int slot = machine.plug(switch (type) {
            case "net" -> new io.jvirtio.devices.net.NetDevice(new io.jvirtio.devices.net.VirtualSwitch().port(),
                    new byte[] {0x52, 0x54, 0, 0, 0, 1}, 2);
            case "console" -> new io.jvirtio.devices.console.ConsoleDevice(new io.jvirtio.devices.console.EchoBackend(), 80, 25);
            default -> new RngDevice();
        });
        VirtioBus bus = new VirtioBus();
        var net = new io.jvirtio.drivers.net.NetDriver();
        var console = new io.jvirtio.drivers.console.ConsoleDriver();
        RngDriver rng = new RngDriver();
        bus.registerDriver(net);
        bus.registerDriver(console);
        bus.registerDriver(rng);
        long before = machine.dma().used();
        VirtioPciDriver pci = new VirtioPciDriver(machine, bus);
        pci.scan();
        assertThat(machine.dma().used()).isGreaterThan(before);
        org.assertj.core.api.ThrowableAssert.ThrowingCallable after;
        switch (type) {
            case "net" -> {
                var nic = net.nics().getFirst();
                nic.send(new byte[60]);
                after = () -> nic.send(new byte[60]);
            }
            case "console" -> {
                var tty = console.consoles().getFirst();
                tty.output().write("x".getBytes());
                assertThat(tty.input().read()).isEqualTo('x'); // the echo
                after = () -> {
                    assertThat(tty.input().read()).as("end of input").isEqualTo(-1);
                    tty.output().write("y".getBytes());
                };
            }
            default -> {
                var dev = rng.devices().getFirst();
                dev.read(new byte[16]);
                after = () -> dev.read(new byte[16]);
            }
        }
        // a reader waiting for console input when the device goes sees the end of its input
        CompletableFuture<Integer> waiting = new CompletableFuture<>();
        Thread reader = null;
        if (type.equals("console")) {
            var tty = console.consoles().getFirst();
            reader = Thread.ofPlatform().start(() -> {
                try {
                    waiting.complete(tty.input().read());
                } catch (java.io.IOException e) {
                    waiting.completeExceptionally(e);
                }
            });
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while (reader.getState() != Thread.State.WAITING && System.nanoTime() < deadline) {
                Thread.sleep(1);
            }
            assertThat(reader.getState()).as("the reader waits for input").isEqualTo(Thread.State.WAITING);
        }
        pci.unplug(slot);
        machine.unplug(slot);
        assertThat(bus.devices()).isEmpty();
        assertThat(machine.dma().used()).as("rings, buffers and slots returned").isEqualTo(before);
        if (reader != null) {
            assertThat(waiting.get(5, TimeUnit.SECONDS)).as("end of input for the waiting reader").isEqualTo(-1);
        }
        assertThatThrownBy(after).isInstanceOf(java.io.IOException.class)
                .hasMessageContaining("removed");
    }

    @Test
    void requestsAreSplitIntoSegmentsOfSizeMax() throws Exception {
        machine = new Machine(64 << 20);
        MemoryBackend mem = new MemoryBackend(8 << 20, false);
        machine.plug(new BlkDevice(mem, 1, 8192));
        VirtioBus bus = new VirtioBus();
        BlkDriver blk = new BlkDriver();
        bus.registerDriver(blk);
        new VirtioPciDriver(machine, bus).scan();
        VirtioBlock disk = blk.disks().getFirst();
        assertThat(disk.device().hasFeature(io.jvirtio.core.spec.Feature.BLK_SIZE_MAX)).isTrue();
        byte[] data = new byte[1 << 20]; // 128 segments of 8 KiB, within seg_max 254
        new Random(9).nextBytes(data);
        disk.write(16, MemorySegment.ofArray(data)).get(10, TimeUnit.SECONDS);
        assertThat(mem.contents().asSlice(16 * 512, data.length).toArray(ValueLayout.JAVA_BYTE)).isEqualTo(data);
        MemorySegment back = Arena.ofAuto().allocate(data.length);
        disk.read(16, back).get(10, TimeUnit.SECONDS);
        assertThat(back.toArray(ValueLayout.JAVA_BYTE)).isEqualTo(data);
        assertThatThrownBy(() -> disk.write(0, Arena.ofAuto().allocate(8192L * 255)).join())
                .hasMessageContaining("seg_max");
    }

    private static int distinctBytes(byte[] b) {
        boolean[] seen = new boolean[256];
        int n = 0;
        for (byte x : b) {
            if (!seen[x & 0xff]) {
                seen[x & 0xff] = true;
                n++;
            }
        }
        return n;
    }
}
