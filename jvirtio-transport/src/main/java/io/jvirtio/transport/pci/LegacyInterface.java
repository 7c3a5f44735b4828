package io.jvirtio.transport.pci;

import io.jvirtio.core.spec.DeviceStatus;
import io.jvirtio.core.queue.split.SplitLayout;
import io.jvirtio.transport.common.QueueRegisters;

import java.util.function.Consumer;

import static io.jvirtio.transport.pci.VirtioPciCap.NO_VECTOR;

/**
 * The legacy interface's register block (VIRTIO 1.2 §4.1.4.10, below the device configuration; ISR, the
 * notify register and the configuration stay with the function) over the same registers as the modern one.
 * Legacy drivers see 32 feature bits, place a queue by its page frame in the contiguous legacy layout (§2.7.2),
 * and have no FEATURES_OK step: DRIVER_OK starts the device. Called under the function's lock.
 */
final class LegacyInterface {
    private final FunctionRegisters r;
    private final Consumer<String> needsReset;

    LegacyInterface(FunctionRegisters registers, Consumer<String> needsReset) {
        this.r = registers;
        this.needsReset = needsReset;
    }

    long read(int off) {
        int q = r.selected();
        boolean qv = q >= 0;
        return switch (off) {
            // Legacy features are 32 bits; VERSION_1 and above do not exist there.
            case LegacyLayout.HOST_FEATURES -> r.model.deviceFeatures() & 0xffffffffL;
            case LegacyLayout.GUEST_FEATURES -> r.features.driver() & 0xffffffffL;
            case LegacyLayout.QUEUE_PFN -> qv && r.rings.enabled[q] ? r.rings.desc[q] / LegacyLayout.QUEUE_ALIGN : 0;
            case LegacyLayout.QUEUE_NUM -> qv ? r.model.maxQueueSize(q) : 0;
            case LegacyLayout.QUEUE_SEL -> r.queueSelect;
            case LegacyLayout.STATUS -> r.status;
            case LegacyLayout.CONFIG_VECTOR -> r.configVector;
            case LegacyLayout.QUEUE_VECTOR -> qv ? r.queueVector[q] : NO_VECTOR;
            default -> 0;
        };
    }

    FunctionRegisters.Effect write(int off, long value) {
        int q = r.selected();
        boolean qv = q >= 0;
        switch (off) {
            case LegacyLayout.GUEST_FEATURES -> {
                if (!r.active) {
                    r.features.writeLegacy(value);
                }
            }
            case LegacyLayout.QUEUE_PFN -> {
                if (qv && !r.active) {
                    placeQueue(q, value & 0xffffffffL);
                }
            }
            case LegacyLayout.QUEUE_SEL -> r.queueSelect = (int) value & 0xffff;
            case LegacyLayout.STATUS -> {
                return writeStatus((int) value & 0xff);
            }
            case LegacyLayout.CONFIG_VECTOR -> r.configVector = r.validVector((int) value & 0xffff);
            case LegacyLayout.QUEUE_VECTOR -> {
                if (qv) r.queueVector[q] = r.validVector((int) value & 0xffff);
            }
            default -> {
            }
        }
        return FunctionRegisters.Effect.NONE;
    }

    /** QUEUE_PFN: 0 releases the queue; else its rings lie contiguous from that page, at the maximum size. */
    private void placeQueue(int q, long pfn) {
        if (pfn == 0) {
            r.rings.enabled[q] = false;
            return;
        }
        int n = r.model.maxQueueSize(q);
        SplitLayout l = SplitLayout.legacy(n, LegacyLayout.QUEUE_ALIGN);
        long base = pfn * LegacyLayout.QUEUE_ALIGN;
        r.rings.size[q] = n;
        r.rings.desc[q] = base;
        r.rings.driver[q] = base + l.availOffset();
        r.rings.device[q] = base + l.usedOffset();
        r.rings.enabled[q] = true;
    }

    private FunctionRegisters.Effect writeStatus(int next) {
        if (next == 0) {
            return FunctionRegisters.Effect.RESET;
        }
        int added = next & ~r.status;
        r.status = next | (r.status & DeviceStatus.DEVICE_NEEDS_RESET);
        boolean start = (added & DeviceStatus.DRIVER_OK) != 0 && (next & DeviceStatus.FAILED) == 0;
        return start && featuresAcceptable() ? FunctionRegisters.Effect.ACTIVATE : FunctionRegisters.Effect.NONE;
    }

    private boolean featuresAcceptable() {
        String problem = QueueRegisters.featuresProblem(r.model, r.model.deviceFeatures() & 0xffffffffL,
                r.features.driver(), false);
        if (problem != null) {
            needsReset.accept("legacy driver: " + problem);
            return false;
        }
        return true;
    }
}
