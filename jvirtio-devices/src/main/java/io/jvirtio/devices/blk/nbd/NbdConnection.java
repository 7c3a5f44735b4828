package io.jvirtio.devices.blk.nbd;

import io.jvirtio.core.os.FileIo;
import io.jvirtio.core.os.NativeException;
import io.jvirtio.core.os.Posix;
import io.jvirtio.core.os.UnixSockets;
import io.jvirtio.core.os.SocketIo;

import java.io.EOFException;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.net.InetAddress;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;

/**
 * One connection to an NBD server, past the fixed newstyle handshake (NBD_OPT_STRUCTURED_REPLY where the
 * server takes it, then NBD_OPT_GO): what the export is, and the blocking socket calls the transmission
 * phase uses. Sends may come from two threads (a queue's and its reader's), each with its own scratch; the
 * caller serialises them.
 */
final class NbdConnection implements AutoCloseable {
    static final ValueLayout.OfShort BE16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    static final ValueLayout.OfInt BE32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    static final ValueLayout.OfLong BE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    /** How long a send may block on a server that stopped reading, and the handshake on a silent one. */
    static final long IO_TIMEOUT_MS = 30_000;
    /** Option replies longer than this are a broken or hostile server. */
    private static final int MAX_OPTION_REPLY = 64 * 1024;
    /**
     * Replies to one option before its final one: NBD_OPT_GO's are one NBD_REP_INFO per information type the
     * server knows (four are defined); a server that goes on past this is refused rather than read forever.
     */
    static final int MAX_OPTION_REPLIES = 64;

    final int fd;
    final long size;
    final int flags;
    final boolean structured;
    private final String where;
    /** Close exactly once: a descriptor number closed twice may by then be somebody else's. */
    private final java.util.concurrent.atomic.AtomicBoolean closed = new java.util.concurrent.atomic.AtomicBoolean();

    private NbdConnection(int fd, long size, int flags, boolean structured, String where) {
        this.fd = fd;
        this.size = size;
        this.flags = flags;
        this.structured = structured;
        this.where = where;
    }

    /** Connects to {@code uri} and negotiates the export; the message of a failure says which step failed. */
    static NbdConnection open(NbdUri uri) throws IOException {
        int fd = uri.socket() != null ? UnixSockets.connect(uri.socket())
                : SocketIo.tcpConnect(InetAddress.getByName(uri.host()), uri.port());
        try (Arena a = Arena.ofConfined()) {
            SocketIo.setTimeouts(fd, IO_TIMEOUT_MS, IO_TIMEOUT_MS);
            MemorySegment st = Posix.callState(a);
            MemorySegment b = a.allocate(32, 8);
            // one buffer for every option reply's header and payload, however many the server sends
            MemorySegment replies = a.allocate(20 + MAX_OPTION_REPLY, 8);
            readFully(fd, b.asSlice(0, 18), st, uri);
            long magic = b.get(BE64, 0);
            long opt = b.get(BE64, 8);
            int hflags = Short.toUnsignedInt(b.get(BE16, 16));
            if (magic != Nbd.NBDMAGIC || opt != Nbd.IHAVEOPT) {
                throw new IOException(uri + ": not an NBD server speaking the newstyle handshake (got 0x"
                        + Long.toHexString(magic) + " 0x" + Long.toHexString(opt) + ")");
            }
            if ((hflags & Nbd.FLAG_FIXED_NEWSTYLE) == 0) {
                throw new IOException(uri + ": the server does not offer the fixed newstyle handshake");
            }
            b.set(BE32, 0, Nbd.FLAG_FIXED_NEWSTYLE | (hflags & Nbd.FLAG_NO_ZEROES));
            writeFully(fd, b.asSlice(0, 4), st, a, uri);
            // Structured replies: reads may come back in chunks, holes without their zeroes on the wire.
            sendOption(fd, Nbd.OPT_STRUCTURED_REPLY, MemorySegment.NULL, st, a, uri);
            OptionReply sr = readOptionReply(fd, Nbd.OPT_STRUCTURED_REPLY, replies, st, uri);
            // proto.md: this option's only replies are NBD_REP_ACK or an error (then: simple replies only)
            if (sr.type != Nbd.REP_ACK && (sr.type & Nbd.REP_FLAG_ERROR) == 0) {
                throw new IOException(uri + ": reply type " + sr.type + " to NBD_OPT_STRUCTURED_REPLY");
            }
            boolean structured = sr.type == Nbd.REP_ACK;
            // NBD_OPT_GO: export name, no particular information requested (the export's comes anyway).
            byte[] name = uri.export().getBytes(StandardCharsets.UTF_8);
            MemorySegment go = a.allocate(4 + name.length + 2);
            go.set(BE32, 0, name.length);
            MemorySegment.copy(name, 0, go, ValueLayout.JAVA_BYTE, 4, name.length);
            go.set(BE16, 4 + name.length, (short) 0);
            sendOption(fd, Nbd.OPT_GO, go, st, a, uri);
            long size = -1;
            int tflags = 0;
            for (int n = 1;; n++) {
                OptionReply r = readOptionReply(fd, Nbd.OPT_GO, replies, st, uri);
                if (r.type == Nbd.REP_ACK) {
                    break;
                }
                if ((r.type & Nbd.REP_FLAG_ERROR) != 0) {
                    throw new IOException(uri + ": the server refused export '" + uri.export() + "': error "
                            + (r.type & ~Nbd.REP_FLAG_ERROR) + (r.data.isEmpty() ? "" : " (" + r.data + ")"));
                }
                // NBD_INFO_EXPORT: u16 type, u64 size, u16 transmission flags (exactly 12 bytes)
                if (r.type == Nbd.REP_INFO && r.payload.byteSize() == 12
                        && Short.toUnsignedInt(r.payload.get(BE16, 0)) == Nbd.INFO_EXPORT) {
                    size = r.payload.get(BE64, 2);
                    tflags = Short.toUnsignedInt(r.payload.get(BE16, 10));
                }
                if (n > MAX_OPTION_REPLIES) {
                    throw new IOException(uri + ": more than " + MAX_OPTION_REPLIES + " replies to NBD_OPT_GO");
                }
            }
            if (size < 0) {
                throw new IOException(uri + ": the server finished NBD_OPT_GO without telling the export's size");
            }
            // Transmission: replies may be far apart (a reader waits as long as it must); sends stay bounded.
            SocketIo.setTimeouts(fd, IO_TIMEOUT_MS, 0);
            return new NbdConnection(fd, size, tflags, structured, uri.toString());
        } catch (IOException | RuntimeException e) {
            closeQuietly(fd);
            throw e;
        }
    }

