package io.jvirtio.devices;

import java.util.concurrent.atomic.AtomicInteger;

/**
 * Several {@link Poller}s that share the queues of many devices, as DPDK's lcores or OVS-DPDK's PMD threads: a
 * device's queue pairs go to the pollers in turn, each device starting one poller after the device before it, so
 * the pairs of one device and the devices among themselves spread over the threads. Each queue has one poller; a
 * frame from a ring of one poller into a ring of another waits in the receiving device's queue for its poller.
 */
public final class PollerGroup implements AutoCloseable {
    private final Poller[] pollers;
    private final AtomicInteger next = new AtomicInteger();

    /** {@code count} pollers named {@code name-0}, {@code name-1}, … (one: {@code name}), polling {@code pollNanos}. */
    public PollerGroup(String name, int count, long pollNanos) {
        if (count < 1) {
            throw new IllegalArgumentException("pollers " + count + " must be at least 1");
        }
        pollers = new Poller[count];
        for (int i = 0; i < count; i++) {
            pollers[i] = new Poller(count == 1 ? name : name + "-" + i, pollNanos);
        }
    }

    /** A group of pollers made elsewhere (closing it closes them). */
    public PollerGroup(Poller... pollers) {
        if (pollers.length < 1) {
            throw new IllegalArgumentException("a poller group needs a poller");
        }
        this.pollers = pollers.clone();
    }

    public int size() {
        return pollers.length;
    }

    public long pollNanos() {
        return pollers[0].pollNanos();
    }

    /** Poller {@code i mod size()}. */
    public Poller poller(int i) {
        return pollers[Math.floorMod(i, pollers.length)];
    }

    /** Where the next device's first queue pair goes: the poller after the previous device's first. */
    public int claim() {
        return next.getAndIncrement();
    }

    @Override
    public void close() {
        for (Poller p : pollers) {
            p.close();
        }
    }
}
