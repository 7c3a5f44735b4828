package io.jvirtio.devices.blk.nbd;

import io.jvirtio.core.os.FileIo;
import io.jvirtio.core.os.Posix;
import io.jvirtio.devices.blk.BlockCompletion;
import io.jvirtio.devices.blk.BlockRequest;
import io.jvirtio.devices.blk.PostingQueue;

import java.io.IOException;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.atomic.AtomicReferenceArray;
import java.util.concurrent.locks.ReentrantLock;

import static io.jvirtio.devices.blk.nbd.NbdConnection.BE16;
import static io.jvirtio.devices.blk.nbd.NbdConnection.BE32;
import static io.jvirtio.devices.blk.nbd.NbdConnection.BE64;

/**
 * One virtqueue's NBD connection: requests are sent as they start (header and data in one {@code writev},
 * straight from guest memory), with the request's tag as the NBD cookie, so up to the queue's depth are in
 * flight; a reader thread takes the replies — simple, or structured chunks of data and holes — reading data
 * straight into guest memory, and posts completions for the queue's thread.
 *
 * <p>When the connection fails (the server went away, restarted, or broke the protocol) the reader
 * reconnects with backoff and sends every request still in flight again (NBD requests can be repeated: a
 * write writes the same bytes twice), so the guest sees a delay, not an error. Only after
 * {@link NbdBackend#reconnectTimeoutMillis()} without a server do requests fail, with EIO. A durable write
 * to a server without FUA is followed by a FLUSH before it completes.
 */
final class NbdQueue extends PostingQueue {
    private static final Logger LOG = System.getLogger(NbdQueue.class.getName());
    /** proto.md: a string "MUST be no longer than 4096 bytes"; an error chunk is u32, u16, the message, u64. */
    static final int MAX_ERROR_CHUNK = 4 + 2 + 4096 + 8;

    private final NbdBackend backend;
    private final String name;
    private final AtomicReferenceArray<BlockRequest> inflight;
    /** Per tag: the connection generation it was last sent on (guarded by {@link #sendLock}). */
    private final long[] sentOn;
    /** Per tag: 0 while its command is outstanding, 1 while its follow-up FLUSH is (durable writes without FUA). */
    private final int[] phase;
    /** Per tag: the first error a structured reply reported for it. */
    private final int[] replyError;
    /** Per tag: bytes of a read the structured reply's data and hole chunks have covered so far. */
    private final long[] covered;
    private final ReentrantLock sendLock = new ReentrantLock();
    private final Arena arena = Arena.ofShared();
    private final Sender queueSide = new Sender();
    private final Sender readerSide = new Sender();
    private final MemorySegment readState = Posix.callState(arena);
    private final MemorySegment header = arena.allocate(32, 8);
    /** An error chunk's payload: error, message length, message, and ERROR_OFFSET's offset. */
    private final MemorySegment errorChunk = arena.allocate(MAX_ERROR_CHUNK, 8);
    private final MemorySegment pollfds = arena.allocate(16, 8);
    /** Signalled by {@link #close()}: ends the reader's wait without touching the connection. */
    private final int wakeFd;
    private final Thread reader;
    private volatile NbdConnection conn;
    private long generation = 1;
    /** Set when the server stayed away past the reconnect timeout: new requests fail at once until it is back. */
    private volatile boolean failing;
    private volatile boolean running = true;

    /** Per-thread buffers for building a request: its header and iovec array. */
    private final class Sender {
        final MemorySegment head = arena.allocate(Nbd.REQUEST_SIZE, 8);
        final MemorySegment iov = arena.allocate(16L * 1025, 8);
        final MemorySegment state = Posix.callState(arena);
    }

    NbdQueue(NbdBackend backend, NbdConnection conn, int index, int depth, BlockCompletion completion)
            throws IOException {
        super(depth, completion);
        this.wakeFd = Posix.eventfd();
        this.backend = backend;
        this.conn = conn;
        this.name = backend.uri() + " q" + index;
        this.inflight = new AtomicReferenceArray<>(depth);
        this.sentOn = new long[depth];
        this.phase = new int[depth];
        this.replyError = new int[depth];
        this.covered = new long[depth];
        this.reader = Thread.ofPlatform().name("jvirtio-nbd-q" + index).daemon().start(this::readLoop);
    }

