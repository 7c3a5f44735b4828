package io.jvirtio.devices.net;

import io.jvirtio.core.os.NativeException;
import io.jvirtio.core.os.Posix;
import io.jvirtio.core.os.RawIo;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.spec.Net;
import io.jvirtio.devices.Poller;
import io.jvirtio.devices.net.NetBackend.FrameReader;
import io.jvirtio.devices.net.NetBackend.Receiver;

import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.locks.LockSupport;

/**
 * One queue of a {@link TapBackend}: its descriptor, its reader thread, where its frames go. Its frames are read
 * straight into the NIC's receive buffers when the NIC can take one then ({@link Receiver#receiveRead}): the
 * kernel's copy out of the socket buffer is the only one, as with vhost-net; else into {@code rxBuffer}, and from
 * there to the NIC. Frames the guest sends are written from where they lie in its memory, one {@code writev} each.
 */
final class TapQueue implements FrameReader {
    /** The largest frame either way: a 64 KiB segment, its Ethernet header and the virtio-net header. */
    static final int MAX_FRAME = 65536 + 14 + 12;
    /** The most pieces of a frame written with one writev (Linux sends a 64 KiB segment in at most 18). */
    static final int MAX_IOV = 64;
    /** How long a reader waits before looking again at a NIC that takes no frames. */
    static final long CONGESTED_NANOS = 1_000_000;
    /** Frames a poller reads from one TAP queue in a round, at most: its other rings get their turn. */
    static final int BURST = 32;
    private static final Logger LOG = System.getLogger(TapQueue.class.getName());

    /** The device's name and this queue's number, for the log. */
    private final String name;
    final int fd;
    private volatile boolean open = true;
    final Arena arena = Arena.ofShared();
    final MemorySegment txBuffer = arena.allocate(MAX_FRAME);
    /** The reader thread's: a frame read here, or the part of one the NIC's buffers could not hold. */
    final MemorySegment rxBuffer = arena.allocate(MAX_FRAME);
    /** What the last read into the NIC's buffers returned (reader thread only). */
    long lastRead;
    /** The iovecs of a gathered frame: its header, then a piece of each guest buffer it lies in. */
    final MemorySegment iov = arena.allocate(16L * MAX_IOV, 8);
    volatile Receiver receiver = (b, o, n) -> { };
    private final Thread reader;
    /** The poller that reads this queue in its rounds instead of {@code reader} ({@link #readBy}). */
    volatile Poller poller;
    /** Set by {@code reader} once it has stopped reading for the poller: from then on the poller alone reads. */
    volatile boolean handedOver;
    /** The poller sleeps: {@code reader} waits for a frame and wakes it. */
    volatile boolean armed;
    /** The device is gone (poll said so): nobody reads any more. */
    volatile boolean broken;
    /** Detached from the device (TUNSETQUEUE): the kernel gives it no frames, so the poller reads none. */
    volatile boolean detached;
    /** Reads in the poller's rounds that found nothing: now and then one asks poll whether the device is gone. */
    int emptyReads;
    final MemorySegment pollfd = arena.allocate(8);
    final Poller.Producer producer = new Poller.Producer() {
        @Override
        public boolean produce() {
            return readRound();
        }

        @Override
        public boolean arm() {
            if (handedOver && !broken && open) {
                armed = true;
                LockSupport.unpark(reader);
            }
            return false; // frames there already: the reader's poll sees them at once and wakes the poller
        }
    };

    TapQueue(String device, int queue, int fd) {
        this.name = device + " queue " + queue;
        this.fd = fd;
        this.reader = Thread.ofPlatform().name("jvirtio-tap-" + device + "-q" + queue).daemon().start(this::readLoop);
    }

