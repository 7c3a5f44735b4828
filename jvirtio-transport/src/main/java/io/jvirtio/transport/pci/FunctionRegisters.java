package io.jvirtio.transport.pci;

import io.jvirtio.core.device.VirtioDeviceModel;
import io.jvirtio.transport.common.FeatureRegisters;
import io.jvirtio.transport.common.QueueRegisters;

import java.util.Arrays;

import static io.jvirtio.transport.pci.VirtioPciCap.NO_VECTOR;

/**
 * The virtio registers of one virtio-pci function — status, features, the selected queue, its rings and
 * MSI-X vectors — which the modern common configuration ({@link CommonConfig}, §4.1.4.3) and the legacy
 * interface ({@link LegacyInterface}, §4.1.4.10) of a transitional device both drive: one state, two register
 * layouts over it. Not thread-safe: the function's lock guards it; {@code status}, {@code configVector} and
 * {@code active} are also read without it (interrupt delivery, the notify path).
 */
final class FunctionRegisters {
    /** What a register write asks of the function once its lock is released. */
    enum Effect { NONE, ACTIVATE, RESET }

    final VirtioDeviceModel model;
    final int numQueues;
    final int msixEntries;
    final FeatureRegisters features = new FeatureRegisters();
    final QueueRegisters rings;
    final int[] queueVector;
    volatile int status;
    volatile int configVector = NO_VECTOR;
    volatile boolean active;
    int queueSelect;

    FunctionRegisters(VirtioDeviceModel model, int msixEntries) {
        this.model = model;
        this.numQueues = model.numQueues();
        this.msixEntries = msixEntries;
        this.rings = new QueueRegisters(numQueues);
        this.queueVector = new int[numQueues];
        reset();
    }

    /** The selected queue, or -1 when {@code queue_select} names none (its registers then read 0). */
    int selected() {
        return queueSelect < numQueues ? queueSelect : -1;
    }

    /** A vector the table does not have reads back as NO_VECTOR, telling the driver it failed (§4.1.5.1.2). */
    int validVector(int v) {
        return v < msixEntries ? v : NO_VECTOR;
    }

    /** Every register at its reset value (§2.4); sizes start at the model's maxima. */
    void reset() {
        status = 0;
        features.reset();
        configVector = NO_VECTOR;
        queueSelect = 0;
        rings.reset(model, false);
        Arrays.fill(queueVector, NO_VECTOR);
    }
}