    @Override
    public void start(BlockRequest r) {
        int tag = r.tag();
        int unsupported = check(r);
        if (unsupported != Integer.MIN_VALUE) {
            post(r, unsupported);
            return;
        }
        if (failing) {
            post(r, -FileIo.EIO);
            return;
        }
        phase[tag] = 0;
        send(tag, queueSide, r);
    }

    /** A request the export cannot take, answered at once (or MIN_VALUE: send it). */
    private int check(BlockRequest r) {
        NbdConnection c = backend.probe();
        return switch (r.op()) {
            case READ, WRITE -> r.length() > Nbd.MAX_PAYLOAD || r.bufferCount() > 1024 ? -FileIo.EINVAL : Integer.MIN_VALUE;
            case FLUSH -> c.has(Nbd.TFLAG_SEND_FLUSH) ? Integer.MIN_VALUE : BlockCompletion.OK;
            // a discard is a hint: where the server takes none, the data simply stays
            case DISCARD -> c.has(Nbd.TFLAG_SEND_TRIM) ? Integer.MIN_VALUE : BlockCompletion.OK;
            case WRITE_ZEROES -> c.has(Nbd.TFLAG_SEND_WRITE_ZEROES) ? Integer.MIN_VALUE : -FileIo.EOPNOTSUPP;
        };
    }

    /**
     * Sends the tag's current command on the current connection, unless it was already sent there. With
     * {@code fresh}, the tag starts a new command first (in flight from now on, sent nowhere yet) — under the
     * same lock, so a reconnect's resend and this send never both send it.
     */
    private void send(int tag, Sender s, BlockRequest fresh) {
        NbdConnection c = null;
        boolean failed = false;
        sendLock.lock();
        try {
            if (fresh != null) {
                sentOn[tag] = 0;
                inflight.set(tag, fresh);
            }
            c = conn;
            BlockRequest r = inflight.get(tag);
            if (c == null || r == null || sentOn[tag] == generation) {
                return; // no connection (the reader sends it after reconnecting), or sent or done already
            }
            sentOn[tag] = generation;
            // what a reply on an earlier connection reported is void: the command is answered anew
            replyError[tag] = 0;
            covered[tag] = 0;
            int n = build(c, r, tag, s);
            NbdConnection.sendAll(c.fd, s.iov, n, s.state, name);
        } catch (IOException e) {
            LOG.log(Level.WARNING, "{0}: sending failed: {1}", name, e.getMessage());
            failed = true;
        } finally {
            sendLock.unlock();
        }
        if (failed) {
            lost(c);
        }
    }

    /** Fills the sender's header and iovecs for the tag's command; returns the iovec count. */
    private int build(NbdConnection c, BlockRequest r, int tag, Sender s) {
        int cmd;
        int flags = 0;
        boolean flushPhase = phase[tag] == 1;
        switch (r.op()) {
            case READ -> cmd = Nbd.CMD_READ;
            case WRITE -> {
                cmd = flushPhase ? Nbd.CMD_FLUSH : Nbd.CMD_WRITE;
                if (!flushPhase && r.durable() && c.has(Nbd.TFLAG_SEND_FUA)) {
                    flags = Nbd.CMD_FLAG_FUA;
                }
            }
            case FLUSH -> cmd = Nbd.CMD_FLUSH;
            case DISCARD -> cmd = Nbd.CMD_TRIM;
            case WRITE_ZEROES -> {
                cmd = flushPhase ? Nbd.CMD_FLUSH : Nbd.CMD_WRITE_ZEROES;
                if (!flushPhase) {
                    flags = (r.unmap() ? 0 : Nbd.CMD_FLAG_NO_HOLE)
                            | (r.durable() && c.has(Nbd.TFLAG_SEND_FUA) ? Nbd.CMD_FLAG_FUA : 0);
                }
            }
            default -> throw new AssertionError(r.op());
        }
        boolean flush = cmd == Nbd.CMD_FLUSH;
        MemorySegment h = s.head;
        h.set(BE32, 0, Nbd.REQUEST_MAGIC);
        h.set(BE16, 4, (short) flags);
        h.set(BE16, 6, (short) cmd);
        h.set(BE64, 8, cookie(tag, phase[tag]));
        h.set(BE64, 16, flush ? 0 : r.offset());
        h.set(BE32, 24, flush ? 0 : (int) r.length());
        s.iov.set(ValueLayout.JAVA_LONG, 0, h.address());
        s.iov.set(ValueLayout.JAVA_LONG, 8, Nbd.REQUEST_SIZE);
        int n = 1;
        if (cmd == Nbd.CMD_WRITE) {
            for (int i = 0; i < r.bufferCount(); i++, n++) {
                s.iov.set(ValueLayout.JAVA_LONG, 16L * n, r.bufferAddress(i));
                s.iov.set(ValueLayout.JAVA_LONG, 16L * n + 8, r.bufferLength(i));
            }
        }
        return n;
    }

