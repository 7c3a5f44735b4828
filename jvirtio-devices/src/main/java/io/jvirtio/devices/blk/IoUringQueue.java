package io.jvirtio.devices.blk;

import io.jvirtio.core.os.FileIo;
import io.jvirtio.core.os.IoUring;
import io.jvirtio.core.os.NativeException;
import io.jvirtio.core.os.Posix;

import java.io.IOException;
import java.lang.System.Logger.Level;
import java.lang.System.Logger;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * One virtqueue's io_uring: each request becomes one SQE (READ/WRITE for one buffer, READV/WRITEV with the
 * iovec in a per-tag slot for more, FSYNC for FLUSH, FALLOCATE for discard and write-zeroes), a batch is
 * one {@code io_uring_enter}, and completions are reaped from the mmapped CQ without a system call. The
 * queue's thread sleeps in {@code io_uring_enter} itself; {@link #wakeup()} ends that sleep through an
 * eventfd whose read is always pending in the ring.
 *
 * <p>The rare cases finish on the queue's thread with the blocking calls of {@link FileImage}: a short
 * transfer (the rest is read or written synchronously; past the end of the file reads as zeroes), a file
 * system without fallocate (zeroes are written), a writethrough write-zeroes (then fdatasync).
 */
final class IoUringQueue implements BlockQueue, IoUring.Completion {
    private static final Logger LOG = System.getLogger(IoUringQueue.class.getName());
    private static final long WAKE = -1L;
    private static final long KICK = -2L;

    private final FileImage image;
    private final IoUring ring;
    private final BlockCompletion completion;
    private final Arena arena = Arena.ofShared();
    private final BlockRequest[] requests;
    /** Per tag: the descriptor its transfer went to, for a short transfer's remainder. */
    private final int[] fdOf;
    private final MemorySegment iovecs;
    private final int iovPerTag;
    private final int wakeFd;
    private final MemorySegment wakeBuf = arena.allocate(8, 8);
    private final MemorySegment wakeState = Posix.callState(arena);
    private final MemorySegment wakeValue = arena.allocate(8, 8);
    /** Tags that did not fit into the submission ring; started at the next {@link #submit()}. */
    private final int[] backlog;
    private int backlogHead;
    private int backlogCount;
    private boolean wakeArmed;
    /** The kick eventfd watched with a multishot poll, or -1; re-armed when the kernel ends the poll. */
    private int kickFd = -1;
    private boolean kickArmed;
    /** Kick completions seen; written by the queue's thread only, read for statistics. */
    private volatile long kicks;
    /** Guarded by this: {@link #wakeup()} never touches a closed eventfd or arena. */
    private boolean closed;

    IoUringQueue(FileImage image, int depth, int sqEntries, BlockCompletion completion) throws IOException {
        this.image = image;
        this.completion = completion;
        this.requests = new BlockRequest[depth];
        this.fdOf = new int[depth];
        this.backlog = new int[depth];
        // A request has at most BlkDevice.MAX_BUFFERS buffers (BlkRequests enforces it) — more than the queue size
        // when an indirect table is longer than the queue.
        this.iovPerTag = Math.max(depth, BlkDevice.MAX_BUFFERS);
        this.iovecs = arena.allocate(16L * depth * iovPerTag, 8);
        // Completions never overflow: every request in flight, its follow-up and the wake read fit.
        this.ring = IoUring.create(sqEntries, 2 * depth + 2);
        try {
            this.wakeFd = Posix.eventfd();
        } catch (NativeException e) {
            ring.close();
            arena.close();
            throw e;
        }
    }

    /**
     * Requests handed to the kernel per {@code io_uring_enter} while a batch is being started. io_uring plugs
     * the block layer for batches of more than two, holding every request of the batch until its end; on a
     * fast disk the device then idles while the batch is built. Two at a time keep it busy — 0.8× to 1.1× of
     * the IOPS at depth 32 here for batches of 64 and 2 (docs/benchmarks.md) — at one system call per two.
     */
    static final int EAGER_SUBMIT = 2;