    private record OptionReply(int type, MemorySegment payload, String data) {
    }

    private static void sendOption(int fd, int option, MemorySegment data, MemorySegment st, Arena a, NbdUri uri)
            throws IOException {
        MemorySegment h = a.allocate(16 + data.byteSize());
        h.set(BE64, 0, Nbd.IHAVEOPT);
        h.set(BE32, 8, option);
        h.set(BE32, 12, (int) data.byteSize());
        MemorySegment.copy(data, 0, h, 16, data.byteSize());
        writeFully(fd, h, st, a, uri);
    }

    /** Reads one option reply into {@code buffer} (its payload stays valid until the next reply is read). */
    private static OptionReply readOptionReply(int fd, int option, MemorySegment buffer, MemorySegment st, NbdUri uri)
            throws IOException {
        MemorySegment h = buffer.asSlice(0, 20);
        readFully(fd, h, st, uri);
        if (h.get(BE64, 0) != Nbd.OPTION_REPLY_MAGIC || h.get(BE32, 8) != option) {
            throw new IOException(uri + ": bad option reply (magic 0x" + Long.toHexString(h.get(BE64, 0))
                    + ", option " + h.get(BE32, 8) + " for " + option + ")");
        }
        int type = h.get(BE32, 12);
        int len = h.get(BE32, 16);
        if (len < 0 || len > MAX_OPTION_REPLY) {
            throw new IOException(uri + ": option reply of " + Integer.toUnsignedString(len) + " bytes");
        }
        MemorySegment p = buffer.asSlice(20, len);
        readFully(fd, p, st, uri);
        String text = (type & Nbd.REP_FLAG_ERROR) != 0
                ? new String(p.toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8) : "";
        return new OptionReply(type, p, text);
    }

    /** Reads all of {@code dst} or throws (EOFException when the server closed the connection). */
    static void readFully(int fd, MemorySegment dst, MemorySegment callState, Object who) throws IOException {
        long done = 0;
        while (done < dst.byteSize()) {
            long n = SocketIo.read(fd, dst.asSlice(done), callState);
            if (n == 0) {
                throw new EOFException(who + ": the server closed the connection");
            }
            if (n < 0) {
                throw FileIo.error("read", n, who.toString());
            }
            done += n;
        }
    }

    private static void writeFully(int fd, MemorySegment src, MemorySegment st, Arena a, NbdUri uri) throws IOException {
        MemorySegment iov = a.allocate(16, 8);
        iov.set(ValueLayout.JAVA_LONG, 0, src.address());
        iov.set(ValueLayout.JAVA_LONG, 8, src.byteSize());
        sendAll(fd, iov, 1, st, uri);
    }

    /**
     * Writes every byte the {@code count} iovecs describe, advancing them over partial writes (the iovec
     * array is consumed). A send timeout or error throws.
     */
    static void sendAll(int fd, MemorySegment iov, int count, MemorySegment callState, Object who) throws IOException {
        int first = 0;
        while (first < count) {
            long n = SocketIo.writev(fd, iov.asSlice(16L * first), count - first, callState);
            if (n < 0) {
                throw FileIo.error("writev", n, who.toString());
            }
            while (first < count && n > 0) {
                long len = iov.get(ValueLayout.JAVA_LONG, 16L * first + 8);
                if (n >= len) {
                    n -= len;
                    first++;
                } else {
                    iov.set(ValueLayout.JAVA_LONG, 16L * first, iov.get(ValueLayout.JAVA_LONG, 16L * first) + n);
                    iov.set(ValueLayout.JAVA_LONG, 16L * first + 8, len - n);
                    n = 0;
                }
            }
            while (first < count && iov.get(ValueLayout.JAVA_LONG, 16L * first + 8) == 0) {
                first++;
            }
        }
    }

    boolean has(int flag) {
        return (flags & flag) != 0;
    }

    /** Wakes a thread blocked reading or writing this connection (it then fails). */
    void shutdown() {
        if (!closed.get()) {
            UnixSockets.shutdown(fd);
        }
    }

    @Override
    public void close() {
        if (closed.compareAndSet(false, true)) {
            closeQuietly(fd);
        }
    }

    boolean isClosed() {
        return closed.get();
    }

    private static void closeQuietly(int fd) {
        try {
            Posix.close(fd);
        } catch (NativeException e) {
            System.getLogger(NbdConnection.class.getName()).log(System.Logger.Level.DEBUG, e.getMessage());
        }
    }

    @Override
    public String toString() {
        return where;
    }
}
