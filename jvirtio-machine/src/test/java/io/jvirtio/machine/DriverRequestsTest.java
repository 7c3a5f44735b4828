package io.jvirtio.machine;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.bus.VirtioDriver;
import io.jvirtio.core.device.ConfigSpace;
import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.spec.Conformance;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.QueueDevice;
import io.jvirtio.devices.QueueThread;
import io.jvirtio.drivers.blk.BlkDriver;
import io.jvirtio.drivers.blk.VirtioBlock;
import io.jvirtio.drivers.net.NetDriver;
import io.jvirtio.drivers.net.VirtioNet;
import io.jvirtio.drivers.rng.RngDriver;
import io.jvirtio.transport.pci.VirtioPciDriver;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.function.BiFunction;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** What each driver puts on its rings, as a device that records every chain sees it. */
class DriverRequestsTest {

    /** A device of {@code type} whose queues hand every chain to {@code answer} (queue index, chain → len). */
    static final class Recorder extends QueueDevice {
        final DeviceType type;
        final long features;
        final int queues;
        final ConfigSpace config;
        final BiFunction<Integer, DescriptorChain, Integer> answer;

        Recorder(DeviceType type, long features, int queues, ConfigSpace config,
                 BiFunction<Integer, DescriptorChain, Integer> answer) {
            this.type = type;
            this.features = features;
            this.queues = queues;
            this.config = config;
            this.answer = answer;
        }

        public DeviceType type() { return type; }
        public long deviceFeatures() { return features; }
        public int numQueues() { return queues; }
        public int maxQueueSize(int index) { return 64; }
        public ConfigSpace config() { return config; }

        @Override
        protected QueueThread worker(int index, DeviceQueue queue, Interrupt interrupt, DeviceContext context) {
            return requestWorker(index, queue, interrupt, chain -> answer.apply(index, chain), context);
        }
    }

    static <D extends VirtioDriver> D drive(Machine m, D driver) {
        VirtioBus bus = new VirtioBus();
        bus.registerDriver(driver);
        new VirtioPciDriver(m, bus).scan();
        return driver;
    }

    @Test
    @Conformance({"rng-drv-1", "rng-drv-2"})
    void entropyBuffersAreWritableOnlyAndOnlyTheWrittenBytesAreUsed() throws Exception {
        List<Long> readable = new CopyOnWriteArrayList<>();
        int[] counter = {0};
        try (Machine m = new Machine(64 << 20)) {
            m.plug(new Recorder(DeviceType.ENTROPY, Feature.VERSION_1.mask(), 1, new ConfigSpace(0), (q, chain) -> {
                readable.add(chain.readableBytes());
                byte[] b = new byte[(int) Math.min(16, chain.writableBytes())]; // often fewer than asked
                for (int i = 0; i < b.length; i++) {
                    b[i] = (byte) counter[0]++;
                }
                chain.writeWritable(0, MemorySegment.ofArray(b));
                return b.length;
            }));
            RngDriver rng = drive(m, new RngDriver());
            byte[] got = new byte[100];
            rng.devices().getFirst().read(got);
            for (int i = 0; i < got.length; i++) {
                assertThat(got[i]).as("byte %d: the written bytes, in order, nothing else", i).isEqualTo((byte) i);
            }
            assertThat(readable).isNotEmpty().containsOnly(0L);
        }
    }

    record BlkRequest(int type, long sector, long readable, long writable) {
    }