    /**
     * Header and frame in one {@code writev}, the frame's iovecs pointing into the guest's buffers (validated
     * when the chain was popped); false when the chain has more buffers than {@link #MAX_IOV} or the frame is
     * too large: the caller copies. Raw addresses hold no arena open, and need not: this runs on the thread
     * serving the guest's ring, inside its round, and a guest's memory is unmapped only once its rings have
     * stopped (vhost-user SET_MEM_TABLE, the end of a connection) — a rewrite of the header meanwhile is the
     * kernel's to refuse, as from any TAP writer.
     */
    synchronized boolean transmitGathered(MemorySegment header, DescriptorChain chain, long offset, long length) {
        if (!open) {
            return true; // dropped, as transmit drops it once closed
        }
        if (length + Net.HDR_SIZE > MAX_FRAME) {
            return false;
        }
        iov.set(ValueLayout.JAVA_LONG, 0, header.address());
        iov.set(ValueLayout.JAVA_LONG, 8, Net.HDR_SIZE);
        int n = 1;
        long skip = offset;
        long left = length;
        for (int i = 0; i < chain.readableCount() && left > 0; i++) {
            long len = Integer.toUnsignedLong(chain.length(i));
            if (skip >= len) {
                skip -= len;
                continue;
            }
            if (n == MAX_IOV) {
                return false;
            }
            long take = Math.min(len - skip, left);
            iov.set(ValueLayout.JAVA_LONG, 16L * n, chain.regionSegment(i).address() + chain.regionOffset(i) + skip);
            iov.set(ValueLayout.JAVA_LONG, 16L * n + 8, take);
            n++;
            left -= take;
            skip = 0;
        }
        write(n);
        return true;
    }

    synchronized void transmit(MemorySegment buffer, long offset, long length) {
        if (!open || length > txBuffer.byteSize() || offset + length > buffer.byteSize()) {
            return;
        }
        if (buffer.isNative()) {
            // where it lies (a guest's buffer, at an offset, mapped while its sender's ring runs): one iovec,
            // no copy and no slice
            iov.set(ValueLayout.JAVA_LONG, 0, buffer.address() + offset);
            iov.set(ValueLayout.JAVA_LONG, 8, length);
            write(1);
            return;
        }
        MemorySegment.copy(buffer, offset, txBuffer, 0, length); // a heap frame: the kernel needs native memory
        iov.set(ValueLayout.JAVA_LONG, 0, txBuffer.address());
        iov.set(ValueLayout.JAVA_LONG, 8, length);
        write(1);
    }

    /**
     * The frame in the first {@code n} iovecs, in one writev (bound without errno: {@link RawIo}). A frame the
     * kernel refuses — a header a hostile or broken guest wrote, EINVAL — is dropped.
     */
    private void write(int n) {
        if (RawIo.writev(fd, iov, n) < 0) {
            LOG.log(Level.DEBUG, "{0}: writev refused a frame", name);
        }
    }

    /** One frame, with its virtio-net header when the device has them; the reading thread only. */
    @Override
    public long read(MemorySegment vectors, int count) {
        return lastRead = RawIo.readv(fd, vectors, count);
    }

    @Override
    public MemorySegment spill() {
        return rxBuffer;
    }