    @Override
    public void start(BlockRequest r) {
        requests[r.tag()] = r;
        if (backlogCount > 0 || !prepare(r)) {
            backlog[(backlogHead + backlogCount++) % backlog.length] = r.tag();
        } else if (ring.unsubmitted() >= EAGER_SUBMIT) {
            enter(false);
        }
    }

    private boolean prepare(BlockRequest r) {
        int tag = r.tag();
        return switch (r.op()) {
            case READ, WRITE -> {
                int fd = image.fdFor(r);
                fdOf[tag] = fd;
                boolean read = r.op() == BlockRequest.Op.READ;
                int flags = !read && r.durable() ? FileIo.RWF_DSYNC : 0;
                if (r.bufferCount() == 1) {
                    yield ring.prepare(read ? IoUring.OP_READ : IoUring.OP_WRITE, fd, r.bufferAddress(0),
                            (int) r.bufferLength(0), r.offset(), flags, tag);
                }
                if (r.bufferCount() > iovPerTag) {
                    throw new IllegalArgumentException("a request of " + r.bufferCount() + " buffers; this queue takes "
                            + iovPerTag);
                }
                long iov = (long) tag * iovPerTag * 16;
                for (int i = 0; i < r.bufferCount(); i++) {
                    iovecs.set(JAVA_LONG, iov + 16L * i, r.bufferAddress(i));
                    iovecs.set(JAVA_LONG, iov + 16L * i + 8, r.bufferLength(i));
                }
                yield ring.prepare(read ? IoUring.OP_READV : IoUring.OP_WRITEV, fd, iovecs.address() + iov,
                        r.bufferCount(), r.offset(), flags, tag);
            }
            case FLUSH -> ring.prepare(IoUring.OP_FSYNC, image.fd, 0, 0, 0, IoUring.FSYNC_DATASYNC, tag);
            // fallocate's SQE: off = offset, addr = length, len = mode
            case DISCARD -> ring.prepare(IoUring.OP_FALLOCATE, image.fd, r.length(),
                    FileIo.FALLOC_FL_KEEP_SIZE | FileIo.FALLOC_FL_PUNCH_HOLE, r.offset(), 0, tag);
            case WRITE_ZEROES -> ring.prepare(IoUring.OP_FALLOCATE, image.fd, r.length(),
                    FileImage.zeroMode(r.unmap()), r.offset(), 0, tag);
        };
    }

    @Override
    public void submit() {
        while (backlogCount > 0 && prepare(requests[backlog[backlogHead]])) {
            backlogHead = (backlogHead + 1) % backlog.length;
            backlogCount--;
        }
        enter(false);
    }

    private void enter(boolean wait) {
        try {
            ring.submit(wait);
        } catch (NativeException e) {
            // Only a broken ring fails here (EBADF, EFAULT): the queue cannot go on.
            throw new IllegalStateException("io_uring failed: " + e.getMessage(), e);
        }
    }

    @Override
    public long kicks() {
        return kicks;
    }

    @Override
    public void watch(int fd) {
        kickFd = fd;
        armKick();
    }

    /**
     * A multishot POLL_ADD: a completion at each signal of the eventfd, edge-triggered, so the counter need
     * not be read (a kick costs the queue no system call of its own).
     */
    private void armKick() {
        if (kickFd >= 0 && !kickArmed) {
            kickArmed = ring.prepare(IoUring.OP_POLL_ADD, kickFd, 0, IoUring.POLL_ADD_MULTI, 0, IoUring.POLLIN, KICK);
        }
    }

    @Override
    public boolean poll() {
        try {
            return ring.poll();
        } catch (NativeException e) {
            throw new IllegalStateException("io_uring failed: " + e.getMessage(), e);
        }
    }

    @Override
    public boolean ready() {
        try {
            return ring.ready();
        } catch (NativeException e) {
            throw new IllegalStateException("io_uring failed: " + e.getMessage(), e);
        }
    }

