package io.jvirtio.core.queue.split;

import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.QueueState;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.spec.Feature;

import java.lang.foreign.MemorySegment;

import static org.assertj.core.api.Assertions.assertThat;

/** The example in README.md, kept compiling and true. */
class ReadmeExampleTest {

    @org.junit.jupiter.params.ParameterizedTest(name = "packed={0}")
    @org.junit.jupiter.params.provider.ValueSource(booleans = {true, false})
    void readmeExampleRuns(boolean packed) throws Exception {
        String token;
        int written;
        int doorbells;
        try (GuestMemory mem = GuestMemory.memfd(0x4000_0000L, 1 << 20)) {
            GuestAllocator alloc = new GuestAllocator(mem, 0x4000_0000L, 1 << 20);
            long features = Feature.maskOf(Feature.VERSION_1, Feature.EVENT_IDX, Feature.INDIRECT_DESC,
                    Feature.RING_PACKED);
            if (!packed) {
                features &= ~Feature.RING_PACKED.mask();
            }
            int[] rung = new int[1];

            DriverQueue<String> driver = DriverQueue.allocate(alloc, 0, 256, features, 8,
                    () -> rung[0]++);
            long req = alloc.allocate(64, 8), resp = alloc.allocate(64, 8);
            mem.write(req, "hello".getBytes(), 0, 5);
            driver.addBuf(new Scatterlist().addReadable(req, 5).addWritable(resp, 64), "request-1");
            driver.kick();

            DeviceQueue device = DeviceQueue.create(mem, 0, 256, driver.addresses(), features,
                    QueueState.initial(features));
            DescriptorChain chain = new DescriptorChain();
            while (device.pop(chain)) {
                long n = chain.writeWritable(0, MemorySegment.ofArray("world".getBytes()));
                device.addUsed(chain.head(), (int) n);
            }
            device.publishUsed();
            assertThat(device.needsNotification()).isTrue();

            token = driver.getBuf();
            written = driver.lastLength();
            byte[] back = new byte[5];
            mem.read(resp, back, 0, 5);
            assertThat(new String(back)).isEqualTo("world");
            doorbells = rung[0];
        }
        assertThat(token).isEqualTo("request-1");
        assertThat(written).isEqualTo(5);
        assertThat(doorbells).isEqualTo(1);
    }
}