    @Test
    @Conformance({"blk-drv-1", "blk-drv-7", "blk-drv-8", "blk-drv-9", "blk-drv-10"})
    void blockRequestsHaveTheShapesTheSpecAsks() throws Exception {
        List<BlkRequest> seen = new CopyOnWriteArrayList<>();
        List<long[]> discard = new CopyOnWriteArrayList<>();
        ConfigSpace cfg = new ConfigSpace(60);
        cfg.store(0, 2048, 8);
        try (Machine m = new Machine(64 << 20)) {
            m.plug(new Recorder(DeviceType.BLOCK, Feature.maskOf(Feature.VERSION_1, Feature.BLK_FLUSH, Feature.BLK_DISCARD),
                    1, cfg, (q, chain) -> {
                MemorySegment hdr = MemorySegment.ofArray(new byte[32]);
                chain.readReadable(0, hdr);
                ByteBuffer h = hdr.asByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
                seen.add(new BlkRequest(h.getInt(0), h.getLong(8), chain.readableBytes(), chain.writableBytes()));
                if (h.getInt(0) == 11) { // DISCARD: one segment {sector, num_sectors, flags}
                    discard.add(new long[] {h.getLong(16), Integer.toUnsignedLong(h.getInt(24)), h.getInt(28)});
                }
                chain.writeWritable(chain.writableBytes() - 1, MemorySegment.ofArray(new byte[1]));
                return (int) chain.writableBytes();
            }));
            VirtioBlock disk = drive(m, new BlkDriver()).disks().getFirst();
            disk.flush().get(5, TimeUnit.SECONDS);
            disk.read(8, disk.allocateBuffer(1024)).get(5, TimeUnit.SECONDS);
            disk.id().get(5, TimeUnit.SECONDS);
            disk.discard(64, 8).get(5, TimeUnit.SECONDS);
            assertThatThrownBy(() -> disk.read(0, disk.allocateBuffer(1000)).get(5, TimeUnit.SECONDS))
                    .hasCauseInstanceOf(IllegalArgumentException.class);
            assertThat(seen).containsExactly(
                    new BlkRequest(4, 0, 16, 1),        // FLUSH: sector 0, no data
                    new BlkRequest(0, 8, 16, 1025),     // IN: 1024 bytes of data + status
                    new BlkRequest(8, 0, 16, 21),       // GET_ID: 20 bytes + status
                    new BlkRequest(11, 0, 32, 1));      // DISCARD: header + one 16-byte segment
            assertThat(discard).hasSize(1);
            assertThat(discard.getFirst()).as("sector 64, 8 sectors, unmap flag 0").containsExactly(64, 8, 0);
        }
    }

    @Test
    @Conformance({"net-drv-2", "net-drv-7", "net-drv-8"})
    void transmitHeadersAreZeroReceiveBuffersHoldAHeaderAndTheMacComesFromConfigOrIsLocal() throws Exception {
        List<byte[]> headers = new CopyOnWriteArrayList<>();
        List<Long> rxBuffers = new CopyOnWriteArrayList<>();
        byte[] mac = {0x52, 0x54, 0, 1, 2, 3};
        for (boolean offerMac : new boolean[] {true, false}) {
            ConfigSpace cfg = new ConfigSpace(12);
            cfg.store(0, mac);
            long features = Feature.maskOf(Feature.VERSION_1, Feature.NET_MRG_RXBUF) | (offerMac ? Feature.NET_MAC.mask() : 0);
            try (Machine m = new Machine(64 << 20)) {
                m.plug(new Recorder(DeviceType.NET, features, 2, cfg, (q, chain) -> {
                    if (q == 0) { // a receive buffer: note its size, give it back empty
                        rxBuffers.add(chain.readableBytes() == 0 ? chain.writableBytes() : -1);
                        return 0;
                    }
                    MemorySegment h = MemorySegment.ofArray(new byte[12]);
                    chain.readReadable(0, h);
                    headers.add(h.toArray(ValueLayout.JAVA_BYTE));
                    return 0;
                }));
                NetDriver net = drive(m, new NetDriver());
                VirtioNet nic = net.nics().getFirst();
                if (offerMac) {
                    assertThat(nic.mac()).isEqualTo(mac);
                } else {
                    assertThat(nic.mac()[0] & 0x03).as("locally administered unicast").isEqualTo(0x02);
                }
                byte[] frame = new byte[60];
                nic.send(frame);
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
                // the receive queue is served by its own thread: wait for it too, not only for the transmit
                while ((headers.isEmpty() || rxBuffers.isEmpty()) && System.nanoTime() < deadline) {
                    Thread.sleep(1);
                }
                assertThat(headers).hasSize(1);
                assertThat(headers.getFirst()).as("flags, gso, num_buffers: all zero").containsOnly(0);
                assertThat(rxBuffers).as("receive buffers: writable only, each holding at least the header")
                        .isNotEmpty().allMatch(n -> n >= 12);
                headers.clear();
                rxBuffers.clear();
            }
        }
    }
}