    @Override
    public int reap() {
        int n = ring.reap(this);
        if (backlogCount > 0) {
            submit(); // completions freed ring slots
        }
        return n;
    }

    @Override
    public void complete(long userData, int res, int flags) {
        if (userData == WAKE) {
            wakeArmed = false;
            return;
        }
        if (userData == KICK) {
            kicks++;
            // A kick: the caller serves the ring after this reap. Re-arm if the kernel ended the poll.
            if ((flags & IoUring.CQE_F_MORE) == 0) {
                kickArmed = false;
                if (res < 0) {
                    // Kicks would be lost from now on: fail the queue loudly (NEEDS_RESET), never stall it.
                    throw new IllegalStateException("cannot wait on kick fd " + kickFd + ": " + FileIo.describe(res));
                }
                armKick(); // the kernel ended the poll (e.g. its completions overflowed): start it again
            }
            return;
        }
        BlockRequest r = requests[(int) userData];
        completion.complete(r, finish(r, res));
    }

    /** The request's result from its CQE's, finishing the rare cases synchronously. */
    private int finish(BlockRequest r, int res) {
        try {
            switch (r.op()) {
                case READ, WRITE -> {
                    if (res >= 0 && res < r.length()) {
                        finishShort(r, res);
                        return BlockCompletion.OK;
                    }
                }
                case DISCARD -> {
                    if (res == -FileIo.EOPNOTSUPP) {
                        return BlockCompletion.OK; // a hint the file system cannot take
                    }
                }
                case WRITE_ZEROES -> {
                    if (res == -FileIo.EOPNOTSUPP || res == -FileIo.EINVAL) {
                        image.writeZeroesByWriting(r.offset(), r.length());
                        res = 0;
                    }
                    if (res == 0 && r.durable()) {
                        image.flush();
                    }
                }
                case FLUSH -> {
                }
            }
        } catch (NativeException e) {
            LOG.log(Level.WARNING, "{0} failed: {1}", r, e.getMessage());
            return -e.errno();
        } catch (IOException e) {
            LOG.log(Level.WARNING, "{0} failed: {1}", r, e.getMessage());
            return -FileIo.EIO;
        }
        if (res < 0) {
            LOG.log(Level.WARNING, "{0} failed: {1} on {2}", r, FileIo.describe(res), image.path());
            return res;
        }
        return BlockCompletion.OK;
    }

    /** A transfer that moved {@code done} of its bytes: the rest, synchronously. */
    private void finishShort(BlockRequest r, long done) throws IOException {
        long at = 0;
        for (int i = 0; i < r.bufferCount(); i++) {
            long len = r.bufferLength(i);
            if (done < at + len) {
                MemorySegment b = r.buffer(i);
                long skip = Math.max(0, done - at);
                if (r.op() == BlockRequest.Op.READ) {
                    image.readFrom(r.offset() + at, b, skip);
                } else {
                    image.writeFrom(r.offset() + at, b, skip, r.durable());
                }
            }
            at += len;
        }
    }

    @Override
    public void await() {
        armKick();
        if (!wakeArmed) {
            wakeArmed = ring.prepare(IoUring.OP_READ, wakeFd, wakeBuf.address(), 8, 0, 0, WAKE);
            if (!wakeArmed) {
                enter(false); // no room to arm the wake-up: do not sleep, the caller comes back
                return;
            }
        }
        enter(true);
    }

    @Override
    public synchronized void wakeup() {
        if (closed) {
            return; // a kick racing the queue's end: nobody to wake
        }
        try {
            Posix.eventfdSignal(wakeFd, wakeValue, wakeState);
        } catch (NativeException e) {
            LOG.log(Level.ERROR, "cannot wake an io_uring queue: {0}", e.getMessage());
        }
    }

    @Override
    public synchronized void close() {
        closed = true;
        ring.close();
        try {
            Posix.close(wakeFd);
        } catch (NativeException e) {
            LOG.log(Level.DEBUG, e.getMessage());
        }
        arena.close();
    }
}