    private static long cookie(int tag, int phase) {
        return ((long) phase << 32) | tag;
    }

    /** The connection failed: wake the reader (it reconnects); a stale connection is ignored. */
    private void lost(NbdConnection c) {
        if (c != null && c == conn) {
            c.shutdown();
        }
    }

    private void readLoop() {
        while (running) {
            NbdConnection c = conn;
            if (c == null) {
                reconnect();
                continue;
            }
            try {
                // Wait for a reply or for close(): a queue that stops leaves its connection whole, for reuse.
                int ready = io.jvirtio.core.os.SocketIo.pollEither(c.fd, wakeFd, pollfds, readState);
                if ((ready & 2) != 0 || !running) {
                    return;
                }
                if ((ready & 1) != 0) {
                    readReply(c);
                }
            } catch (IOException | ProtocolError e) {
                if (!running) {
                    return;
                }
                LOG.log(Level.WARNING, "{0}: connection lost: {1}; reconnecting", name, e.getMessage());
                drop(c);
            } catch (RuntimeException e) {
                // not the server's doing (a request's buffers gone, a defect here): the connection is mid-reply,
                // so it goes, and the requests in flight fail rather than wait for ever or be sent again
                if (!running) {
                    return;
                }
                LOG.log(Level.ERROR, name + ": reading a reply failed; failing the requests in flight", e);
                drop(c);
                // all taken before any is answered: a request started once the first answer is seen is not one of them
                BlockRequest[] failed = new BlockRequest[sentOn.length];
                for (int tag = 0; tag < failed.length; tag++) {
                    failed[tag] = inflight.getAndSet(tag, null);
                }
                for (BlockRequest r : failed) {
                    if (r != null) {
                        post(r, -FileIo.EIO);
                    }
                }
            }
        }
    }

    /** Forgets connection {@code c}: the next round reconnects, and what is in flight then is sent again. */
    private void drop(NbdConnection c) {
        use(null);
        c.close();
    }

    /** {@code next} (or none) is the connection from now on: a new generation, so every command goes out again. */
    private void use(NbdConnection next) {
        sendLock.lock();
        try {
            conn = next;
            generation++;
        } finally {
            sendLock.unlock();
        }
    }

    /** A server that broke the protocol: the connection is dropped (and made again). */
    private static final class ProtocolError extends Exception {
        ProtocolError(String message) {
            super(message, null, false, false);
        }
    }

    private void readReply(NbdConnection c) throws IOException, ProtocolError {
        MemorySegment h = header;
        NbdConnection.readFully(c.fd, h.asSlice(0, 4), readState, name);
        int magic = h.get(BE32, 0);
        if (magic == Nbd.SIMPLE_REPLY_MAGIC) {
            NbdConnection.readFully(c.fd, h.asSlice(4, 12), readState, name);
            int error = h.get(BE32, 4);
            long cookie = h.get(BE64, 8);
            BlockRequest r = lookup(cookie);
            if (error == 0 && r.op() == BlockRequest.Op.READ && phase[r.tag()] == 0) {
                readInto(c, r, 0, r.length());
            }
            finish(r, error == 0 ? 0 : -error);
        } else if (magic == Nbd.STRUCTURED_REPLY_MAGIC && c.structured) {
            NbdConnection.readFully(c.fd, h.asSlice(4, 16), readState, name);
            int flags = Short.toUnsignedInt(h.get(BE16, 4));
            int type = Short.toUnsignedInt(h.get(BE16, 6));
            long cookie = h.get(BE64, 8);
            long length = Integer.toUnsignedLong(h.get(BE32, 16));
            BlockRequest r = lookup(cookie);
            chunk(c, r, type, length);
            if ((flags & Nbd.REPLY_FLAG_DONE) != 0) {
                finish(r, doneResult(r));
            }
        } else {
            throw new ProtocolError("reply magic 0x" + Integer.toHexString(magic));
        }
    }

