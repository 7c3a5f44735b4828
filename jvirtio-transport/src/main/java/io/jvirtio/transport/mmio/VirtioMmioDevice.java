package io.jvirtio.transport.mmio;

import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.device.VirtioDeviceModel;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.spec.DeviceStatus;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.transport.common.FeatureRegisters;
import io.jvirtio.transport.common.InterruptStatus;
import io.jvirtio.transport.common.QueueRegisters;
import io.jvirtio.transport.common.StatusRegister;

import java.lang.System.Logger.Level;
import java.lang.System.Logger;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

import static io.jvirtio.transport.mmio.VirtioMmio.*;

/**
 * The device side of virtio over MMIO (VIRTIO 1.2 §4.2): the version-2 register window that carries any
 * {@link VirtioDeviceModel}, with one level-triggered interrupt line whose causes are in
 * {@code InterruptStatus} (§4.2.2).
 */
public final class VirtioMmioDevice {
    private static final Logger LOG = System.getLogger(VirtioMmioDevice.class.getName());

    private final VirtioDeviceModel model;
    private final GuestMemory memory;
    private final String name;
    private final int numQueues;
    private final Consumer<Boolean> irqLine;

    private final FeatureRegisters features = new FeatureRegisters();
    private int queueSel;
    private volatile int status;
    private final InterruptStatus interruptStatus = new InterruptStatus();
    private volatile boolean active;
    /** VIRTIO_F_NOTIFICATION_DATA negotiated: QueueNotify carries data above the queue index (set before active). */
    private boolean notificationData;
    private final QueueRegisters rings;

    /**
     * @param irqLine drives the device's interrupt line (true: asserted)
     */
    public VirtioMmioDevice(VirtioDeviceModel model, GuestMemory memory, String name, Consumer<Boolean> irqLine) {
        this.model = model;
        this.memory = memory;
        this.name = name;
        this.irqLine = irqLine;
        this.numQueues = model.numQueues();
        this.rings = new QueueRegisters(numQueues);
        model.config().onChange(() -> raise(INT_CONFIG));
    }

    public VirtioDeviceModel model() {
        return model;
    }

    /** A 32-bit (or, in the configuration space, 8/16-bit) read of the register window. */
    public synchronized long read(long offset, int size) {
        if (offset >= CONFIG) {
            byte[] b = new byte[size];
            model.config().read((int) (offset - CONFIG), b, 0, size);
            long v = 0;
            for (int i = 0; i < size; i++) {
                v |= (b[i] & 0xffL) << (8 * i);
            }
            return v;
        }
        if (size != 4 || (offset & 3) != 0) {
            return 0; // §4.2.2.2: registers are 32 bits wide and accessed as such
        }
        int q = queueSel;
        boolean qv = q >= 0 && q < numQueues; // QueueSel is any 32-bit value the driver writes
        return switch ((int) offset) {
            case MAGIC_VALUE -> MAGIC;
            case VERSION -> 2;
            case DEVICE_ID -> model.type().id();
            case VENDOR_ID -> VENDOR;
            case DEVICE_FEATURES -> features.deviceWindow(QueueRegisters.offered(model));
            case QUEUE_NUM_MAX -> qv ? model.maxQueueSize(q) : 0;
            case QUEUE_READY -> qv && rings.enabled[q] ? 1 : 0;
            case INTERRUPT_STATUS -> interruptStatus.get();
            case STATUS -> status;
            case CONFIG_GENERATION -> model.config().generation();
            // §4.2.2: no shared memory regions; reading a non-existent one gives a length (and base) of -1
            case SHM_LEN_LOW, SHM_LEN_HIGH, SHM_BASE_LOW, SHM_BASE_HIGH -> 0xffffffffL;
            default -> 0;
        } & 0xffffffffL;
    }

