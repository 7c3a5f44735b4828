package io.jvirtio.devices.net;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A statistics counter that many threads add to on a per-frame path without a locked instruction: each thread
 * counts in a cell of its own (an ordered store, no read-modify-write), and reading sums the cells. An
 * {@code AtomicLong} would cost a locked add per frame, which waits for every store before it — the frame's
 * bytes just written into guest memory — to leave the CPU's store buffer. Cells of threads that ended are
 * folded into one sum when read, so a long-running process does not keep a cell per thread it ever had.
 */
public final class ThreadCounter {
    private static final class Cell extends AtomicLong {
        final Thread owner = Thread.currentThread();
    }

    private final ThreadLocal<Cell> mine = ThreadLocal.withInitial(this::register);
    /** The cell counted in last: a thread that counts again finds its own without a thread-local lookup. */
    private Cell last;
    private final List<Cell> cells = new ArrayList<>();
    private long retired;

    private synchronized Cell register() {
        Cell c = new Cell();
        cells.add(c);
        return c;
    }

    /** Adds one, on the calling thread's cell. Allocation-free after the thread's first call. */
    void increment() {
        add(1);
    }

    /** Adds {@code n} (a burst's frames), on the calling thread's cell. */
    void add(long n) {
        Cell c = last; // a racy read: a cell of another thread is told apart by its owner
        if (c == null || c.owner != Thread.currentThread()) {
            c = mine.get();
            last = c;
        }
        c.lazySet(c.get() + n); // only this thread writes its cell
    }

    /** The sum over every thread that counted. */
    public synchronized long get() {
        long n = retired;
        for (int i = cells.size() - 1; i >= 0; i--) {
            Cell c = cells.get(i);
            if (!c.owner.isAlive()) {
                retired += c.get(); // its thread ended: it counts no more
                n += c.get();
                cells.remove(i);
            } else {
                n += c.get();
            }
        }
        return n;
    }
}