    /** The request a reply's cookie names, which must be in flight in the phase the cookie says. */
    private BlockRequest lookup(long cookie) throws ProtocolError {
        int tag = (int) cookie;
        int ph = (int) (cookie >>> 32);
        BlockRequest r = tag >= 0 && tag < sentOn.length ? inflight.get(tag) : null;
        if (r == null || ph != phase[tag]) {
            throw new ProtocolError("reply for cookie 0x" + Long.toHexString(cookie) + ", which is not in flight");
        }
        return r;
    }

    /** One structured reply chunk (doc/proto.md "Structured reply chunk message types"). */
    private void chunk(NbdConnection c, BlockRequest r, int type, long length) throws IOException, ProtocolError {
        if (length > Nbd.MAX_PAYLOAD + 64L) {
            throw new ProtocolError("reply chunk of " + length + " bytes");
        }
        boolean read = r.op() == BlockRequest.Op.READ && phase[r.tag()] == 0;
        if (type == Nbd.REPLY_TYPE_NONE && length == 0) {
            return;
        }
        if ((type & Nbd.REPLY_TYPE_ERROR_BIT) != 0) {
            // read into one buffer of the largest size an error chunk can have: a server reporting errors
            // on every request costs no memory, and one claiming a longer chunk broke the protocol
            if (length < 6 || length > MAX_ERROR_CHUNK) {
                throw new ProtocolError("error chunk of " + length + " bytes");
            }
            MemorySegment e = errorChunk.asSlice(0, length);
            NbdConnection.readFully(c.fd, e, readState, name);
            int error = e.get(BE32, 0);
            int msgLen = Short.toUnsignedInt(e.get(BE16, 4));
            if (msgLen > length - 6) {
                throw new ProtocolError("error message of " + msgLen + " bytes in a chunk of " + length);
            }
            String msg = new String(e.asSlice(6, msgLen).toArray(ValueLayout.JAVA_BYTE),
                    java.nio.charset.StandardCharsets.UTF_8);
            LOG.log(Level.WARNING, "{0}: {1} failed on the server: error {2} {3}", name, r, error, msg);
            if (replyError[r.tag()] == 0) {
                replyError[r.tag()] = error == 0 ? -FileIo.EIO : -error;
            }
            return;
        }
        if (!read || (type != Nbd.REPLY_TYPE_OFFSET_DATA && type != Nbd.REPLY_TYPE_OFFSET_HOLE)) {
            throw new ProtocolError("reply chunk type " + type + " for " + r);
        }
        MemorySegment o = header.asSlice(20, 12);
        NbdConnection.readFully(c.fd, o.asSlice(0, type == Nbd.REPLY_TYPE_OFFSET_HOLE ? 12 : 8), readState, name);
        long offset = o.get(BE64, 0);
        long n = type == Nbd.REPLY_TYPE_OFFSET_HOLE ? Integer.toUnsignedLong(o.get(BE32, 8)) : length - 8;
        if ((type == Nbd.REPLY_TYPE_OFFSET_HOLE && length != 12) || length < 8 || offset < r.offset()
                || n > r.length() || offset - r.offset() > r.length() - n) {
            throw new ProtocolError("chunk [" + offset + ", +" + n + ") outside " + r);
        }
        if (type == Nbd.REPLY_TYPE_OFFSET_DATA) {
            readInto(c, r, offset - r.offset(), n);
        } else {
            r.zero(offset - r.offset(), n);
        }
        covered[r.tag()] += n;
    }

