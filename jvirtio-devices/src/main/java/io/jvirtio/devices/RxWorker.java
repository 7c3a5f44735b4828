package io.jvirtio.devices;

import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.queue.VirtqueueException;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Serves a device-to-driver queue (net receive, console receive): data arrives from a backend at its own
 * pace, buffers from the driver at its own pace, and this worker joins them. It wakes on either — a queue
 * notification or {@link #wake()} from the backend — and asks for notifications only while data waits
 * for buffers.
 *
 * <p>A source that can also write data it was handed ({@link DirectSource}) lets the thread that produced the
 * data deliver it into the ring itself ({@link #tryDeliver}) while nobody else serves the ring: no queueing, no
 * copy into the source's queue, no wake-up of this thread. Whoever serves the ring — this thread or one such
 * producer — owns it alone ({@code owner}, a compare-and-set whose release and acquire also hand the queue's
 * state from one to the next); once this thread ends, nobody does. A ring a {@link Poller} serves takes direct
 * delivery from that poller alone, published after the round of the ring it serves ({@link Poller#defer});
 * from other threads it queues, and the poller comes round soon and delivers what waits in batches.
 */
public final class RxWorker extends QueueThread {
    /** The data side: what is waiting to be delivered. Called only on the worker thread. */
    public interface Source {
        /** True when there is data to deliver. */
        boolean hasPending();

        /**
         * Writes pending data into {@code chain}'s writable buffers and returns the bytes written, or -1
         * when it staged the used elements itself (a frame over several buffers) or gave the chain back
         * with {@link DeviceQueue#undoPop()}.
         */
        int fill(DescriptorChain chain, DeviceQueue queue) throws VirtqueueException;
    }

    /** A source that can also write data handed to it, on the producer's thread ({@link #tryDeliver}). */
    public interface DirectSource extends Source {
        /**
         * Whether data may go straight into the ring now: nothing of the source's own waits (it would be
         * overtaken) and the ring takes data at all. Called by the owner of the ring.
         */
        boolean direct();

        /** {@link Source#fill} for {@code length} bytes at {@code offset} of {@code data}, not the source's own. */
        int fillFrom(DescriptorChain chain, DeviceQueue queue, MemorySegment data, long offset, long length)
                throws VirtqueueException;

        /**
         * {@link Source#fill} for a header of the source's kind at the start of {@code header} and then {@code length}
         * bytes of {@code from}'s readable buffers from {@code offset} on: data over several buffers of another
         * ring, copied once.
         */
        int fillGathered(DescriptorChain chain, DeviceQueue queue, MemorySegment header, DescriptorChain from,
                         long offset, long length) throws VirtqueueException;
    }

    /** What {@link WholeSource#fillWhole} did. */
    public static final int FILLED = 0;
    public static final int DROPPED = 1;
    public static final int NOT_WHOLE = 2;

    /**
     * A source that can write data into one chain read ahead with {@link DeviceQueue#peek}, taking it only when it
     * does: a batch's chains are read first, together, and then filled — the writes into the driver's buffers
     * (cache misses: the driver's CPU had the lines) no longer wait behind each chain's walk. A first version that
     * popped the chains ahead took the path from the switch's traffic source into a front-end's receive ring from
     * 10.5 to 13.6 Mpps on this machine while its two CPUs were far apart (docs/benchmarks.md).
     */
    public interface WholeSource extends DirectSource {
        /**
         * Writes the {@code length} bytes at {@code offset} of {@code data} into {@code chain}, a chain peeked and
         * not taken, if they fit it as one buffer: takes it ({@link DeviceQueue#take}), writes, stages it used —
         * {@link #FILLED}. Or drops the data, the chain left untaken for the next: {@link #DROPPED}. Or does
         * nothing: {@link #NOT_WHOLE}, and the data goes through {@link #fillFrom} with chains popped for it.
         */
        int fillWhole(DescriptorChain chain, DeviceQueue queue, MemorySegment data, long offset, long length)
                throws VirtqueueException;

        /**
         * {@link #fillWhole} for the source's own data that waits first ({@link Source#hasPending()}), which is
         * consumed when {@link #FILLED} or {@link #DROPPED}, and stays when {@link #NOT_WHOLE} (then {@link
         * Source#fill} takes it, with chains popped for it). Worker thread only.
         */
        int fillWholePending(DescriptorChain chain, DeviceQueue queue) throws VirtqueueException;
    }

    /**
     * Data handed over together (a burst of frames): item {@code i} is {@code length(i)} bytes at {@code offset(i)}
     * of {@code data(i)}, with the rules of {@link DirectSource#fillFrom}'s data.
     */
    public interface Batch {
        MemorySegment data(int i);

        long offset(int i);

        long length(int i);
    }

    private static final int FREE = 0;
    private static final int WORKER = 1;
    private static final int PRODUCER = 2;
    private static final int STOPPED = 3;

    private final Source source;
    private final DirectSource directSource;
    private final WholeSource wholeSource;
    /** Chains read ahead for a {@link WholeSource} (under ownership, so one set is enough). */
    private final DescriptorChain[] ahead;
    private final AtomicInteger owner = new AtomicInteger(FREE);
    /** The chain a producer delivers into (under ownership, so one is enough). */
    private final DescriptorChain directChain = new DescriptorChain();

    public RxWorker(String name, DeviceQueue queue, Interrupt interrupt, Source source,
                    DeviceContext.NeedsReset failure) {
        super(name, queue, interrupt, failure);
        this.source = source;
        this.directSource = source instanceof DirectSource d ? d : null;
        this.wholeSource = source instanceof WholeSource w ? w : null;
        this.ahead = new DescriptorChain[wholeSource != null ? BATCH : 0];
        for (int i = 0; i < ahead.length; i++) {
            ahead[i] = new DescriptorChain();
        }
    }

    /**
     * Writes {@code length} bytes at {@code offset} of {@code data} into the ring on the calling thread, if
     * nobody else serves the ring right now ({@link #enter}), the source allows it ({@link DirectSource#direct()}) and
     * the driver offered a buffer; publishes it and notifies the driver as this thread would. Allocation-free; never
     * blocks.
     *
     * @return false when it did not: the caller queues the data with the source and {@link #wake()}s this
     *         thread. True also when the source dropped the data (too large) or the ring broke (this thread
     *         then reports the error and stops).
     */
    public boolean tryDeliver(MemorySegment data, long offset, long length) {
        return deliverOne(data, null, offset, length);
    }

    /**
     * {@link #tryDeliver(MemorySegment, long, long)} for data over several buffers of another ring: {@code header}
     * (read as the source reads it) and then {@code length} bytes of {@code from}'s readable buffers from {@code
     * offset} on ({@link DirectSource#fillGathered}) — a frame in a sending guest's buffers, copied once.
     */
    public boolean tryDeliverGathered(MemorySegment header, DescriptorChain from, long offset, long length) {
        return deliverOne(header, from, offset, length);
    }

    /** One item: {@code data} itself, or ({@code from} not null) its header and {@code from}'s buffers. */
    private boolean deliverOne(MemorySegment data, DescriptorChain from, long offset, long length) {
        DirectSource d = directSource;
        int entered = d != null ? enter() : OUTSIDE;
        if (entered == OUTSIDE) {
            return false;
        }
        boolean wrote = false;
        try {
            if (!running() || failed() || !d.direct() || !queue.pop(directChain)) {
                return false; // no buffer: queued, and this thread (or the ring's round) asks the driver for a kick
            }
            int written = from == null ? d.fillFrom(directChain, queue, data, offset, length)
                    : d.fillGathered(directChain, queue, data, from, offset, length);
            if (written >= 0) {
                queue.addUsed(directChain, written);
            }
            wrote = true;
            return true;
        } catch (VirtqueueException e) {
            failLater(e); // this thread reports it (NEEDS_RESET) and stops; no producer delivers again
            return true;
        } finally {
            leave(entered, wrote);
        }
    }

    /**
     * {@link #tryDeliver(MemorySegment, long, long)} for items {@code from} to {@code to} of {@code batch}, in order,
     * with one check of the ring and one publish (or, polled, one deferred publish) for all: what a burst of frames
     * costs the ring beyond each frame's own pop, checks and copy.
     *
     * @return how many of the items, from {@code from} on, it took (written, or dropped by the source, or lost with
     *         a ring that broke): the caller queues the rest with the source and {@link #wake()}s this thread
     */
    public int tryDeliver(Batch batch, int from, int to) {
        DirectSource d = directSource;
        int entered = d != null ? enter() : OUTSIDE;
        if (entered == OUTSIDE) {
            return 0;
        }
        int n = 0;
        try {
            n = running() && !failed() && d.direct() ? fillEach(d, batch, from, to) : 0;
            return n;
        } catch (VirtqueueException e) {
            failLater(e); // the batch is lost with the ring
            n = 0;
            return to - from;
        } finally {
            leave(entered, n > 0);
        }
    }

    /**
     * Work a producer does in the ring itself ({@link #tryServe}): takes the chains it fills from {@code queue}
     * ({@link DeviceQueue#peek}, {@link DeviceQueue#take}) and stages them used; its result is its caller's.
     */
    @FunctionalInterface
    public interface InRing<T> {
        long serve(DeviceQueue queue, T argument) throws VirtqueueException;
    }

    /** What {@link #tryServe} returns when the work did not run. */
    public static final long NOT_SERVED = Long.MIN_VALUE;
    /** What {@link #tryServe} returns when the ring broke under the work (this thread reports it and stops). */
    public static final long BROKEN = Long.MIN_VALUE + 1;

    /**
     * Runs {@code work} on the calling thread, in the ring, when {@link #tryDeliver} would write there — nobody else
     * serves it and the source lets data in now ({@link DirectSource#direct()}) — and publishes what it staged,
     * notifying the driver as this thread would. Returns the work's result, {@link #NOT_SERVED} or {@link #BROKEN}.
     */
    public <T> long tryServe(InRing<T> work, T argument) {
        DirectSource d = directSource;
        int entered = d != null ? enter() : OUTSIDE;
        if (entered == OUTSIDE) {
            return NOT_SERVED;
        }
        boolean ran = false;
        try {
            if (!running() || failed() || !d.direct()) {
                return NOT_SERVED;
            }
            ran = true;
            return work.serve(queue, argument);
        } catch (VirtqueueException e) {
            failLater(e); // this thread reports it (NEEDS_RESET) and stops
            return BROKEN;
        } finally {
            leave(entered, ran);
        }
    }

    /** What this worker delivers from. */
    public Source source() {
        return source;
    }

    /** {@link #enter}: not in the ring (another thread serves it, or this one may not deliver into it). */
    private static final int OUTSIDE = 0;
    /** {@link #enter}: in a polled ring, as its poller. */
    private static final int POLLING = 1;
    /** {@link #enter}: the ring's owner, taken from {@code FREE}. */
    private static final int OWNING = 2;

    /**
     * Whether the calling thread may write into the ring now, and how. A ring of its own thread: while nobody else
     * serves it — the owner is taken, and whoever serves it next acquires what this thread wrote. A polled ring
     * takes frames directly only from its poller, switching them while it serves another ring of its own (a NIC's
     * transmit ring, a traffic source): it owns every ring it serves, one at a time, so nobody else is inside this
     * one; and the publish waits for the end of that ring's round, one used-index update and at most one
     * notification for the batch ({@link Poller#defer}). Any other thread queues: the poller comes round soon and
     * delivers in batches (cheaper than a publish per frame: the loop 1.4–3× in side-by-side runs).
     */
    private int enter() {
        if (polled()) {
            return poller().isPollerThread() && joined ? POLLING : OUTSIDE;
        }
        return owner.compareAndSet(FREE, PRODUCER) ? OWNING : OUTSIDE;
    }

    /** Leaves what {@link #enter} gave: what was written published (polled: after the round), the ring free again. */
    private void leave(int entered, boolean wrote) {
        if (entered == POLLING) {
            if (wrote) {
                poller().defer(this);
            }
            return;
        }
        try {
            if (wrote) {
                flush();
            }
        } finally {
            owner.set(FREE);
        }
    }

    /**
     * Each item into a buffer of its own (or several), while the driver offers them; returns how many. A
     * {@link WholeSource} gets the chains read ahead, a batch at a time, and fills them in a loop of its own; an item
     * that does not fit one buffer (or chains a previous device left in flight) goes with chains popped for it.
     */
    private int fillEach(DirectSource d, Batch batch, int from, int to) throws VirtqueueException {
        WholeSource w = wholeSource;
        int i = from;
        while (i < to) {
            int k = w != null ? queue.peek(ahead, to - i) : 0;
            int c = 0;
            while (c < k && i < to) {
                int r = w.fillWhole(ahead[c], queue, batch.data(i), batch.offset(i), batch.length(i));
                if (r == NOT_WHOLE) {
                    break;
                }
                c += r == FILLED ? 1 : 0; // a dropped item leaves its chain to the next
                i++;
            }
            if (i == to) {
                break;
            }
            if (k > 0 && c == k) {
                continue; // every chain read ahead is filled: read the next ones
            }
            if (!queue.pop(directChain)) {
                break; // no buffer: the rest waits
            }
            int written = d.fillFrom(directChain, queue, batch.data(i), batch.offset(i), batch.length(i));
            if (written >= 0) {
                queue.addUsed(directChain, written);
            }
            i++;
        }
        return i - from;
    }

    @Override
    void serve(DescriptorChain chain) throws VirtqueueException {
        while (!owner.compareAndSet(FREE, WORKER)) {
            Thread.yield(); // a producer is delivering one frame: let it finish (it may share our CPU)
        }
        try {
            serveOwned(chain);
        } finally {
            owner.set(FREE);
        }
    }

    /**
     * The ring starts quiet: the driver adding receive buffers is no reason to wake anyone while nothing waits
     * for them (a producer delivering directly finds them; data that waits asks for a kick then). A ring left
     * with notifications on gets a kick for every buffer the driver adds — a syscall on its side, a wake-up here.
     */
    @Override
    void begin() {
        while (!owner.compareAndSet(FREE, WORKER)) {
            Thread.yield();
        }
        try {
            queue.disableNotifications();
        } finally {
            owner.set(FREE);
        }
    }

    @Override
    boolean poll(DescriptorChain chain) throws VirtqueueException {
        if (!source.hasPending()) {
            return false;
        }
        // only the poller itself writes into a polled ring (tryDeliver queues every other thread's frames): it owns
        // the ring without asking
        queue.disableNotifications();
        return fillAvailable(chain, BATCH) > 0; // one batch a round, as the poller's other rings
    }

    /** Data waiting for buffers needs a kick when the driver adds some; data arriving wakes the poller itself. */
    @Override
    boolean arm() throws VirtqueueException {
        return source.hasPending() && queue.enableNotifications();
    }

    /** Once this thread ends nobody serves the ring: a producer inside finishes first, none comes after. */
    @Override
    void end(boolean broken) {
        while (!owner.compareAndSet(FREE, STOPPED)) {
            Thread.yield();
        }
    }

    private void serveOwned(DescriptorChain chain) throws VirtqueueException {
        while (running() && source.hasPending()) {
            queue.disableNotifications();
            fillAvailable(chain, Integer.MAX_VALUE);
            // Data waits but the ring is empty: ask for a kick, and re-check for the race.
            if (source.hasPending() && !queue.enableNotifications()) {
                return;
            }
        }
    }

    /**
     * Fills up to {@code max} buffers while data waits and the driver offers them, publishing in batches;
     * returns how many.
     */
    private int fillAvailable(DescriptorChain chain, int max) throws VirtqueueException {
        WholeSource w = wholeSource;
        int n = 0;
        int unpublished = 0;
        while (n < max && running() && source.hasPending()) {
            // a WholeSource's waiting data into chains read ahead, as for a batch handed over (fillEach)
            int k = w != null ? queue.peek(ahead, Math.min(max - n, ahead.length)) : 0;
            int c = 0;
            while (c < k && n < max && source.hasPending()) {
                int r = w.fillWholePending(ahead[c], queue);
                if (r == NOT_WHOLE) {
                    break;
                }
                c += r == FILLED ? 1 : 0;
                n++;
            }
            unpublished += c;
            if (unpublished >= BATCH) {
                flush();
                unpublished = 0;
            }
            if (k > 0 && c == k) {
                continue; // every chain read ahead is filled: read the next ones
            }
            if (n >= max || !source.hasPending() || !queue.pop(chain)) {
                break;
            }
            int written = source.fill(chain, queue);
            if (written >= 0) {
                queue.addUsed(chain, written);
            }
            n++;
            if (++unpublished >= BATCH) {
                flush();
                unpublished = 0;
            }
        }
        if (unpublished > 0) {
            flush();
        }
        return n;
    }
}
