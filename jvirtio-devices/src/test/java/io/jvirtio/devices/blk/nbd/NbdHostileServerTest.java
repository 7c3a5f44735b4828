package io.jvirtio.devices.blk.nbd;

import io.jvirtio.devices.blk.BlockCompletion;
import io.jvirtio.devices.blk.BlockQueue;
import io.jvirtio.devices.blk.BlockRequest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.Arrays;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * An NBD server is untrusted input: a reply for a request nobody sent, data outside the request, a chunk of
 * the wrong type, an option reply claiming gigabytes — each drops that connection with a logged reason
 * (never a write outside the request's buffers, never a hang), and the request in flight goes out again on
 * a new connection. A plain error reply fails just its request.
 */
@Timeout(60)
class NbdHostileServerTest {
    @TempDir
    Path dir;

    /** Runs requests on one queue from the test thread. */
    static final class Driver implements BlockCompletion {
        final BlockQueue queue;
        int result;
        boolean done;

        Driver(NbdBackend b) throws Exception {
            queue = b.open(0, 8, this);
        }

        public void complete(BlockRequest r, int res) {
            result = res;
            done = true;
        }

        int run(BlockRequest r) {
            done = false;
            queue.start(r);
            queue.submit();
            // bounded, and not by the test's timeout: its interrupt would only make await return at once
            long deadline = System.nanoTime() + 30_000_000_000L;
            while (!done) {
                if (System.nanoTime() > deadline) {
                    throw new AssertionError("request " + r.tag() + " not completed within 30 s");
                }
                if (!queue.ready()) {
                    queue.await();
                }
                queue.reap();
            }
            return result;
        }
    }

    static byte[] pattern(int n) {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) {
            b[i] = (byte) (i * 7 + 1);
        }
        return b;
    }

    NbdBackend backend(Path sock) throws Exception {
        return new NbdBackend(NbdUri.parse("nbd+unix:///?socket=" + sock), 10_000);
    }

    /** The TCP path (IPv4 and IPv6 addresses, TCP_NODELAY) carries requests and replies as the Unix one does. */
    @ParameterizedTest
    @CsvSource({"127.0.0.1, 127.0.0.1", "::1, [::1]"})
    void anExportOverTcpIsWrittenAndReadAtItsAddress(String host, String inUri) throws Exception {
        java.net.InetAddress address = java.net.InetAddress.getByName(host);
        org.junit.jupiter.api.Assumptions.assumeTrue(loopbackUsable(address),
                "no " + host + " on this machine's loopback interface");
        byte[] disk = new byte[(int) FakeNbdServer.SIZE];
        try (FakeNbdServer server = new FakeNbdServer(address, (conn, r, ch) -> {
            if (r.type() == Nbd.CMD_READ) {
                FakeNbdServer.simple(ch, r.cookie(), 0, Arrays.copyOfRange(disk, (int) r.offset(), (int) r.offset() + r.length()));
            } else {
                FakeNbdServer.simple(ch, r.cookie(), 0, null);
            }
        }); NbdBackend b = new NbdBackend(NbdUri.parse("nbd://" + inUri + ":" + server.port() + "/export"), 10_000);
             Arena a = Arena.ofShared()) {
            Driver d = new Driver(b);
            MemorySegment buf = a.allocate(4096, 4096);
            buf.copyFrom(MemorySegment.ofArray(pattern(4096)));
            assertThat(d.run(new BlockRequest(0).set(BlockRequest.Op.WRITE, 12288, 4096).addBuffer(buf))).isZero();
            assertThat(server.requests).singleElement().satisfies(r -> {
                assertThat(r.type()).isEqualTo(Nbd.CMD_WRITE);
                assertThat(r.offset()).isEqualTo(12288);
                assertThat(r.length()).isEqualTo(4096);
            });
            System.arraycopy(pattern(4096), 0, disk, 12288, 4096); // what the server was sent, as a disk keeps it
            buf.fill((byte) 0);
            assertThat(d.run(new BlockRequest(0).set(BlockRequest.Op.READ, 12288, 4096).addBuffer(buf))).isZero();
            assertThat(buf.toArray(ValueLayout.JAVA_BYTE)).isEqualTo(pattern(4096));
            assertThat(server.connections.get()).isEqualTo(1);
            d.queue.close();
        }
    }

    /**
     * A closed queue hands its connection to the next queue only when nothing is in flight on it: a reply to a
     * request of the closed queue, arriving later, would otherwise be read as the reply to the next one's.
     */
    @ParameterizedTest
    @CsvSource({"false, 1", "true, 2"})
    void aClosedQueueHandsItsConnectionOnOnlyWhenNothingIsInFlight(boolean unanswered, int connections)
            throws Exception {
        Path sock = dir.resolve("h.sock");
        try (FakeNbdServer server = new FakeNbdServer(sock, (conn, r, ch) -> {
            if (r.offset() != 0) { // the request left unanswered
                return;
            }
            FakeNbdServer.simple(ch, r.cookie(), 0, pattern(r.length()));
        }); NbdBackend b = backend(sock); Arena a = Arena.ofShared()) {
            MemorySegment buf = a.allocate(4096, 4096);
            Driver first = new Driver(b);
            assertThat(first.run(new BlockRequest(0).set(BlockRequest.Op.READ, 0, 4096).addBuffer(buf))).isZero();
            if (unanswered) {
                first.queue.start(new BlockRequest(1).set(BlockRequest.Op.READ, 4096, 4096).addBuffer(a.allocate(4096, 4096)));
                first.queue.submit();
                long deadline = System.nanoTime() + 5_000_000_000L;
                while (server.requests.size() < 2 && System.nanoTime() < deadline) {
                    Thread.sleep(1);
                }
                assertThat(server.requests).as("the second read reached the server").hasSize(2);
            }
            first.queue.close();
            Driver next = new Driver(b);
            buf.fill((byte) 0);
            assertThat(next.run(new BlockRequest(0).set(BlockRequest.Op.READ, 0, 4096).addBuffer(buf))).isZero();
            assertThat(buf.toArray(ValueLayout.JAVA_BYTE)).isEqualTo(pattern(4096));
            assertThat(server.connections.get()).as(unanswered ? "dropped: a new one" : "handed on").isEqualTo(connections);
            next.queue.close();
        }
    }

    static boolean loopbackUsable(java.net.InetAddress address) {
        try (var s = java.nio.channels.ServerSocketChannel.open()) {
            s.bind(new java.net.InetSocketAddress(address, 0));
            return true;
        } catch (java.io.IOException e) {
            return false;
        }
    }

    @Test
    void aReplyForACookieNotInFlightDropsTheConnectionAndTheRequestIsSentAgain() throws Exception {
        Path sock = dir.resolve("a.sock");
        try (FakeNbdServer server = new FakeNbdServer(sock, (conn, r, ch) -> {
            if (conn == 1) {
                FakeNbdServer.simple(ch, r.cookie() + 5, 0, new byte[r.length()]); // not a cookie we sent
            } else {
                FakeNbdServer.simple(ch, r.cookie(), 0, pattern(r.length()));
            }
        }); NbdBackend b = backend(sock); Arena a = Arena.ofShared()) {
            Driver d = new Driver(b);
            MemorySegment buf = a.allocate(4096, 4096);
            assertThat(d.run(new BlockRequest(0).set(BlockRequest.Op.READ, 0, 4096).addBuffer(buf))).isZero();
            assertThat(buf.toArray(ValueLayout.JAVA_BYTE)).isEqualTo(pattern(4096));
            assertThat(server.connections.get()).as("dropped and made again").isEqualTo(2);
            d.queue.close();
        }
    }

    @Test
    void dataOutsideTheRequestIsRefusedAndNothingOutsideTheBuffersIsWritten() throws Exception {
        Path sock = dir.resolve("b.sock");
        try (FakeNbdServer server = new FakeNbdServer(sock, (conn, r, ch) -> {
            long offset = conn == 1 ? r.offset() + 512 : r.offset(); // first: the data would overrun the buffer
            ByteBuffer p = ByteBuffer.allocate(8 + r.length()).putLong(offset).put(pattern(r.length())).flip();
            FakeNbdServer.chunk(ch, r.cookie(), Nbd.REPLY_FLAG_DONE, Nbd.REPLY_TYPE_OFFSET_DATA, p);
        }); NbdBackend b = backend(sock); Arena a = Arena.ofShared()) {
            Driver d = new Driver(b);
            MemorySegment all = a.allocate(3 * 4096, 4096);
            all.fill((byte) 0x5a);
            MemorySegment buf = all.asSlice(4096, 4096);
            assertThat(d.run(new BlockRequest(0).set(BlockRequest.Op.READ, 8192, 4096).addBuffer(buf))).isZero();
            assertThat(buf.toArray(ValueLayout.JAVA_BYTE)).isEqualTo(pattern(4096));
            byte[] guard = new byte[4096];
            Arrays.fill(guard, (byte) 0x5a);
            assertThat(all.asSlice(0, 4096).toArray(ValueLayout.JAVA_BYTE)).isEqualTo(guard);
            assertThat(all.asSlice(8192, 4096).toArray(ValueLayout.JAVA_BYTE)).as("past the buffer").isEqualTo(guard);
            assertThat(server.connections.get()).isEqualTo(2);
            d.queue.close();
        }
    }

    @Test
    void anErrorReplyFailsOnlyItsRequestAndAHoleReadsAsZeroes() throws Exception {
        Path sock = dir.resolve("c.sock");
        try (FakeNbdServer server = new FakeNbdServer(sock, (conn, r, ch) -> {
            if (r.type() == Nbd.CMD_WRITE) {
                FakeNbdServer.simple(ch, r.cookie(), 28, null); // ENOSPC
            } else {
                ByteBuffer hole = ByteBuffer.allocate(12).putLong(r.offset()).putInt(r.length()).flip();
                FakeNbdServer.chunk(ch, r.cookie(), Nbd.REPLY_FLAG_DONE, Nbd.REPLY_TYPE_OFFSET_HOLE, hole);
            }
        }); NbdBackend b = backend(sock); Arena a = Arena.ofShared()) {
            Driver d = new Driver(b);
            MemorySegment buf = a.allocate(4096, 4096);
            assertThat(d.run(new BlockRequest(0).set(BlockRequest.Op.WRITE, 0, 4096).addBuffer(buf))).isEqualTo(-28);
            buf.fill((byte) 1);
            assertThat(d.run(new BlockRequest(1).set(BlockRequest.Op.READ, 0, 4096).addBuffer(buf))).isZero();
            assertThat(buf.toArray(ValueLayout.JAVA_BYTE)).containsOnly(0);
            assertThat(server.connections.get()).as("errors are answers, not broken connections").isEqualTo(1);
            d.queue.close();
        }
    }

    @Test
    void aHandshakeClaimingAHugeOptionReplyIsRefusedWithItsReason() throws Exception {
        Path sock = dir.resolve("d.sock");
        try (FakeNbdServer server = new FakeNbdServer(sock, (conn, r, ch) -> { })) {
            server.optionReplyLength = Integer.MAX_VALUE;
            assertThatThrownBy(() -> backend(sock)).hasMessageContaining("option reply of 2147483647 bytes");
        }
    }

    @Test
    void aServerThatKeepsAnsweringTheExportOptionIsRefusedAfterSixtyFourReplies() throws Exception {
        Path sock = dir.resolve("e.sock");
        try (FakeNbdServer server = new FakeNbdServer(sock, (conn, r, ch) -> FakeNbdServer.simple(ch, r.cookie(), 0,
                new byte[r.length()]))) {
            server.extraInfoReplies = NbdConnection.MAX_OPTION_REPLIES; // and the export's: one too many
            assertThatThrownBy(() -> backend(sock)).hasMessageContaining("more than 64 replies to NBD_OPT_GO");
            server.extraInfoReplies = NbdConnection.MAX_OPTION_REPLIES - 1;
            try (NbdBackend b = backend(sock)) {
                assertThat(b.capacity()).isEqualTo(FakeNbdServer.SIZE);
            }
        }
    }

    /** A read answered with one error chunk of {@code length} bytes whose message claims {@code msgLen}. */
    private static ByteBuffer errorChunk(int length, int msgLen) {
        ByteBuffer e = ByteBuffer.allocate(Math.max(length, 6)).putInt(5).putShort((short) msgLen);
        while (e.hasRemaining()) {
            e.put((byte) 'e');
        }
        return e.flip().limit(length); // shorter than 6: cut inside the error's fields
    }

    @ParameterizedTest(name = "{0} bytes, message {1}")
    @CsvSource({"4110, 4096", "4111, 4096", "4106, 4101", "5, 0"})
    void anErrorChunkLongerThanTheLargestMessageOrShorterThanItsOwnIsABrokenConnection(int length, int msgLen)
            throws Exception {
        boolean valid = length <= NbdQueue.MAX_ERROR_CHUNK && length >= 6 && msgLen <= length - 6;
        Path sock = dir.resolve("f.sock");
        try (FakeNbdServer server = new FakeNbdServer(sock, (conn, r, ch) -> {
            if (conn == 1) {
                FakeNbdServer.chunk(ch, r.cookie(), Nbd.REPLY_FLAG_DONE, Nbd.REPLY_TYPE_ERROR_BIT | 2,
                        errorChunk(length, msgLen));
            } else {
                ByteBuffer p = ByteBuffer.allocate(8 + r.length()).putLong(r.offset()).put(pattern(r.length())).flip();
                FakeNbdServer.chunk(ch, r.cookie(), Nbd.REPLY_FLAG_DONE, Nbd.REPLY_TYPE_OFFSET_DATA, p);
            }
        }); NbdBackend b = backend(sock); Arena a = Arena.ofShared()) {
            Driver d = new Driver(b);
            MemorySegment buf = a.allocate(4096, 4096);
            int result = d.run(new BlockRequest(0).set(BlockRequest.Op.READ, 0, 4096).addBuffer(buf));
            if (valid) {
                assertThat(result).as("the error the server reported").isEqualTo(-5);
                assertThat(server.connections.get()).isEqualTo(1);
            } else {
                assertThat(result).as("sent again on a new connection").isZero();
                assertThat(buf.toArray(ValueLayout.JAVA_BYTE)).isEqualTo(pattern(4096));
                assertThat(server.connections.get()).isEqualTo(2);
            }
            d.queue.close();
        }
    }

    @Test
    void aReadWhoseChunksDoNotCoverItFailsAndChunksInAnyOrderThatDoSucceed() throws Exception {
        Path sock = dir.resolve("h.sock");
        try (FakeNbdServer server = new FakeNbdServer(sock, (conn, r, ch) -> {
            byte[] data = pattern(r.length());
            int half = r.length() / 2;
            // the second half first, then the first; with offset 4096 the first half is never sent
            ByteBuffer second = ByteBuffer.allocate(8 + half).putLong(r.offset() + half).put(data, half, half).flip();
            FakeNbdServer.chunk(ch, r.cookie(), 0, Nbd.REPLY_TYPE_OFFSET_DATA, second);
            if (r.offset() == 0) {
                ByteBuffer first = ByteBuffer.allocate(8 + half).putLong(r.offset()).put(data, 0, half).flip();
                FakeNbdServer.chunk(ch, r.cookie(), Nbd.REPLY_FLAG_DONE, Nbd.REPLY_TYPE_OFFSET_DATA, first);
            } else {
                FakeNbdServer.chunk(ch, r.cookie(), Nbd.REPLY_FLAG_DONE, Nbd.REPLY_TYPE_NONE, ByteBuffer.allocate(0));
            }
        }); NbdBackend b = backend(sock); Arena a = Arena.ofShared()) {
            Driver d = new Driver(b);
            MemorySegment buf = a.allocate(4096, 4096);
            assertThat(d.run(new BlockRequest(0).set(BlockRequest.Op.READ, 0, 4096).addBuffer(buf))).isZero();
            assertThat(buf.toArray(ValueLayout.JAVA_BYTE)).isEqualTo(pattern(4096));
            assertThat(d.run(new BlockRequest(0).set(BlockRequest.Op.READ, 4096, 4096).addBuffer(buf)))
                    .as("half of the read never came").isEqualTo(-5);
            assertThat(server.connections.get()).as("a short reply is an answer, not a broken connection").isEqualTo(1);
            d.queue.close();
        }
    }

    @Test
    void whatAReplyOnALostConnectionSaidIsForgottenWhenTheRequestIsSentAgain() throws Exception {
        Path sock = dir.resolve("i.sock");
        try (FakeNbdServer server = new FakeNbdServer(sock, (conn, r, ch) -> {
            byte[] data = pattern(r.length());
            if (conn == 1) {
                // an error chunk and half the data, then the connection goes
                FakeNbdServer.chunk(ch, r.cookie(), 0, Nbd.REPLY_TYPE_ERROR_BIT | 1, errorChunk(6, 0));
                ByteBuffer half = ByteBuffer.allocate(8 + r.length() / 2).putLong(r.offset()).put(data, 0, r.length() / 2).flip();
                FakeNbdServer.chunk(ch, r.cookie(), 0, Nbd.REPLY_TYPE_OFFSET_DATA, half);
                ch.close();
            } else {
                ByteBuffer p = ByteBuffer.allocate(8 + r.length()).putLong(r.offset()).put(data).flip();
                FakeNbdServer.chunk(ch, r.cookie(), Nbd.REPLY_FLAG_DONE, Nbd.REPLY_TYPE_OFFSET_DATA, p);
            }
        }); NbdBackend b = backend(sock); Arena a = Arena.ofShared()) {
            Driver d = new Driver(b);
            MemorySegment buf = a.allocate(4096, 4096);
            assertThat(d.run(new BlockRequest(0).set(BlockRequest.Op.READ, 0, 4096).addBuffer(buf))).isZero();
            assertThat(buf.toArray(ValueLayout.JAVA_BYTE)).isEqualTo(pattern(4096));
            assertThat(server.connections.get()).isEqualTo(2);
            d.queue.close();
        }
    }


    /** A server answering every command with success (a read with zeroes), as a simple reply. */
    private static final FakeNbdServer.Script ALL_OK = (conn, r, ch) -> FakeNbdServer.simple(ch, r.cookie(), 0,
            r.type() == Nbd.CMD_READ ? new byte[r.length()] : null);

    @Test
    void eachRequestBecomesTheCommandTheExportTakesOrIsAnsweredWithoutIt() throws Exception {
        Path sock = dir.resolve("j.sock");
        try (FakeNbdServer server = new FakeNbdServer(sock, ALL_OK); Arena a = Arena.ofShared()) {
            MemorySegment buf = a.allocate(4096, 4096);
            // an export with FLUSH, FUA, TRIM and WRITE_ZEROES
            server.exportFlags = Nbd.TFLAG_HAS_FLAGS | Nbd.TFLAG_SEND_FLUSH | Nbd.TFLAG_SEND_FUA | Nbd.TFLAG_SEND_TRIM
                    | Nbd.TFLAG_SEND_WRITE_ZEROES;
            try (NbdBackend b = backend(sock)) {
                Driver d = new Driver(b);
                assertThat(d.run(new BlockRequest(0).set(BlockRequest.Op.FLUSH, 0, 0))).isZero();
                assertThat(d.run(new BlockRequest(1).set(BlockRequest.Op.DISCARD, 8192, 4096))).isZero();
                assertThat(d.run(new BlockRequest(2).set(BlockRequest.Op.WRITE_ZEROES, 4096, 512).unmap(true))).isZero();
                assertThat(d.run(new BlockRequest(3).set(BlockRequest.Op.WRITE_ZEROES, 4096, 512).durable(true))).isZero();
                assertThat(d.run(new BlockRequest(4).set(BlockRequest.Op.WRITE, 512, 4096).durable(true).addBuffer(buf))).isZero();
                assertThat(d.run(new BlockRequest(5).set(BlockRequest.Op.READ, 0, Nbd.MAX_PAYLOAD + 512L).addBuffer(buf)))
                        .as("larger than any reply we take").isEqualTo(-22);
                d.queue.close();
            }
            assertThat(server.requests).extracting(r -> r.type() + " " + r.flags() + " " + r.offset() + " " + r.length())
                    .containsExactly(
                            Nbd.CMD_FLUSH + " 0 0 0",
                            Nbd.CMD_TRIM + " 0 8192 4096",
                            Nbd.CMD_WRITE_ZEROES + " 0 4096 512",
                            Nbd.CMD_WRITE_ZEROES + " " + (Nbd.CMD_FLAG_NO_HOLE | Nbd.CMD_FLAG_FUA) + " 4096 512",
                            Nbd.CMD_WRITE + " " + Nbd.CMD_FLAG_FUA + " 512 4096");
            assertThat(server.requests).extracting(FakeNbdServer.Request::cookie).as("each tag its cookie")
                    .containsExactly(0L, 1L, 2L, 3L, 4L);

            // an export with nothing but reads and writes: no FLUSH, no TRIM, no WRITE_ZEROES, no FUA
            server.requests.clear();
            server.exportFlags = Nbd.TFLAG_HAS_FLAGS;
            try (NbdBackend b = backend(sock)) {
                Driver d = new Driver(b);
                assertThat(d.run(new BlockRequest(0).set(BlockRequest.Op.FLUSH, 0, 0))).as("nothing to flush").isZero();
                assertThat(d.run(new BlockRequest(1).set(BlockRequest.Op.DISCARD, 0, 4096))).as("a hint, dropped").isZero();
                assertThat(d.run(new BlockRequest(2).set(BlockRequest.Op.WRITE_ZEROES, 0, 4096))).isEqualTo(-95);
                assertThat(d.run(new BlockRequest(3).set(BlockRequest.Op.WRITE, 0, 4096).durable(true).addBuffer(buf))).isZero();
                d.queue.close();
            }
            assertThat(server.requests).extracting(r -> r.type() + " " + r.flags())
                    .as("only the write, without FUA").containsExactly(Nbd.CMD_WRITE + " 0");
        }
    }

    @Test
    void aDurableWriteToAServerWithoutFuaCompletesOnlyAfterItsFlush() throws Exception {
        Path sock = dir.resolve("k.sock");
        java.util.concurrent.CountDownLatch flushAnswer = new java.util.concurrent.CountDownLatch(1);
        try (FakeNbdServer server = new FakeNbdServer(sock, (conn, r, ch) -> {
            if (r.type() == Nbd.CMD_FLUSH) {
                try {
                    flushAnswer.await(10, java.util.concurrent.TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    throw new java.io.InterruptedIOException();
                }
            }
            FakeNbdServer.simple(ch, r.cookie(), 0, null);
        }); Arena a = Arena.ofShared()) {
            server.exportFlags = Nbd.TFLAG_HAS_FLAGS | Nbd.TFLAG_SEND_FLUSH;
            try (NbdBackend b = backend(sock)) {
                Driver d = new Driver(b);
                MemorySegment buf = a.allocate(4096, 4096);
                d.queue.start(new BlockRequest(6).set(BlockRequest.Op.WRITE, 0, 4096).durable(true).addBuffer(buf));
                d.queue.submit();
                long deadline = System.nanoTime() + 5_000_000_000L;
                while (server.requests.size() < 2 && System.nanoTime() < deadline) {
                    Thread.sleep(1);
                }
                d.queue.reap();
                assertThat(d.done).as("complete before its flush was answered").isFalse();
                assertThat(server.requests).extracting(r -> r.type() + " " + Long.toHexString(r.cookie()))
                        .as("the write, then a flush on the tag's second cookie")
                        .containsExactly(Nbd.CMD_WRITE + " 6", Nbd.CMD_FLUSH + " 100000006");
                flushAnswer.countDown();
                while (!d.done) {
                    if (!d.queue.ready()) {
                        d.queue.await();
                    }
                    d.queue.reap();
                }
                assertThat(d.result).isZero();
                d.queue.close();
            }
        }
    }

    @Test
    void aServerAwayLongerThanTheReconnectTimeoutFailsRequestsUntilItIsBack() throws Exception {
        Path sock = dir.resolve("l.sock");
        FakeNbdServer server = new FakeNbdServer(sock, (conn, r, ch) -> {
            if (conn == 1) {
                ch.close(); // the server goes away with the request in flight
            } else {
                FakeNbdServer.simple(ch, r.cookie(), 0, pattern(r.length()));
            }
        });
        try (NbdBackend b = new NbdBackend(NbdUri.parse("nbd+unix:///?socket=" + sock), 300);
             Arena a = Arena.ofShared()) {
            Driver d = new Driver(b);
            server.close();
            java.nio.file.Files.deleteIfExists(sock);
            MemorySegment buf = a.allocate(4096, 4096);
            assertThat(d.run(new BlockRequest(0).set(BlockRequest.Op.READ, 0, 4096).addBuffer(buf)))
                    .as("failed after the reconnect timeout").isEqualTo(-5);
            assertThat(d.run(new BlockRequest(1).set(BlockRequest.Op.READ, 0, 4096).addBuffer(buf)))
                    .as("and at once while the server stays away").isEqualTo(-5);
            try (FakeNbdServer back = new FakeNbdServer(sock, (conn, r, ch) ->
                    FakeNbdServer.simple(ch, r.cookie(), 0, pattern(r.length())))) {
                int result = -5;
                long deadline = System.nanoTime() + 10_000_000_000L;
                while (result != 0 && System.nanoTime() < deadline) {
                    result = d.run(new BlockRequest(2).set(BlockRequest.Op.READ, 0, 4096).addBuffer(buf));
                }
                assertThat(result).as("through again once the server is back").isZero();
                assertThat(buf.toArray(ValueLayout.JAVA_BYTE)).isEqualTo(pattern(4096));
                d.queue.close();
            }
        } finally {
            server.close();
        }
    }


    @Test
    void aReplyThatCannotBeReadIntoItsBuffersFailsTheRequestsInFlightAndTheQueueGoesOn() throws Exception {
        Path sock = dir.resolve("m.sock");
        java.util.concurrent.CountDownLatch answer = new java.util.concurrent.CountDownLatch(1);
        try (FakeNbdServer server = new FakeNbdServer(sock, (conn, r, ch) -> {
            if (r.cookie() == 0) {
                try {
                    answer.await(10, java.util.concurrent.TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    throw new java.io.InterruptedIOException();
                }
            }
            FakeNbdServer.simple(ch, r.cookie(), 0, pattern(r.length()));
        }); NbdBackend b = backend(sock)) {
            Driver d = new Driver(b);
            Arena gone = Arena.ofShared();
            d.queue.start(new BlockRequest(0).set(BlockRequest.Op.READ, 0, 4096).addBuffer(gone.allocate(4096, 4096)));
            d.queue.submit();
            gone.close(); // the buffers go away while the read is in flight
            answer.countDown();
            while (!d.done) {
                if (!d.queue.ready()) {
                    d.queue.await();
                }
                d.queue.reap();
            }
            assertThat(d.result).as("failed, neither hung nor sent again").isEqualTo(-5);
            try (Arena a = Arena.ofShared()) {
                MemorySegment buf = a.allocate(4096, 4096);
                assertThat(d.run(new BlockRequest(1).set(BlockRequest.Op.READ, 0, 4096).addBuffer(buf))).isZero();
                assertThat(buf.toArray(ValueLayout.JAVA_BYTE)).isEqualTo(pattern(4096));
            }
            d.queue.close();
        }
    }


    @Test
    void theHandshakeTakesStructuredRepliesOnlyAsAckedAndTheExportsSizeOnlyInTwelveBytes() throws Exception {
        Path sock = dir.resolve("n.sock");
        try (FakeNbdServer server = new FakeNbdServer(sock, ALL_OK); Arena a = Arena.ofShared()) {
            server.structuredReplyType = Nbd.REP_INFO;
            assertThatThrownBy(() -> backend(sock)).hasMessageContaining("reply type 3 to NBD_OPT_STRUCTURED_REPLY");
            // refused (NBD_REP_ERR_UNSUP): simple replies only, and they work
            server.structuredReplyType = Nbd.REP_FLAG_ERROR | 1;
            try (NbdBackend b = backend(sock)) {
                Driver d = new Driver(b);
                MemorySegment buf = a.allocate(4096, 4096);
                assertThat(d.run(new BlockRequest(0).set(BlockRequest.Op.READ, 0, 4096).addBuffer(buf))).isZero();
                d.queue.close();
            }
            server.structuredReplyType = Nbd.REP_ACK;
            for (int length : new int[] {11, 13}) {
                server.exportInfoLength = length;
                assertThatThrownBy(() -> backend(sock)).as("NBD_INFO_EXPORT of %d bytes", length)
                        .hasMessageContaining("without telling the export's size");
            }
        }
    }


    @Test
    void aServerThatIsNotANewstyleNbdServerOrRefusesTheExportIsRefusedWithTheReason() throws Exception {
        Path sock = dir.resolve("o.sock");
        try (FakeNbdServer server = new FakeNbdServer(sock, ALL_OK)) {
            server.greetingMagic = 0x1122334455667788L;
            assertThatThrownBy(() -> backend(sock)).hasMessageContaining("not an NBD server speaking the newstyle handshake")
                    .hasMessageContaining("1122334455667788");
            server.greetingMagic = Nbd.NBDMAGIC;
            server.handshakeFlags = Nbd.FLAG_NO_ZEROES;
            assertThatThrownBy(() -> backend(sock)).hasMessageContaining("does not offer the fixed newstyle handshake");
            server.handshakeFlags = Nbd.FLAG_FIXED_NEWSTYLE;
            server.goError = 6; // NBD_REP_ERR_UNKNOWN
            assertThatThrownBy(() -> backend(sock)).hasMessageContaining("refused export '': error 6 (no such export)");
            server.goError = 0;
            try (NbdBackend b = backend(sock)) {
                assertThat(b.capacity()).as("and a proper server is taken").isEqualTo(FakeNbdServer.SIZE);
            }
        }
    }

    @Test
    void urisAreParsedAndBadOnesNamed() {
        assertThat(NbdUri.parse("nbd://host.example:10810/disk1")).isEqualTo(new NbdUri("host.example", 10810, null, "disk1"));
        assertThat(NbdUri.parse("nbd://10.0.0.1/")).isEqualTo(new NbdUri("10.0.0.1", 10809, null, ""));
        assertThat(NbdUri.parse("nbd+unix:///vm?socket=/run/nbd.sock")).isEqualTo(new NbdUri(null, 0, "/run/nbd.sock", "vm"));
        assertThatThrownBy(() -> NbdUri.parse("nbd+unix:///vm")).hasMessageContaining("socket=PATH");
        assertThatThrownBy(() -> NbdUri.parse("nbd:///vm")).hasMessageContaining("needs a host");
        assertThatThrownBy(() -> NbdUri.parse("http://x/y")).hasMessageContaining("scheme http");
        assertThat(NbdUri.isNbd("disk.img")).isFalse();
    }
}
