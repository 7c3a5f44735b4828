package io.jvirtio.vhostuser;

import io.jvirtio.core.os.NativeException;
import io.jvirtio.core.os.Posix;

import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.function.IntConsumer;

/**
 * One thread per session that waits on every running ring's kick eventfd with epoll and turns each kick
 * into a queue notification. Rings whose front-end asked for polling (SET_VRING_KICK with NOFD) are
 * notified every millisecond instead. {@link #stop()} wakes it through its own eventfd.
 */
final class KickLoop {
    private static final Logger LOG = System.getLogger(KickLoop.class.getName());
    private static final long WAKE = -1;

    private final int epfd;
    private final int wakeFd;
    private final int[] kickFds;
    private final int[] polled;
    private final IntConsumer notify;
    private final Thread thread;
    private volatile boolean running = true;

    /**
     * @param kicks  per ring: its kick fd, or -1 for a polled ring, or -2 for a ring that is not running
     * @param notify called with the ring index on each kick
     */
    KickLoop(String name, int[] kicks, IntConsumer notify) throws NativeException {
        this.notify = notify;
        this.kickFds = kicks.clone();
        this.epfd = Posix.epollCreate();
        int wake;
        try {
            wake = Posix.eventfd();
        } catch (NativeException e) {
            Channel.closeQuietly(epfd);
            throw e;
        }
        this.wakeFd = wake;
        int polledCount = 0;
        for (int k : kicks) {
            if (k == -1) {
                polledCount++;
            }
        }
        this.polled = new int[polledCount];
        try {
            Posix.epollAdd(epfd, wakeFd, WAKE);
            int p = 0;
            for (int i = 0; i < kicks.length; i++) {
                if (kicks[i] >= 0) {
                    Posix.epollAdd(epfd, kicks[i], i);
                } else if (kicks[i] == -1) {
                    polled[p++] = i;
                }
            }
        } catch (NativeException e) {
            close();
            throw e;
        }
        this.thread = Thread.ofPlatform().name(name).daemon().start(this::run);
    }

    private void run() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment events = a.allocate((long) Posix.EPOLL_EVENT_SIZE * (kickFds.length + 1), 4);
            MemorySegment buf = a.allocate(8);
            MemorySegment state = Posix.callState(a);
            int timeout = polled.length > 0 ? 1 : -1;
            while (running) {
                int n = Posix.epollWait(epfd, events, timeout, state);
                for (int i = 0; i < n && running; i++) {
                    long data = Posix.epollData(events, i);
                    if (data == WAKE) {
                        continue;
                    }
                    int ring = (int) data;
                    Posix.read(kickFds[ring], buf, state);
                    notify.accept(ring);
                }
                for (int ring : polled) {
                    if (running) {
                        notify.accept(ring);
                    }
                }
            }
        } catch (NativeException e) {
            if (running) {
                LOG.log(Level.WARNING, "kick loop stopped: {0}", e.getMessage());
            }
        }
    }

    /** Stops the loop and waits until it will notify no more. */
    void stop() {
        running = false;
        try (Arena a = Arena.ofConfined()) {
            Posix.eventfdSignal(wakeFd, a.allocate(8), Posix.callState(a));
        } catch (NativeException e) {
            LOG.log(Level.DEBUG, e.getMessage());
        }
        try {
            thread.join(5000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        close();
    }

    private void close() {
        Channel.closeQuietly(wakeFd);
        Channel.closeQuietly(epfd);
    }
}