    public void write(long offset, int size, long value) {
        if (offset >= CONFIG) {
            byte[] b = new byte[size];
            for (int i = 0; i < size; i++) {
                b[i] = (byte) (value >>> (8 * i));
            }
            model.config().driverWrite((int) (offset - CONFIG), b);
            return;
        }
        if (size != 4 || (offset & 3) != 0) {
            return;
        }
        int v = (int) value;
        if (offset == QUEUE_NOTIFY) {
            // the hot path: no lock. With NOTIFICATION_DATA the queue is bits 0-15, next_off/next_wrap above
            // (§4.2.2: a hint; the queue reads the ring itself)
            int q = notificationData ? v & 0xffff : v;
            if (active && q >= 0 && q < numQueues && rings.enabled[q]) {
                model.queueNotify(q);
            }
            return;
        }
        boolean activate = false;
        boolean reset = false;
        boolean lower = false;
        int start = -1;
        int stop = -1;
        long startFeatures = 0;
        synchronized (this) {
            int q = queueSel;
            boolean qv = q >= 0 && q < numQueues; // QueueSel is any 32-bit value the driver writes
            boolean qw = qv && !rings.enabled[q];
            switch ((int) offset) {
                case DEVICE_FEATURES_SEL -> features.selectDevice(v);
                case DRIVER_FEATURES_SEL -> features.selectDriver(v);
                case DRIVER_FEATURES -> features.writeDriverWindow(value, (status & DeviceStatus.FEATURES_OK) != 0);
                case QUEUE_SEL -> queueSel = v;
                case QUEUE_NUM -> { if (qw) rings.size[q] = v; }
                case QUEUE_READY -> {
                    // §4.2.2: after DRIVER_OK, 1→0 stops the queue (the driver then reads 0 back before it
                    // frees the ring) and 0→1 starts it again, on whatever ring is programmed by then.
                    if (qv && rings.enabled[q] != (v == 1)) {
                        rings.enabled[q] = v == 1;
                        if (active) {
                            if (v == 1) {
                                start = q;
                                startFeatures = features.driver();
                            } else {
                                stop = q;
                            }
                        }
                    }
                }
                case INTERRUPT_ACK -> {
                    lower = !interruptStatus.acknowledge(v);
                }
                case STATUS -> {
                    if (v == 0) {
                        reset = true;
                    } else {
                        activate = writeStatus(v);
                    }
                }
                case QUEUE_DESC_LOW -> { if (qw) rings.desc[q] = low(rings.desc[q], value); }
                case QUEUE_DESC_HIGH -> { if (qw) rings.desc[q] = high(rings.desc[q], value); }
                case QUEUE_DRIVER_LOW -> { if (qw) rings.driver[q] = low(rings.driver[q], value); }
                case QUEUE_DRIVER_HIGH -> { if (qw) rings.driver[q] = high(rings.driver[q], value); }
                case QUEUE_DEVICE_LOW -> { if (qw) rings.device[q] = low(rings.device[q], value); }
                case QUEUE_DEVICE_HIGH -> { if (qw) rings.device[q] = high(rings.device[q], value); }
                default -> {
                    // read-only or unknown
                }
            }
        }
        if (lower) {
            irqLine.accept(false);
            if (interruptStatus.get() != 0) {
                irqLine.accept(true); // raised between the acknowledgement and the line going down
            }
        }
        // the model is called without this lock: its queue threads take it to raise interrupts
        if (reset) {
            reset();
        } else if (activate) {
            activate();
        } else if (stop >= 0) {
            model.stopQueue(stop);
        } else if (start >= 0) {
            startQueue(start, startFeatures);
        }
    }

    private void startQueue(int q, long features) {
        DeviceQueue queue;
        try {
            synchronized (this) {
                queue = rings.create(memory, q, features);
            }
        } catch (IllegalArgumentException e) {
            needsReset(e.getMessage());
            return;
        }
        model.startQueue(q, queue, () -> raise(INT_VRING));
    }

    private static long low(long old, long v) {
        return (old & ~0xffffffffL) | (v & 0xffffffffL);
    }

    private static long high(long old, long v) {
        return (old & 0xffffffffL) | (v << 32);
    }

    private boolean writeStatus(int next) {
        StatusRegister w = StatusRegister.write(name, status, next,
                () -> QueueRegisters.featuresProblem(model, QueueRegisters.offered(model), features.driver(), true));
        status = w.status();
        return w.activate();
    }

    private void activate() {
        List<DeviceQueue> queues;
        List<Interrupt> irqs = new ArrayList<>(numQueues);
        long negotiated;
        synchronized (this) {
            negotiated = features.driver();
            notificationData = Feature.NOTIFICATION_DATA.isSet(negotiated);
            try {
                queues = rings.create(memory, negotiated);
            } catch (IllegalArgumentException e) {
                needsReset(e.getMessage());
                return;
            }
            for (int i = 0; i < numQueues; i++) {
                irqs.add(() -> raise(INT_VRING));
            }
            active = true;
        }
        model.activate(new DeviceContext(memory, negotiated, queues, irqs, this::needsReset));
    }

    /** Device reset (§2.4, §4.2.3.1): registers, queues and the interrupt back to their initial state. */
    public void reset() {
        synchronized (this) {
            active = false;
        }
        model.reset();
        synchronized (this) {
            status = 0;
            features.reset();
            queueSel = 0;
            interruptStatus.clear();
            rings.reset(model, true);
        }
        irqLine.accept(false);
    }

    private void needsReset(String reason) {
        LOG.log(Level.WARNING, "{0}: device needs reset: {1}", name, reason);
        synchronized (this) {
            status |= DeviceStatus.DEVICE_NEEDS_RESET;
        }
        raise(INT_CONFIG);
    }

    private void raise(int cause) {
        if (cause == INT_CONFIG && (status & (DeviceStatus.DRIVER_OK | DeviceStatus.DEVICE_NEEDS_RESET)) == 0) {
            return;
        }
        interruptStatus.raise(cause);
        irqLine.accept(true);
    }

    @Override
    public String toString() {
        return name + " virtio-mmio " + model.type().name().toLowerCase();
    }
}
