package io.jvirtio.vhostuser;

import io.jvirtio.core.os.Posix;
import io.jvirtio.core.os.UnixSockets;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The framing of vhost-user messages on a real Unix socket: the header's version and size checks, a peer that
 * closes in the middle, and descriptors that came with a message the channel refuses (closed, not leaked).
 */
@Timeout(30)
class ChannelTest {
    @TempDir
    Path dir;
    int listener;
    int peer;
    Channel channel;

    @BeforeEach
    void connect() throws Exception {
        Files.deleteIfExists(dir.resolve("s"));
        String path = dir.resolve("s").toString();
        listener = UnixSockets.listen(path, 1);
        peer = UnixSockets.connect(path);
        channel = new Channel(UnixSockets.accept(listener));
    }

    @AfterEach
    void close() {
        channel.close();
        Channel.closeQuietly(peer);
        Channel.closeQuietly(listener);
        peer = -1;
    }

    static byte[] header(int request, int flags, int size) {
        return ByteBuffer.allocate(12).order(ByteOrder.LITTLE_ENDIAN).putInt(request).putInt(flags).putInt(size).array();
    }

    static byte[] join(byte[] a, byte[] b) {
        byte[] out = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    static long openDescriptors() throws Exception {
        try (var s = Files.list(Path.of("/proc/self/fd"))) {
            return s.count();
        }
    }

    @Test
    void aMessageArrivesWholeWithItsDescriptors() throws Exception {
        int a = Posix.eventfd();
        int b = Posix.eventfd();
        byte[] payload = new byte[VhostUser.MAX_PAYLOAD];
        payload[0] = 7;
        payload[VhostUser.MAX_PAYLOAD - 1] = 9;
        UnixSockets.sendWithFds(peer, join(header(VhostUser.SET_MEM_TABLE, VhostUser.VERSION | VhostUser.FLAG_NEED_REPLY,
                payload.length), payload), new int[] {a, b});
        Channel.closeQuietly(a);
        Channel.closeQuietly(b);
        Message m = channel.read();
        assertThat(m.request()).isEqualTo(VhostUser.SET_MEM_TABLE);
        assertThat(m.needReply()).isTrue();
        assertThat(m.size()).as("the largest payload taken").isEqualTo(VhostUser.MAX_PAYLOAD);
        assertThat(m.payload()[0]).isEqualTo((byte) 7);
        assertThat(m.payload()[VhostUser.MAX_PAYLOAD - 1]).isEqualTo((byte) 9);
        assertThat(m.fds()).hasSize(2);
        Channel.closeAll(new java.util.ArrayList<>(java.util.List.of(m.fds()[0], m.fds()[1])));
        // and the one written by the channel reads back the same
        channel.write(Message.reply(m, new byte[] {1, 2, 3}));
        try (Channel other = new Channel(peer)) {
            Message r = other.read();
            assertThat(r.flags()).isEqualTo(VhostUser.VERSION | VhostUser.FLAG_REPLY);
            assertThat(r.payload()).containsExactly(1, 2, 3);
            peer = -1;
        }
    }

    @Test
    void theEndOfTheStreamBetweenMessagesIsNoMessage() throws Exception {
        UnixSockets.sendWithFds(peer, header(VhostUser.GET_FEATURES, VhostUser.VERSION, 0), new int[0]);
        Channel.closeQuietly(peer);
        peer = -1;
        assertThat(channel.read().request()).isEqualTo(VhostUser.GET_FEATURES);
        assertThat(channel.read()).isNull();
    }

    @Test
    void aCloseInsideTheHeaderOrThePayloadIsAProtocolError() throws Exception {
        UnixSockets.sendWithFds(peer, new byte[5], new int[0]);
        Channel.closeQuietly(peer);
        assertThatThrownBy(channel::read).isInstanceOf(ProtocolException.class)
                .hasMessageContaining("header: connection closed after 5 of 12 bytes");
        close();
        connect();
        UnixSockets.sendWithFds(peer, join(header(VhostUser.SET_FEATURES, VhostUser.VERSION, 8), new byte[7]), new int[0]);
        Channel.closeQuietly(peer);
        peer = -1;
        assertThatThrownBy(channel::read).isInstanceOf(ProtocolException.class)
                .hasMessageContaining("SET_FEATURES payload: connection closed after 7 of 8 bytes");
    }

    @Test
    void headersWithAnotherVersionOrAnOversizedPayloadAreRefusedAndTheirDescriptorsClosed() throws Exception {
        int[][] bad = {
                {VhostUser.GET_FEATURES, 0, 0},
                {VhostUser.GET_FEATURES, 2, 0},
                {VhostUser.GET_FEATURES, 3 | VhostUser.FLAG_REPLY, 0},
                {VhostUser.SET_MEM_TABLE, VhostUser.VERSION, VhostUser.MAX_PAYLOAD + 1},
                {VhostUser.SET_MEM_TABLE, VhostUser.VERSION, -1},
        };
        String[] says = {"message version 0", "message version 2", "message version 3",
                "claims a payload of 4097 bytes", "claims a payload of 4294967295 bytes"};
        for (int i = 0; i < bad.length; i++) {
            int e1 = Posix.eventfd();
            long baseline = openDescriptors();
            UnixSockets.sendWithFds(peer, header(bad[i][0], bad[i][1], bad[i][2]), new int[] {e1, e1});
            assertThatThrownBy(channel::read).as("header %d", i).isInstanceOf(ProtocolException.class)
                    .hasMessageContaining(says[i]);
            assertThat(openDescriptors()).as("descriptors after refusing header %d", i).isEqualTo(baseline);
            Channel.closeQuietly(e1);
            close();
            connect();
        }
        // the version's bits beside REPLY and NEED_REPLY are the version's alone
        UnixSockets.sendWithFds(peer, header(VhostUser.GET_FEATURES, VhostUser.VERSION | VhostUser.FLAG_REPLY
                | VhostUser.FLAG_NEED_REPLY, 0), new int[0]);
        assertThat(channel.read().flags() & VhostUser.FLAG_VERSION_MASK).isEqualTo(VhostUser.VERSION);
    }

    @Test
    void awaitSaysWhetherSomethingCameWithinTheTime() throws Exception {
        assertThat(channel.await(30)).isFalse();
        UnixSockets.sendWithFds(peer, header(VhostUser.GET_FEATURES, VhostUser.VERSION, 0), new int[0]);
        assertThat(channel.await(5000)).isTrue();
        assertThat(channel.read().request()).isEqualTo(VhostUser.GET_FEATURES);
        assertThat(channel.await(0)).isFalse();
    }

    @Test
    void awaitWaitsForWhatComesLater() throws Exception {
        Thread later = Thread.ofPlatform().start(() -> {
            try {
                Thread.sleep(200);
                UnixSockets.sendWithFds(peer, header(VhostUser.GET_FEATURES, VhostUser.VERSION, 0), new int[0]);
            } catch (Exception e) {
                throw new RuntimeException(e);
            }
        });
        assertThat(channel.await(10_000)).isTrue();
        later.join();
    }

    @Test
    void aMessageSentInPiecesIsReadWhole() throws Exception {
        byte[] whole = join(header(VhostUser.SET_VRING_NUM, VhostUser.VERSION, 8), Message.vringState(1, 256));
        Thread writer = Thread.ofPlatform().start(() -> {
            try {
                for (int[] piece : new int[][] {{0, 5}, {5, 12}, {12, 15}, {15, 20}}) {
                    UnixSockets.sendWithFds(peer, java.util.Arrays.copyOfRange(whole, piece[0], piece[1]), new int[0]);
                    Thread.sleep(20);
                }
            } catch (Exception e) {
                throw new RuntimeException(e);
            }
        });
        Message m = channel.read();
        writer.join();
        assertThat(Payloads.VringState.decode(m)).isEqualTo(new Payloads.VringState(1, 256));
    }

    @Test
    void shutdownEndsABlockedRead() throws Exception {
        java.util.concurrent.CompletableFuture<Message> read = new java.util.concurrent.CompletableFuture<>();
        Thread reader = Thread.ofPlatform().start(() -> {
            try {
                read.complete(channel.read());
            } catch (Exception e) {
                read.completeExceptionally(e);
            }
        });
        Thread.sleep(100); // the reader is in recvmsg
        channel.shutdown();
        assertThat(read.get(10, java.util.concurrent.TimeUnit.SECONDS)).as("end of stream").isNull();
        reader.join();
    }
}
