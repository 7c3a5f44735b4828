package io.jvirtio.devices.net;

import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.spec.Net;
import io.jvirtio.devices.RxWorker;

import java.lang.foreign.MemorySegment;

/**
 * A NIC's receive side, as its backend sees it: frames for the guest — one at a time, in bursts, or gathered from
 * a sending guest's buffers — filtered, steered to a queue pair, and written straight into that pair's receive
 * ring when nobody else serves it ({@link RxWorker#tryDeliver}), else queued for the ring's thread. Runs on the
 * sender's thread; allocates nothing and, on this path, uses no atomic read-modify-write of its own. One per
 * backend queue: {@code pair} is the pair that queue belongs to, or -1 to steer by the frames' addresses.
 */
final class Inbound implements NetBackend.Receiver {
    private final NetDevice nic;
    private final int pair;
    private final long offloads;

    Inbound(NetDevice nic, int pair) {
        this.nic = nic;
        this.pair = pair;
        this.offloads = nic.offloads();
    }

    /**
     * The pair of {@code active} a frame goes to: the only one, the backend queue's own, or (a backend with one
     * queue for several pairs) by the hash of its destination and source addresses, so a flow keeps its pair.
     */
    private int steer(int active, long dst, long src) {
        if (active == 1) {
            return 0;
        }
        if (pair >= 0) {
            return pair < active ? pair : pair % active; // no division in the common case
        }
        return (int) Math.floorMod(dst * 31 + src, (long) active);
    }

    /**
     * A frame over several of a sending guest's buffers, behind the header its NIC checked: written straight into
     * the ring if it can be now, one copy from the sender's buffers into the driver's (filtered out: counted, done).
     * Else false, nothing done: the sender gathers it into a copy, which comes again through {@link #receive}.
     */
    @Override
    public boolean receiveGathered(MemorySegment header, DescriptorChain chain, long offset, long length) {
        if (offloads == 0 || nic.isClosed() || !nic.isActive() || length < NetDevice.ETH_HLEN) {
            return false;
        }
        MemorySegment a = VirtualSwitch.ADDRESSES.get();
        if (chain.readReadable(offset, a, 0, 12) < 12) {
            return false;
        }
        long dst = VirtualSwitch.mac(a, 0);
        int n = nic.activePairs();
        int p = steer(n, dst, VirtualSwitch.mac(a, 6));
        if (!nic.filter().accepts(dst)) {
            nic.rxFiltered.increment();
            return true;
        }
        RxWorker rx = nic.pair(p).receiver;
        return rx != null && rx.tryDeliverGathered(header, chain, offset, length);
    }

    /**
     * The next frame of {@code reader} read straight into the ring of the pair it goes to — the only one, or the
     * backend queue's own — when the ring takes frames now ({@link RxWorker#tryServe}, {@link FrameSource#serve}).
     * False when it cannot (no buffer offered, frames waiting here, another thread in the ring, pairs chosen by
     * address): the backend reads the frame itself. A frame longer than the buffers offered goes on from the
     * reader's spill as any other frame.
     */
    @Override
    public boolean receiveRead(NetBackend.FrameReader reader) {
        try {
            int n = nic.activePairs();
            if (nic.isClosed() || !nic.isActive() || n > 1 && pair < 0) {
                return false;
            }
            RxWorker rx = nic.pair(steer(n, 0, 0)).receiver;
            if (rx == null || !(rx.source() instanceof FrameSource source)) {
                return false;
            }
            long r = rx.tryServe(source, reader);
            if (r == RxWorker.NOT_SERVED || r == FrameSource.NOT_READ) {
                return false;
            }
            if (r != RxWorker.BROKEN && r < FrameSource.NOT_READ) {
                deliver(reader.spill(), 0, FrameSource.spilled(r)); // spilled(spilled(n)) == n
            }
            return true;
        } catch (IllegalStateException e) {
            if (!nic.isClosed()) {
                throw e;
            }
            return true; // the queues were freed under a late reader: the NIC is gone
        }
    }

    /**
     * The queue of the pair this backend queue's frames go to is full: the driver takes none now. With pairs chosen
     * by address, when every active pair's is.
     */
    @Override
    public boolean congested() {
        int n = nic.activePairs();
        if (pair >= 0 || n == 1) {
            return nic.pair(steer(n, 0, 0)).inbound.isFull();
        }
        for (int p = 0; p < n; p++) {
            if (!nic.pair(p).inbound.isFull()) {
                return false;
            }
        }
        return true;
    }

