package io.jvirtio.transport.pci;

import io.jvirtio.core.spec.DeviceStatus;
import io.jvirtio.transport.common.QueueRegisters;
import io.jvirtio.transport.common.StatusRegister;

import static io.jvirtio.transport.pci.VirtioPciCap.*;

/**
 * The modern common configuration structure (VIRTIO 1.2 §4.1.4.3) over a function's registers: byte-exact
 * reads of any width, and writes with the device requirements of §4.1.4.3.2. Called under the function's lock.
 */
final class CommonConfig {
    private final FunctionRegisters r;
    private final String name;

    CommonConfig(FunctionRegisters registers, String name) {
        this.r = registers;
        this.name = name;
    }

    long read(int offset, int size) {
        long v = 0;
        for (int i = 0; i < size; i++) {
            v |= (long) readByte(offset + i) << (8 * i);
        }
        return v;
    }

    private int readByte(int at) {
        int q = r.selected();
        boolean qv = q >= 0;
        long field;
        int start;
        if (at < 4) { field = r.features.deviceSelect(); start = DEVICE_FEATURE_SELECT; }
        else if (at < 8) { field = r.features.deviceWindow(QueueRegisters.offered(r.model)); start = DEVICE_FEATURE; }
        else if (at < 12) { field = r.features.driverSelect(); start = DRIVER_FEATURE_SELECT; }
        else if (at < 16) { field = r.features.driverWindow(); start = DRIVER_FEATURE; }
        else if (at < 18) { field = r.configVector; start = CONFIG_MSIX_VECTOR; }
        else if (at < 20) { field = r.numQueues; start = NUM_QUEUES; }
        else if (at == 20) { field = r.status; start = DEVICE_STATUS; }
        else if (at == 21) { field = r.model.config().generation(); start = CONFIG_GENERATION; }
        else if (at < 24) { field = r.queueSelect; start = QUEUE_SELECT; }
        else if (at < 26) { field = qv ? r.rings.size[q] : 0; start = QUEUE_SIZE; }
        else if (at < 28) { field = qv ? r.queueVector[q] : NO_VECTOR; start = QUEUE_MSIX_VECTOR; }
        else if (at < 30) { field = qv && r.rings.enabled[q] ? 1 : 0; start = QUEUE_ENABLE; }
        else if (at < 32) { field = qv ? q : 0; start = QUEUE_NOTIFY_OFF; }
        else if (at < 40) { field = qv ? r.rings.desc[q] : 0; start = QUEUE_DESC; }
        else if (at < 48) { field = qv ? r.rings.driver[q] : 0; start = QUEUE_DRIVER; }
        else if (at < 56) { field = qv ? r.rings.device[q] : 0; start = QUEUE_DEVICE; }
        else if (at < 58) { field = qv ? q : 0; start = QUEUE_NOTIFY_DATA; }
        else { field = 0; start = QUEUE_RESET; }
        return (int) ((field >>> (8 * (at - start))) & 0xff);
    }

    FunctionRegisters.Effect write(int offset, int size, long value) {
        int q = r.selected();
        boolean qv = q >= 0;
        // Queue registers may only change while the queue is disabled (§4.1.4.3.2).
        boolean qw = qv && !r.rings.enabled[q];
        switch (offset) {
            case DEVICE_FEATURE_SELECT -> r.features.selectDevice((int) value);
            case DRIVER_FEATURE_SELECT -> r.features.selectDriver((int) value);
            case DRIVER_FEATURE -> r.features.writeDriverWindow(value, (r.status & DeviceStatus.FEATURES_OK) != 0);
            case CONFIG_MSIX_VECTOR -> r.configVector = r.validVector((int) value & 0xffff);
            case DEVICE_STATUS -> {
                return writeStatus((int) value & 0xff);
            }
            case QUEUE_SELECT -> r.queueSelect = (int) value & 0xffff;
            case QUEUE_SIZE -> {
                if (qw) r.rings.size[q] = (int) value & 0xffff;
            }
            case QUEUE_MSIX_VECTOR -> {
                if (qv) r.queueVector[q] = r.validVector((int) value & 0xffff);
            }
            case QUEUE_ENABLE -> {
                // §4.1.4.3.2: the driver MUST NOT write 0; enabling is one-way until reset.
                if (qv && value == 1) r.rings.enabled[q] = true;
            }
            case QUEUE_DESC -> { if (qw) r.rings.desc[q] = merge(r.rings.desc[q], value, size, 0); }
            case QUEUE_DESC + 4 -> { if (qw) r.rings.desc[q] = merge(r.rings.desc[q], value, size, 32); }
            case QUEUE_DRIVER -> { if (qw) r.rings.driver[q] = merge(r.rings.driver[q], value, size, 0); }
            case QUEUE_DRIVER + 4 -> { if (qw) r.rings.driver[q] = merge(r.rings.driver[q], value, size, 32); }
            case QUEUE_DEVICE -> { if (qw) r.rings.device[q] = merge(r.rings.device[q], value, size, 0); }
            case QUEUE_DEVICE + 4 -> { if (qw) r.rings.device[q] = merge(r.rings.device[q], value, size, 32); }
            default -> {
                // read-only registers
            }
        }
        return FunctionRegisters.Effect.NONE;
    }

    /** 0 resets; anything else goes through the status rules, FEATURES_OK checking what was negotiated. */
    private FunctionRegisters.Effect writeStatus(int next) {
        if (next == 0) {
            return FunctionRegisters.Effect.RESET;
        }
        StatusRegister w = StatusRegister.write(name, r.status, next,
                () -> QueueRegisters.featuresProblem(r.model, QueueRegisters.offered(r.model), r.features.driver(), true));
        r.status = w.status();
        return w.activate() ? FunctionRegisters.Effect.ACTIVATE : FunctionRegisters.Effect.NONE;
    }

    /** A 32-bit half (or part of it) of a 64-bit address register. */
    private static long merge(long old, long value, int size, int shift) {
        long mask = size >= 8 ? -1L : ((1L << (8 * size)) - 1) << shift;
        return (old & ~mask) | ((value << shift) & mask);
    }
}
