package io.jvirtio.core.device;

import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.queue.QueueState;
import io.jvirtio.core.spec.DeviceType;

/**
 * A virtio device as the VMM implements it: a configuration space, some queues and a backend
 * (Firecracker's shape). The transport owns status and feature negotiation and calls in at the points
 * VIRTIO 1.2 §3.1.1 defines.
 */
public interface VirtioDeviceModel extends AutoCloseable {
    DeviceType type();

    /** Features offered (§2.2), including the device-independent ones it supports such as VERSION_1. */
    long deviceFeatures();

    /** Number of virtqueues. */
    int numQueues();

    /** Largest size the driver may give queue {@code index} (a power of two). */
    int maxQueueSize(int index);

    /** The device configuration space (§4.1.4.6 "device cfg"); the transport reads and writes it. */
    ConfigSpace config();

    /**
     * FEATURES_OK (§2.2.2, §3.1.1 step 5): the driver accepted {@code features} (a subset of the offer).
     * Return false to refuse a combination the device cannot operate; the transport then leaves
     * FEATURES_OK clear.
     */
    default boolean acceptFeatures(long features) {
        return true;
    }

    /**
     * DRIVER_OK: the driver is live. The context gives the negotiated features, guest memory, the
     * enabled queues and the interrupts. The device starts serving; queue notifications arrive through
     * {@link #queueNotify(int)}.
     */
    void activate(DeviceContext context);

    /**
     * Ring-level start, between {@link #activate} and {@link #reset}: serve {@code queue} from the state it
     * was created with (virtio-mmio QueueReady 0→1 after DRIVER_OK, §4.2.2; a vhost-user ring that starts
     * or restarts). A queue already running at {@code index} is stopped first.
     */
    void startQueue(int index, DeviceQueue queue, Interrupt interrupt);

    /**
     * Ring-level stop (virtio-mmio QueueReady 1→0, vhost-user GET_VRING_BASE): on return the device no
     * longer touches that ring. Device state other than the ring (filters, data waiting for buffers) is
     * kept. Returns where the device got to in the ring, or null when the queue was not running.
     */
    QueueState stopQueue(int index);

    /**
     * vhost-user ring enable (SET_VRING_ENABLE): a disabled ring that is started is still processed, but
     * without talking to the peer — a NIC discards what the driver transmits and delivers nothing into its
     * receive ring (vhost-user.rst "Ring states"). May come before or after {@link #activate}; it outlives
     * ring restarts and is cleared by nothing but another call. Devices without a peer ignore it.
     */
    default void enableQueue(int index, boolean enabled) {
    }

    /**
     * vhost-user offers queue {@code index}'s kick eventfd before the queue (re)starts ({@code -1}: it has none
     * now). A device that returns true waits on the descriptor itself — one thread wake-up per kick instead of
     * two — from its next start of that queue until it stops; the session then does not watch it. The
     * descriptor stays the caller's: the device never closes it and stops using it at {@link #stopQueue}.
     */
    default boolean watchKicks(int index, int kickFd) {
        return false;
    }

    /**
     * After live migration (vhost-user SEND_RARP): make the network learn that {@code mac} now lives here —
     * a NIC broadcasts a RARP from it, as QEMU's self-announcement does. Returns false for a device with no
     * network to tell.
     */
    default boolean announce(byte[] mac) {
        return false;
    }

    /**
     * Whether the device resumes from a vhost-user in-flight log (INFLIGHT_SHMFD, "Inflight I/O tracking"): the
     * requests a previous back-end took and never completed are handed to it again, oldest first, and it must
     * finish them. Only such a device is offered the protocol feature. A device whose buffers are worth nothing
     * after a restart — a NIC's receive buffers, a lost frame — says no (as QEMU, which keeps a log only for block
     * and SCSI back-ends): it gives buffers back unused ({@code DeviceQueue.undoPop}), which the split ring's log
     * cannot record.
     */
    default boolean resubmitsInflight() {
        return false;
    }

    /** The driver notified queue {@code index} (§2.9). Called on the notifying thread; must not block. */
    void queueNotify(int index);

    /**
     * Device reset (§2.4): stop using every queue and return to the initial state. On return the device
     * no longer touches guest memory.
     */
    void reset();

    /**
     * Releases what the model owns (its backend connection, a switch port, threads of its own); called once,
     * when the model will not be activated again (a vhost-user connection ends, a device is unplugged).
     * Resources the model was given but does not own, such as a shared image file, stay open.
     */
    @Override
    default void close() {
        reset();
    }
}