    /** Frames {@code from} to {@code to} of {@code burst}: as {@link #receive} takes one, the checks once a run. */
    @Override
    public void receive(FrameBurst burst, int from, int to) {
        try {
            deliver(burst, from, to);
        } catch (IllegalStateException e) {
            if (!nic.isClosed()) {
                throw e;
            }
            nic.rxDropped.add(to - from); // the queues were freed under a late sender: the NIC is gone
        }
    }

    /**
     * A burst's frames go to one pair — the only one, or the backend queue's own — in runs of frames this NIC
     * takes, each run written into the ring together ({@link RxWorker#tryDeliver(RxWorker.Batch, int, int)}); a frame
     * that is dropped or filtered ends a run and is counted as alone. Frames steered by address over several
     * pairs go one at a time.
     */
    private void deliver(FrameBurst burst, int from, int to) {
        int n = nic.activePairs();
        if (nic.isClosed() || !nic.isActive() || n > 1 && pair < 0) {
            for (int i = from; i < to; i++) {
                deliver(burst.data(i), burst.offset(i), burst.length(i));
            }
            return;
        }
        int p = steer(n, 0, 0);
        int h = offloads != 0 ? Net.HDR_SIZE : 0;
        boolean everyAddress = nic.filter().promiscuous(); // once a burst: no address read per frame then
        int run = from;
        for (int i = from; i < to; i++) {
            long length = burst.length(i);
            if (length < h + NetDevice.ETH_HLEN || h == 0 && !nic.withinMtu(false, length)
                    || !everyAddress
                    && !nic.filter().accepts(VirtualSwitch.mac(burst.data(i), burst.offset(i) + h))) {
                if (i > run) {
                    deliverRun(burst, run, i, p);
                }
                deliver(burst.data(i), burst.offset(i), length); // dropped or filtered, and counted, there
                run = i + 1;
            }
        }
        if (to > run) {
            deliverRun(burst, run, to, p);
        }
    }

    /** Frames {@code from} to {@code to} of {@code burst}, each for this NIC, to pair {@code p}: direct, or queued. */
    private void deliverRun(FrameBurst burst, int from, int to, int p) {
        RxWorker rx = nic.pair(p).receiver;
        int done = rx != null ? rx.tryDeliver(burst, from, to) : 0;
        boolean queued = false;
        for (int i = from + done; i < to; i++) {
            MemorySegment frame = burst.data(i);
            long at = burst.offset(i);
            long length = burst.length(i);
            if (offloads != 0 && !nic.driverTakes(frame, at, length, nic.receiveFeatures())
                    || !nic.pair(p).inbound.offer(frame, at, length)) {
                nic.rxDropped.increment();
                continue;
            }
            nic.rxQueued.increment();
            queued = true;
        }
        if (queued) {
            nic.wakeReceiver(p);
        }
    }

    /**
     * A frame from the backend for the guest: filter, steer to a pair, copy into its inbound ring, wake
     * its receive worker. Runs on the sender's thread; allocates nothing and, on this path, uses no atomic
     * read-modify-write of its own.
     */
    @Override
    public void receive(MemorySegment frame, long at, long length) {
        try {
            deliver(frame, at, length);
        } catch (IllegalStateException e) {
            if (!nic.isClosed()) {
                throw e;
            }
            nic.rxDropped.increment(); // the queues were freed under a late sender: the NIC is gone
        }
    }

    /** {@code length} bytes at {@code at} of {@code frame}, which may be another guest's transmit buffer. */
    private void deliver(MemorySegment frame, long at, long length) {
        int h = offloads != 0 ? Net.HDR_SIZE : 0;
        // behind a header, what it asks is checked where the frame is written (FrameSource reads it once: the
        // sender may rewrite it until then), and before the frame waits here; without one, only its size
        if (nic.isClosed() || !nic.isActive() || length < h + NetDevice.ETH_HLEN
                || h == 0 && !nic.withinMtu(false, length)) {
            nic.rxDropped.increment();
            return;
        }
        long dst = VirtualSwitch.mac(frame, at + h);
        if (!nic.filter().accepts(dst)) {
            nic.rxFiltered.increment();
            return;
        }
        int active = nic.activePairs();
        int p = steer(active, dst, VirtualSwitch.mac(frame, at + h + 6));
        RxWorker rx = nic.pair(p).receiver;
        if (rx != null && rx.tryDeliver(frame, at, length)) {
            return; // written into the guest's ring on this thread: no queueing, no wake-up
        }
        if (h != 0 && !nic.driverTakes(frame, at, length, nic.receiveFeatures())
                || !nic.pair(p).inbound.offer(frame, at, length)) {
            nic.rxDropped.increment();
            return;
        }
        nic.rxQueued.increment();
        nic.wakeReceiver(p);
    }
}