    /**
     * A structured reply's result once its last chunk came: the first error it reported; for a read
     * without one, EIO unless its chunks covered every byte (proto.md: "When no error is detected, the server
     * MUST send enough data chunks to cover the entire region" — chunks never overlap, so their sum tells),
     * so a short reply never completes a read whose buffers hold what was there before.
     */
    private int doneResult(BlockRequest r) {
        int tag = r.tag();
        int error = replyError[tag];
        if (error == 0 && r.op() == BlockRequest.Op.READ && phase[tag] == 0 && covered[tag] != r.length()) {
            LOG.log(Level.WARNING, "{0}: the server''s reply to {1} covered {2} of its {3} bytes", name, r,
                    covered[tag], r.length());
            return -FileIo.EIO;
        }
        return error;
    }

    /** Reads {@code n} bytes from the socket into the request's buffers, {@code from} bytes in. */
    private void readInto(NbdConnection c, BlockRequest r, long from, long n) throws IOException {
        long skip = from;
        for (int i = 0; i < r.bufferCount() && n > 0; i++) {
            long len = r.bufferLength(i);
            if (skip >= len) {
                skip -= len;
                continue;
            }
            long k = Math.min(len - skip, n);
            NbdConnection.readFully(c.fd, r.buffer(i).asSlice(skip, k), readState, name);
            n -= k;
            skip = 0;
        }
    }

    /** A command of the tag finished: complete it, or send the FLUSH that makes a durable write stable. */
    private void finish(BlockRequest r, int result) {
        int tag = r.tag();
        boolean write = r.op() == BlockRequest.Op.WRITE || r.op() == BlockRequest.Op.WRITE_ZEROES;
        if (result == 0 && write && phase[tag] == 0 && r.durable() && !backend.probe().has(Nbd.TFLAG_SEND_FUA)
                && backend.probe().has(Nbd.TFLAG_SEND_FLUSH)) {
            phase[tag] = 1;
            send(tag, readerSide, r);
            return;
        }
        inflight.set(tag, null);
        post(r, result);
    }

    /** Connects again, with backoff; then sends every request in flight once more. */
    private void reconnect() {
        long start = System.nanoTime();
        long delay = 50;
        while (running) {
            try {
                NbdConnection c = backend.connect();
                if (c.size != backend.probe().size) {
                    c.close();
                    throw new IOException("the export is now " + c.size + " bytes, not " + backend.probe().size);
                }
                use(c);
                failing = false;
                LOG.log(Level.INFO, "{0}: reconnected after {1} ms", name, (System.nanoTime() - start) / 1_000_000);
                for (int tag = 0; tag < sentOn.length; tag++) {
                    send(tag, readerSide, null);
                }
                return;
            } catch (IOException e) {
                if (!failing && System.nanoTime() - start > backend.reconnectTimeoutMillis() * 1_000_000L) {
                    LOG.log(Level.ERROR, "{0}: no server for {1} s ({2}); failing requests until it is back", name,
                            backend.reconnectTimeoutMillis() / 1000, e.getMessage());
                    failing = true;
                }
                if (failing) {
                    // every round: a request that started just as the queue began failing is failed too
                    for (int tag = 0; tag < sentOn.length; tag++) {
                        BlockRequest r = inflight.getAndSet(tag, null);
                        if (r != null) {
                            post(r, -FileIo.EIO);
                        }
                    }
                }
                try {
                    Thread.sleep(delay);
                } catch (InterruptedException ie) {
                    return;
                }
                delay = Math.min(delay * 2, 1000);
            }
        }
    }

    @Override
    public void close() {
        running = false;
        try (Arena a = Arena.ofConfined()) {
            Posix.eventfdSignal(wakeFd, a.allocate(8), Posix.callState(a));
        } catch (IOException e) {
            LOG.log(Level.WARNING, "{0}: {1}", name, e.getMessage());
        }
        reader.interrupt(); // a reader between reconnect attempts
        try {
            reader.join(10_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        NbdConnection c = conn;
        boolean idle = !reader.isAlive();
        for (int tag = 0; tag < sentOn.length && idle; tag++) {
            idle = inflight.get(tag) == null;
        }
        if (c != null) {
            if (idle) {
                backend.release(c); // nothing in flight, nothing half-read: the next queue may use it
            } else {
                c.shutdown();
                c.close();
            }
        }
        try {
            Posix.close(wakeFd);
        } catch (IOException e) {
            LOG.log(Level.DEBUG, e.getMessage());
        }
        arena.close();
    }
}