    /**
     * Reads frames while the queue has them — the descriptor is non-blocking: one system call a frame under
     * load, as QEMU's and DPDK's TAP readers — and polls once a read finds it empty (with a timeout, so close()
     * ends the thread without relying on close waking a read). The system calls are {@link RawIo}'s, without
     * errno: poll's revents tell an empty queue from a broken device (deleted under us: POLLERR).
     */
    void readLoop() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment pollfd = a.allocate(8);
            boolean ready = false;
            while (open) {
                Poller p = poller;
                if (p != null) {
                    watch(p, pollfd);
                    return;
                }
                if (receiver.congested()) {
                    // the NIC's queue is full: frames stay in the kernel's, which drops what overflows it
                    // (the device's TX dropped), rather than be read here only to be dropped
                    LockSupport.parkNanos(CONGESTED_NANOS);
                    continue;
                }
                if (!ready) {
                    int revents = RawIo.poll(fd, 200, pollfd);
                    if (revents <= 0) {
                        continue; // timed out, or a signal
                    }
                    if ((revents & RawIo.POLLIN) == 0) {
                        gone(revents);
                        return;
                    }
                    if (poller != null) {
                        continue; // handed over while this thread waited: the poller reads this frame
                    }
                }
                ready = readOne(receiver) > 0; // else empty (EAGAIN), interrupted, or broken: poll tells
            }
        }
    }

    /**
     * The next frame, read straight into the NIC's buffers when it can take one now ({@link Receiver#receiveRead}),
     * else into {@code rxBuffer} and handed to it; what the read returned (not positive: nothing read).
     */
    private long readOne(Receiver r) {
        lastRead = 0;
        if (r.receiveRead(this)) {
            return lastRead;
        }
        long n = RawIo.read(fd, rxBuffer);
        if (n > 0) {
            r.receive(rxBuffer, n);
        }
        return n;
    }

    /**
     * One round of the poller's: up to {@link #BURST} frames while the TAP has them and the NIC takes them, each
     * read straight into the NIC's buffers when it can take one ({@link Receiver#receiveRead}: from the poller,
     * which alone writes into a polled ring) — the kernel's copy the only one, as DPDK's TAP PMD on an lcore.
     * Never blocks: the descriptor is non-blocking. True if it read a frame.
     */
    boolean readRound() {
        if (!handedOver || broken || detached || !open) {
            return false;
        }
        Receiver r = receiver;
        int frames = 0;
        while (frames < BURST && !r.congested()) {
            if (readOne(r) <= 0) {
                if ((++emptyReads & 1023) == 0) {
                    checkDevice(); // empty, or gone: a busy poller never sleeps for the reader's poll to tell
                }
                break;
            }
            frames++;
        }
        return frames > 0;
    }

    /** Whether the device is still there (poll's revents, without waiting); once gone, nobody reads again. */
    private void checkDevice() {
        int revents = RawIo.poll(fd, 0, pollfd);
        if (revents > 0 && (revents & RawIo.POLLIN) == 0) {
            gone(revents);
        }
    }

    private void gone(int revents) {
        if (!broken && open) {
            LOG.log(Level.WARNING, "{0}: reader stopped: poll revents 0x{1}", name, Integer.toHexString(revents));
        }
        broken = true;
    }

    /**
     * Polled: this thread hands reading over to {@code p} and only wakes it when it sleeps ({@code armed}) and a
     * frame comes — a poller that never sleeps costs no system call here. While the NIC takes no frames the
     * poller sleeps on its ring instead (the driver's notification wakes it when buffers come).
     */
    private void watch(Poller p, MemorySegment pollfd) {
        handedOver = true;
        p.wake(); // asleep since before the handover, it armed nothing for this queue: it does in its next sleep
        while (open && !broken) {
            if (!armed) {
                LockSupport.parkNanos(200_000_000L); // the poller unparks this thread when it arms
                continue;
            }
            if (receiver.congested()) {
                LockSupport.parkNanos(CONGESTED_NANOS);
                continue;
            }
            int revents = RawIo.poll(fd, 200, pollfd);
            if (revents <= 0) {
                continue;
            }
            if ((revents & RawIo.POLLIN) == 0) {
                gone(revents);
                return;
            }
            armed = false;
            p.wake();
        }
    }

    /**
     * From now on {@code p} reads this queue's frames in its rounds, the reader thread only waking it when it sleeps
     * and a frame comes (see {@link TapBackend#readIn}).
     */
    void readBy(Poller p) {
        if (poller == p) {
            return;
        }
        if (poller != null) {
            throw new IllegalStateException("TAP " + name + " is read by another poller");
        }
        poller = p;
        LockSupport.unpark(reader);
        p.addProducer(producer);
    }

    /** TUNSETQUEUE, if not so already: an attached queue gets its share of the host's flows, a detached one none. */
    void attach(boolean attach) {
        if (attach == !detached || !open) {
            return;
        }
        try {
            Tun.setQueue(fd, attach);
            detached = !attach;
        } catch (NativeException e) {
            LOG.log(Level.WARNING, "{0}: TUNSETQUEUE {1}: {2}", name, attach ? "attach" : "detach", e.getMessage());
        }
    }

    /** TUNSETOFFLOAD: what the host may hand this queue unfinished ({@code Tun.TUN_F_*}). */
    void acceptOffloads(int tunFlags) {
        try {
            Tun.setOffload(fd, tunFlags);
        } catch (NativeException e) {
            LOG.log(Level.WARNING, "{0}: TUNSETOFFLOAD 0x{1}: {2}", name, Integer.toHexString(tunFlags), e.getMessage());
        }
    }

    /**
     * Stops reading — out of its poller's rounds first, which returns once the poller has left the last one — and
     * writing, then closes the descriptor.
     */
    void close() {
        Poller p = poller;
        if (p != null) {
            p.removeProducer(producer);
        }
        open = false;
        LockSupport.unpark(reader);
        try {
            reader.join(2000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        release();
    }

    private synchronized void release() {
        try {
            Posix.close(fd);
        } catch (NativeException e) {
            LOG.log(Level.WARNING, e.getMessage());
        }
        arena.close();
    }
}
