package io.jvirtio.vhostuser;

import io.jvirtio.core.queue.DeviceQueue;

/** What a backend session knows about one ring (§ "Ring states" of vhost-user.rst). */
final class Vring {
    final int index;
    int num;
    long descUser;
    long usedUser;
    long availUser;
    boolean addressed;
    /** SET_VRING_ADDR asked for the used ring's writes to be logged (VHOST_VRING_F_LOG). */
    boolean logUsed;
    int base;
    int kickFd = -1;
    boolean kickPolling;
    /** The device waits on {@link #kickFd} itself (see {@code VirtioDeviceModel.watchKicks}). */
    boolean kickTaken;
    /** Guarded by this object: interrupts read it while the session may replace it. */
    int callFd = -1;
    /** Guarded by this object: an interrupt was due while there was no call fd to send it on. */
    boolean missedCall;
    /** Read by queue threads reporting a broken ring. */
    volatile int errFd = -1;
    boolean enabled;
    boolean started;
    DeviceQueue queue;

    Vring(int index) {
        this.index = index;
    }

    /**
     * Started (it has a kick), addressed and sized: the back-end processes it — even while disabled, when
     * it must do so without talking to the peer (vhost-user.rst "Ring states").
     */
    boolean ready() {
        return started && addressed && num > 0;
    }
}
