package io.jvirtio.machine;

import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.locks.LockSupport;

/**
 * Delivers interrupts the way a CPU takes them: a device raises a vector (an MSI message, or an INTx
 * line) from its own thread, and the handler runs later on the single vCPU thread, never on the
 * device's thread. Pending vectors are bits in a lock-free bitmap, so raising one neither allocates nor
 * locks; a vector raised again before its handler ran is delivered once (edge-triggered, coalesced).
 */
final class InterruptController implements AutoCloseable {
    static final int MAX_VECTORS = 2048;
    private static final Logger LOG = System.getLogger(InterruptController.class.getName());

    private final Runnable[] handlers = new Runnable[MAX_VECTORS];
    private final AtomicLongArray pending = new AtomicLongArray(MAX_VECTORS / 64);
    private final Thread vcpu;
    private volatile boolean running = true;
    private volatile long delivered;

    InterruptController() {
        vcpu = Thread.ofPlatform().name("jvirtio-vcpu").daemon().start(this::run);
    }

    synchronized int allocate(Runnable handler) {
        for (int v = 0; v < MAX_VECTORS; v++) {
            if (handlers[v] == null) {
                handlers[v] = handler;
                return v;
            }
        }
        throw new IllegalStateException("all " + MAX_VECTORS + " interrupt vectors are in use");
    }

    synchronized void free(int vector) {
        handlers[vector] = null;
    }

    /** Marks {@code vector} pending and wakes the vCPU. Callable from any thread. */
    void raise(int vector) {
        if (vector < 0 || vector >= MAX_VECTORS) {
            return;
        }
        long bit = 1L << (vector & 63);
        int word = vector >>> 6;
        long old;
        do {
            old = pending.get(word);
            if ((old & bit) != 0) {
                return;
            }
        } while (!pending.compareAndSet(word, old, old | bit));
        LockSupport.unpark(vcpu);
    }

    long delivered() {
        return delivered;
    }

    private void run() {
        while (running) {
            boolean any = false;
            for (int w = 0; w < pending.length(); w++) {
                long bits = pending.getAndSet(w, 0);
                while (bits != 0) {
                    int v = (w << 6) | Long.numberOfTrailingZeros(bits);
                    bits &= bits - 1;
                    any = true;
                    Runnable h = handlers[v];
                    if (h != null) {
                        try {
                            h.run();
                            delivered++;
                        } catch (RuntimeException | Error e) {
                            LOG.log(Level.ERROR, "interrupt handler for vector " + v + " failed", e);
                        }
                    }
                }
            }
            if (!any) {
                LockSupport.park(this);
            }
        }
    }

    @Override
    public void close() {
        running = false;
        LockSupport.unpark(vcpu);
        try {
            vcpu.join(5000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
