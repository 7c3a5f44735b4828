package io.jvirtio.vhostuser;

import io.jvirtio.core.os.NativeException;
import io.jvirtio.core.os.Posix;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.Interrupt;

import java.lang.System.Logger.Level;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * What a backend session knows about one ring (§ "Ring states" of vhost-user.rst), and the descriptors the
 * front-end gave it: kick, call and error eventfds, each closed when replaced or dropped.
 */
final class Vring {
    private static final System.Logger LOG = System.getLogger(Vring.class.getName());

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
    private int callFd = -1;
    /** Guarded by this object: an interrupt was due while there was no call fd to send it on. */
    private boolean missedCall;
    /** Read by queue threads reporting a broken ring. */
    private volatile int errFd = -1;
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

    /** SET_VRING_ERR: where a broken ring is reported from now on. */
    void replaceErr(int fd) {
        Channel.closeQuietly(errFd);
        errFd = fd;
    }

    /** SET_VRING_CALL: interrupts go to {@code fd} from the next one on (the ring keeps running). */
    synchronized void replaceCall(int fd) {
        Channel.closeQuietly(callFd);
        callFd = fd;
        if (fd >= 0 && missedCall) {
            // QEMU sets a ring's call fd after its kick, so the ring may already have used buffers and
            // wanted to say so: say it now. A lost interrupt can stall a driver for ever (a NIC's full
            // transmit ring waits for one); a spurious one costs a look (split-drv-14).
            missedCall = false;
            try (Arena a = Arena.ofConfined()) {
                Posix.eventfdSignal(fd, a.allocate(8), Posix.callState(a));
            } catch (NativeException e) {
                LOG.log(Level.DEBUG, "call ring {0}: {1}", index, e.getMessage());
            }
        }
    }

    /** Closes the kick, call and error descriptors (a reset, the session's end). */
    void dropFds() {
        Channel.closeQuietly(kickFd);
        kickFd = -1;
        replaceErr(-1);
        replaceCall(-1);
    }

    /**
     * The ring's interrupt: a write to its current call eventfd (none in polling mode), or, without one yet, a
     * note to send it when one comes. The fd is read under the ring's lock at each interrupt, since the front-end
     * may replace it at any time.
     */
    Interrupt interrupt() {
        Arena arena = Arena.ofAuto();
        MemorySegment one = arena.allocate(8);
        MemorySegment state = Posix.callState(arena);
        return () -> {
            synchronized (this) {
                if (callFd < 0) {
                    missedCall = true;
                    return;
                }
                try {
                    Posix.eventfdSignal(callFd, one, state);
                } catch (NativeException e) {
                    LOG.log(Level.DEBUG, "call ring {0}: {1}", index, e.getMessage());
                }
            }
        };
    }

    /** Tells the front-end, on the error eventfd if it gave one, that the device found a ring broken. */
    void signalError(MemorySegment one, MemorySegment state) {
        int fd = errFd;
        if (fd >= 0) {
            try {
                Posix.eventfdSignal(fd, one, state);
            } catch (NativeException e) {
                LOG.log(Level.DEBUG, "error fd of ring {0}: {1}", index, e.getMessage());
            }
        }
    }
}
