package io.jvirtio.transport.mmio;

import io.jvirtio.bus.ConfigOps;
import io.jvirtio.bus.QueueSpec;
import io.jvirtio.bus.TransportException;
import io.jvirtio.bus.VirtioBus;
import io.jvirtio.core.queue.Doorbell;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.bus.VirtioDevice;
import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.RingAddresses;
import io.jvirtio.core.queue.split.SplitLayout;

import java.util.ArrayList;
import java.util.List;

import static io.jvirtio.transport.mmio.VirtioMmio.*;

/** {@link ConfigOps} over the virtio-mmio registers (VIRTIO 1.2 §4.2.3, Linux {@code virtio_mmio}). */
final class MmioConfigOps implements ConfigOps {
    static final int MAX_INDIRECT = 64;

    private final MmioHost host;
    private final long base;
    private final int irq;
    private VirtioBus bus;
    private VirtioDevice dev;
    private long negotiated;
    private final List<DriverQueue<Object>> queues = new ArrayList<>();
    private final List<Runnable> callbacks = new ArrayList<>();
    private boolean irqAttached;

    MmioConfigOps(MmioHost host, long base, int irq) {
        this.host = host;
        this.base = base;
        this.irq = irq;
    }

    void attach(VirtioBus bus, VirtioDevice dev) {
        this.bus = bus;
        this.dev = dev;
    }

    private int read(int reg) {
        return (int) host.mmioRead(base + reg, 4);
    }

    private void write(int reg, long value) {
        host.mmioWrite(base + reg, 4, value & 0xffffffffL);
    }

    @Override
    public int getStatus() {
        return read(STATUS) & 0xff;
    }

    @Override
    public void setStatus(int status) {
        write(STATUS, status);
    }

    @Override
    public void reset() {
        write(STATUS, 0);
        io.jvirtio.transport.common.ResetWait.await(this::getStatus, busInfo());
    }

    @Override
    public long getFeatures() {
        write(DEVICE_FEATURES_SEL, 0);
        long lo = read(DEVICE_FEATURES) & 0xffffffffL;
        write(DEVICE_FEATURES_SEL, 1);
        return ((read(DEVICE_FEATURES) & 0xffffffffL) << 32) | lo;
    }

    /**
     * QueueNotify for queue {@code index}: the index alone, or with NOTIFICATION_DATA the index in bits 0–15
     * and next_off/next_wrap in bits 16–31 (§4.2.3.4).
     */
    private Doorbell doorbell(int index) {
        boolean data = Feature.NOTIFICATION_DATA.isSet(negotiated);
        return new Doorbell() {
            @Override
            public void ring() {
                host.mmioWrite(base + QUEUE_NOTIFY, 4, index);
            }

            @Override
            public void ring(int next) {
                host.mmioWrite(base + QUEUE_NOTIFY, 4, data ? index | (long) (next & 0xffff) << 16 : index);
            }
        };
    }

    /** QueueNotify carries VIRTIO_F_NOTIFICATION_DATA (a 32-bit value, §4.2.3.4). */
    @Override
    public long transportFeatures() {
        return VirtioBus.TRANSPORT_FEATURES | Feature.NOTIFICATION_DATA.mask();
    }

    @Override
    public void finalizeFeatures(long features) {
        negotiated = features;
        write(DRIVER_FEATURES_SEL, 0);
        write(DRIVER_FEATURES, features);
        write(DRIVER_FEATURES_SEL, 1);
        write(DRIVER_FEATURES, features >>> 32);
    }

    @Override
    public int generation() {
        return read(CONFIG_GENERATION);
    }

    @Override
    public void readConfig(int offset, byte[] dst, int dstOffset, int length) {
        int done = 0;
        while (done < length) {
            int at = offset + done;
            int w = io.jvirtio.transport.common.ConfigAccess.width(length);
            long v = host.mmioRead(base + CONFIG + at, w);
            for (int i = 0; i < w; i++) {
                dst[dstOffset + done + i] = (byte) (v >>> (8 * i));
            }
            done += w;
        }
    }

    @Override
    public void writeConfig(int offset, byte[] src) {
        if (src.length == 1 || src.length == 2 || src.length == 4) {
            long v = 0;
            for (int i = 0; i < src.length; i++) {
                v |= (src[i] & 0xffL) << (8 * i);
            }
            host.mmioWrite(base + CONFIG + offset, src.length, v);
        } else {
            for (int i = 0; i < src.length; i++) {
                host.mmioWrite(base + CONFIG + offset + i, 1, src[i] & 0xff);
            }
        }
    }

    @Override
    public synchronized List<DriverQueue<Object>> findQueues(List<QueueSpec> specs) throws TransportException {
        try {
            for (int i = 0; i < specs.size(); i++) {
                QueueSpec spec = specs.get(i);
                write(QUEUE_SEL, i);
                if (read(QUEUE_READY) != 0) {
                    throw new TransportException("queue " + i + " is already live");
                }
                int max = read(QUEUE_NUM_MAX);
                if (max == 0) {
                    throw new TransportException("queue " + i + " (" + spec.name() + ") is not available");
                }
                int size = spec.size() <= 0 ? Integer.highestOneBit(max) : Math.min(Integer.highestOneBit(spec.size()), max);
                int index = i;
                DriverQueue<Object> q = DriverQueue.allocate(host.dma(), i, SplitLayout.modern(size), negotiated,
                        MAX_INDIRECT, doorbell(index));
                queues.add(q);
                RingAddresses a = q.addresses();
                write(QUEUE_NUM, size);
                write(QUEUE_DESC_LOW, a.descTable());
                write(QUEUE_DESC_HIGH, a.descTable() >>> 32);
                write(QUEUE_DRIVER_LOW, a.availRing());
                write(QUEUE_DRIVER_HIGH, a.availRing() >>> 32);
                write(QUEUE_DEVICE_LOW, a.usedRing());
                write(QUEUE_DEVICE_HIGH, a.usedRing() >>> 32);
                write(QUEUE_READY, 1);
                if (spec.callback() != null) {
                    callbacks.add(() -> {
                        if (q.hasUsed()) {
                            spec.callback().accept(q);
                        }
                    });
                }
            }
            host.attachIrq(irq, this::interrupt);
            irqAttached = true;
            return List.copyOf(queues);
        } catch (TransportException e) {
            deleteQueues();
            throw e;
        }
    }

    /** §4.2.3.4: read InterruptStatus, acknowledge it, then serve the queues and/or the config change. */
    private void interrupt() {
        // mmio-drv-10/11: undefined bits are ignored and never written to InterruptACK
        int cause = read(INTERRUPT_STATUS) & (INT_VRING | INT_CONFIG);
        if (cause == 0) {
            return;
        }
        write(INTERRUPT_ACK, cause);
        if ((cause & INT_VRING) != 0) {
            callbacks.forEach(Runnable::run);
        }
        if ((cause & INT_CONFIG) != 0 && bus != null && dev != null) {
            bus.configChanged(dev);
        }
    }

    @Override
    public synchronized void deleteQueues() {
        if (getStatus() != 0) {
            reset();
        }
        if (irqAttached) {
            host.detachIrq(irq);
            irqAttached = false;
        }
        for (DriverQueue<Object> q : queues) {
            q.release();
        }
        queues.clear();
        callbacks.clear();
    }

    @Override
    public GuestAllocator dma() {
        return host.dma();
    }

    @Override
    public String busInfo() {
        return String.format("virtio-mmio@0x%x irq %d", base, irq);
    }

    @Override
    public String interruptMode() {
        return "one interrupt line with InterruptStatus (virtio-mmio)";
    }
}
