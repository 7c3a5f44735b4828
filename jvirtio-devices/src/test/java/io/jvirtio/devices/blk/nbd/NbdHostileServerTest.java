package io.jvirtio.devices.blk.nbd;

import io.jvirtio.devices.blk.BlockCompletion;
import io.jvirtio.devices.blk.BlockQueue;
import io.jvirtio.devices.blk.BlockRequest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

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
            while (!done) {
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
