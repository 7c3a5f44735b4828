package io.jvirtio.devices.rng;

import io.jvirtio.core.device.ConfigSpace;
import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.devices.QueueDevice;
import io.jvirtio.devices.QueueHandler;
import io.jvirtio.devices.QueueThread;

import java.lang.foreign.MemorySegment;
import java.security.SecureRandom;
import java.util.Random;

/**
 * The entropy device (VIRTIO 1.2 §5.4): one request queue; the device fills each device-writable buffer
 * with random bytes and reports how many (§5.4.6.1: it MUST NOT write more than the buffer holds; it
 * may write less). No configuration space, no device features.
 */
public final class RngDevice extends QueueDevice {
    /** Bytes served per request at most, so one huge buffer cannot monopolise the entropy source. */
    static final int MAX_PER_REQUEST = 64 * 1024;

    private final Random source;
    private final ConfigSpace config = new ConfigSpace(0);

    /** Entropy from {@link SecureRandom}. */
    public RngDevice() {
        this(new SecureRandom());
    }

    public RngDevice(Random source) {
        this.source = source;
    }

    @Override
    public DeviceType type() {
        return DeviceType.ENTROPY;
    }

    @Override
    public long deviceFeatures() {
        return RING_FEATURES | IN_ORDER;
    }

    @Override
    public int numQueues() {
        return 1;
    }

    @Override
    public int maxQueueSize(int index) {
        return 64;
    }

    @Override
    public ConfigSpace config() {
        return config;
    }

    @Override
    protected QueueThread worker(int index, DeviceQueue queue, Interrupt interrupt, DeviceContext context) {
        return requestWorker(index, queue, interrupt, handler(), context);
    }

    private QueueHandler handler() {
        byte[] buf = new byte[4096];
        MemorySegment bufSeg = MemorySegment.ofArray(buf);
        return (DescriptorChain chain) -> {
            long want = Math.min(chain.writableBytes(), MAX_PER_REQUEST);
            long done = 0;
            while (done < want) {
                int n = (int) Math.min(buf.length, want - done);
                source.nextBytes(buf);
                done += chain.writeWritable(done, bufSeg.asSlice(0, n));
            }
            return (int) done;
        };
    }
}
