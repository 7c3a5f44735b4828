package io.jvirtio.devices.blk.nbd;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A scripted NBD server on a Unix socket, for what no real server does: its handshake and export are
 * proper (fixed newstyle, structured replies, a 1 MiB export of zeroes with flush and FUA), and each request
 * is answered by a {@link Script} that may lie. Connections are served one after another.
 */
final class FakeNbdServer implements AutoCloseable {
    static final long SIZE = 1 << 20;

    /** Answers one request on connection number {@code connection} (from 1). */
    interface Script {
        void answer(int connection, Request r, SocketChannel ch) throws IOException;
    }

    record Request(int flags, int type, long cookie, long offset, int length) {
    }

    private final ServerSocketChannel server;
    private final Thread thread;
    final AtomicInteger connections = new AtomicInteger();
    volatile Script script;
    /** Override the option replies' length field with this (hostile handshake), or -1. */
    volatile int optionReplyLength = -1;
    /** NBD_REP_INFO replies (NBD_INFO_NAME) sent to NBD_OPT_GO before the export's. */
    volatile int extraInfoReplies;
    /** The greeting's magic and handshake flags. */
    volatile long greetingMagic = Nbd.NBDMAGIC;
    volatile int handshakeFlags = Nbd.FLAG_FIXED_NEWSTYLE | Nbd.FLAG_NO_ZEROES;
    /** Answer NBD_OPT_GO with this error reply (and its message) instead of the export, when non-zero. */
    volatile int goError;
    /** The reply type to NBD_OPT_STRUCTURED_REPLY (NBD_REP_ACK: structured replies from then on). */
    volatile int structuredReplyType = Nbd.REP_ACK;
    /** Bytes of the NBD_INFO_EXPORT reply (12 in the protocol). */
    volatile int exportInfoLength = 12;
    /** The transmission flags the export shows. */
    volatile int exportFlags = Nbd.TFLAG_HAS_FLAGS | Nbd.TFLAG_SEND_FLUSH | Nbd.TFLAG_SEND_FUA;
    /** Every request received, in order. */
    final java.util.List<Request> requests = new java.util.concurrent.CopyOnWriteArrayList<>();

    FakeNbdServer(Path socket, Script script) throws IOException {
        Files.deleteIfExists(socket);
        this.script = script;
        this.server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        server.bind(UnixDomainSocketAddress.of(socket));
        this.thread = Thread.ofPlatform().daemon().start(this::serve);
    }

    /** The same server on TCP, on a free port of {@code address} ({@link #port()}). */
    FakeNbdServer(java.net.InetAddress address, Script script) throws IOException {
        this.script = script;
        this.server = ServerSocketChannel.open(address instanceof java.net.Inet6Address
                ? StandardProtocolFamily.INET6 : StandardProtocolFamily.INET);
        server.bind(new java.net.InetSocketAddress(address, 0));
        this.thread = Thread.ofPlatform().daemon().start(this::serve);
    }

    /** The TCP port a server made with an address listens on. */
    int port() throws IOException {
        return ((java.net.InetSocketAddress) server.getLocalAddress()).getPort();
    }

    private void serve() {
        while (server.isOpen()) {
            try (SocketChannel ch = server.accept()) {
                int n = connections.incrementAndGet();
                handshake(ch);
                for (;;) {
                    ByteBuffer h = read(ch, 28);
                    Request r = new Request(h.getShort(4) & 0xffff, h.getShort(6) & 0xffff, h.getLong(8), h.getLong(16),
                            h.getInt(24));
                    if (r.type() == Nbd.CMD_WRITE) {
                        read(ch, r.length());
                    }
                    if (r.type() == Nbd.CMD_DISC) {
                        break;
                    }
                    requests.add(r);
                    script.answer(n, r, ch);
                }
            } catch (IOException e) {
                // the client went away (or the test closed us): take the next connection
            }
        }
    }

    private void handshake(SocketChannel ch) throws IOException {
        write(ch, ByteBuffer.allocate(18).putLong(greetingMagic).putLong(Nbd.IHAVEOPT)
                .putShort((short) handshakeFlags).flip());
        read(ch, 4);
        for (;;) {
            ByteBuffer o = read(ch, 16);
            int option = o.getInt(8);
            read(ch, o.getInt(12));
            if (option == Nbd.OPT_GO && goError != 0) {
                optionReply(ch, option, Nbd.REP_FLAG_ERROR | goError, ByteBuffer.wrap("no such export".getBytes()));
                return;
            }
            if (option == Nbd.OPT_GO) {
                for (int i = 0; i < extraInfoReplies; i++) {
                    optionReply(ch, option, Nbd.REP_INFO, ByteBuffer.allocate(3).putShort((short) 1).put((byte) 'x').flip());
                }
                ByteBuffer info = ByteBuffer.allocate(Math.max(12, exportInfoLength)).putShort((short) Nbd.INFO_EXPORT)
                        .putLong(SIZE).putShort((short) exportFlags).flip().limit(exportInfoLength);
                optionReply(ch, option, Nbd.REP_INFO, info);
                optionReply(ch, option, Nbd.REP_ACK, ByteBuffer.allocate(0));
                return;
            }
            optionReply(ch, option, option == Nbd.OPT_STRUCTURED_REPLY ? structuredReplyType : Nbd.REP_ACK,
                    ByteBuffer.allocate(0));
        }
    }

    private void optionReply(SocketChannel ch, int option, int type, ByteBuffer data) throws IOException {
        int len = optionReplyLength >= 0 ? optionReplyLength : data.remaining();
        write(ch, ByteBuffer.allocate(20).putLong(Nbd.OPTION_REPLY_MAGIC).putInt(option).putInt(type).putInt(len).flip());
        write(ch, data);
    }

    /** A simple reply; for a successful read, {@code data} follows. */
    static void simple(SocketChannel ch, long cookie, int error, byte[] data) throws IOException {
        write(ch, ByteBuffer.allocate(16).putInt(Nbd.SIMPLE_REPLY_MAGIC).putInt(error).putLong(cookie).flip());
        if (data != null) {
            write(ch, ByteBuffer.wrap(data));
        }
    }

    /** A structured reply chunk with its payload. */
    static void chunk(SocketChannel ch, long cookie, int flags, int type, ByteBuffer payload) throws IOException {
        write(ch, ByteBuffer.allocate(20).putInt(Nbd.STRUCTURED_REPLY_MAGIC).putShort((short) flags)
                .putShort((short) type).putLong(cookie).putInt(payload.remaining()).flip());
        write(ch, payload);
    }

    static ByteBuffer read(SocketChannel ch, int n) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(n);
        while (b.hasRemaining()) {
            if (ch.read(b) < 0) {
                throw new IOException("closed");
            }
        }
        return b.flip();
    }

    static void write(SocketChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            ch.write(b);
        }
    }

    @Override
    public void close() throws IOException {
        server.close();
        thread.interrupt();
    }
}
