package io.jvirtio.vhostuser;

import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.os.Posix;
import io.jvirtio.core.os.UnixSockets;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * jvirtio's vhost-user front-end against a hostile or broken back-end — what `jvirtio bench` and `jvirtio
 * conform` meet when they connect to a back-end they do not know: a reply that never comes or stops halfway, a
 * reply to another request, a payload of the wrong size, a failed REPLY_ACK, descriptors nobody asked for. Each
 * ends in an error that names the request, within the reply timeout; the connection is not used after it went
 * out of step; and nothing a reply carried is leaked.
 */
@Timeout(30)
class FrontendRobustnessTest {
    static final long BASE = 0x1_0000_0000L;
    static final long RAM = 4 << 20;
    static final Duration SHORT = Duration.ofMillis(300);

    @TempDir
    Path dir;
    Path socket;
    int listener;
    Thread backend;
    /** Requests the fake back-end received, in order. */
    final List<Integer> received = Collections.synchronizedList(new ArrayList<>());
    /** Released to end a back-end that holds its connection open. */
    final CountDownLatch end = new CountDownLatch(1);
    GuestMemory memory;

    /** What the fake back-end does with one request: bytes to send back (null: nothing), and whether to go on. */
    record Answer(byte[] bytes, int[] fds, boolean goOn) {
        static Answer none() {
            return new Answer(null, new int[0], true);
        }

        static Answer send(byte[] bytes) {
            return new Answer(bytes, new int[0], true);
        }
    }

    @BeforeEach
    void listen() throws Exception {
        socket = dir.resolve("be.sock");
        Files.deleteIfExists(socket);
        listener = UnixSockets.listen(socket.toString(), 1);
        memory = GuestMemory.memfd(BASE, RAM);
    }

    @AfterEach
    void close() throws Exception {
        end.countDown();
        if (backend != null) {
            backend.join(5000);
        }
        Channel.closeQuietly(listener);
        memory.close();
    }

    /** A back-end on one connection that answers each request as {@code script} says, until it says stop. */
    void serve(Function<Message, Answer> script) {
        backend = Thread.ofPlatform().name("fake-backend").start(() -> {
            try (Channel c = new Channel(UnixSockets.accept(listener))) {
                Message m;
                while ((m = c.read()) != null) {
                    for (int fd : m.fds()) {
                        Channel.closeQuietly(fd);
                    }
                    received.add(m.request());
                    Answer a = script.apply(m);
                    if (a.bytes() != null) {
                        UnixSockets.sendWithFds(c.fd(), a.bytes(), a.fds());
                    }
                    if (!a.goOn()) {
                        end.await(20, TimeUnit.SECONDS); // holds the connection open, answering nothing
                        return;
                    }
                }
            } catch (Exception e) {
                // the front-end closed the connection: the test looks at what it got
            }
        });
    }

    static byte[] reply(int request, byte[] payload) {
        return reply(request, VhostUser.VERSION | VhostUser.FLAG_REPLY, payload.length, payload);
    }

    static byte[] reply(int request, int flags, int size, byte[] payload) {
        return ByteBuffer.allocate(12 + payload.length).order(ByteOrder.LITTLE_ENDIAN)
                .putInt(request).putInt(flags).putInt(size).put(payload).array();
    }

    static byte[] u64(long v) {
        return ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(v).array();
    }

    /** A well-behaved handshake: features {@code features}, protocol features {@code protocol}, every ack 0. */
    static Answer handshake(Message m, long features, long protocol) {
        return switch (m.request()) {
            case VhostUser.GET_FEATURES -> Answer.send(reply(m.request(), u64(features)));
            case VhostUser.GET_PROTOCOL_FEATURES -> Answer.send(reply(m.request(), u64(protocol)));
            default -> m.needReply() ? Answer.send(reply(m.request(), u64(0))) : Answer.none();
        };
    }

    VhostUserFrontend connect() throws IOException {
        return VhostUserFrontend.connect(socket, memory, new GuestAllocator(memory, BASE, RAM), SHORT);
    }

    static long openDescriptors() throws Exception {
        try (var s = Files.list(Path.of("/proc/self/fd"))) {
            return s.count();
        }
    }

    @Test
    void aBackEndThatNeverRepliesFailsTheConnectWithinTheTimeoutNamingTheRequest() {
        serve(m -> m.request() == VhostUser.GET_FEATURES ? new Answer(null, new int[0], false) : Answer.none());
        long t0 = System.nanoTime();
        assertThatThrownBy(this::connect)
                .isInstanceOf(IOException.class)
                .hasMessageContaining("no reply to GET_FEATURES within 300 ms");
        assertThat(Duration.ofNanos(System.nanoTime() - t0)).as("failed by the timeout, not by the test's")
                .isLessThan(Duration.ofSeconds(10));
    }

    @Test
    void aReplyThatStopsHalfwayFailsLikeOneThatNeverCame() {
        // the header promises 8 bytes, 4 come
        serve(m -> m.request() == VhostUser.GET_FEATURES
                ? new Answer(reply(m.request(), VhostUser.VERSION | VhostUser.FLAG_REPLY, 8, new byte[4]), new int[0], false)
                : Answer.none());
        assertThatThrownBy(this::connect)
                .isInstanceOf(IOException.class)
                .hasMessageContaining("no reply to GET_FEATURES within 300 ms");
    }

    @Test
    void aReplyToAnotherRequestIsRefused() {
        serve(m -> m.request() == VhostUser.GET_FEATURES
                ? Answer.send(reply(VhostUser.GET_PROTOCOL_FEATURES, u64(1L << 32))) : Answer.none());
        assertThatThrownBy(this::connect)
                .isInstanceOf(IOException.class)
                .hasMessageContaining("expected the reply to GET_FEATURES");
    }

    @Test
    void aRequestSentAsAReplyIsRefused() {
        serve(m -> m.request() == VhostUser.GET_FEATURES
                ? Answer.send(reply(m.request(), VhostUser.VERSION, 8, u64(1L << 32))) : Answer.none());
        assertThatThrownBy(this::connect)
                .isInstanceOf(IOException.class)
                .hasMessageContaining("expected the reply to GET_FEATURES");
    }

    @Test
    void aFeatureReplyOfTheWrongSizeIsRefused() {
        serve(m -> m.request() == VhostUser.GET_FEATURES ? Answer.send(reply(m.request(), new byte[4])) : Answer.none());
        assertThatThrownBy(this::connect)
                .isInstanceOf(IOException.class)
                .hasMessageContaining("GET_FEATURES carries 4 bytes, expected 8");
    }

    @Test
    void aNonZeroReplyAckFailsTheRequestItAnswers() {
        long pf = 1L << VhostUser.PROTOCOL_F_REPLY_ACK;
        serve(m -> m.request() == VhostUser.SET_MEM_TABLE
                ? Answer.send(reply(m.request(), u64(22)))
                : handshake(m, VhostUser.F_PROTOCOL_FEATURES, pf));
        assertThatThrownBy(this::connect)
                .isInstanceOf(IOException.class)
                .hasMessageContaining("SET_MEM_TABLE failed in the back-end (22)");
    }

    @Test
    void descriptorsSentWithAReplyAreClosed() throws Exception {
        int[] extra = {Posix.eventfd(), Posix.eventfd()};
        long before = openDescriptors();
        serve(m -> m.request() == VhostUser.GET_FEATURES
                ? new Answer(reply(m.request(), u64(1L << 32)), extra, true)
                : handshake(m, 1L << 32, 0));
        try (VhostUserFrontend fe = connect()) {
            assertThat(fe.getFeatures()).isEqualTo(1L << 32);
        }
        backend.join(5000);
        for (int fd : extra) {
            Channel.closeQuietly(fd);
        }
        // the test's two, the front-end's received copies, the sockets: all gone
        assertThat(openDescriptors()).isLessThanOrEqualTo(before - 2);
    }

    @Test
    void afterAReplyThatNeverCameTheConnectionIsNotUsedAgain() throws Exception {
        long pf = 1L << VhostUser.PROTOCOL_F_CONFIG;
        // GET_CONFIG gets no answer in time; its late reply must not be taken for the next request's
        serve(m -> {
            if (m.request() == VhostUser.GET_CONFIG) {
                try {
                    Thread.sleep(SHORT.toMillis() * 3);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
                byte[] p = new byte[12 + 8];
                p[12] = 0x5a;
                return Answer.send(reply(m.request(), p));
            }
            return handshake(m, VhostUser.F_PROTOCOL_FEATURES, pf);
        });
        try (VhostUserFrontend fe = connect()) {
            byte[] dst = new byte[8];
            assertThatThrownBy(() -> fe.readConfig(0, dst, 0, 8))
                    .hasMessageContaining("no reply to GET_CONFIG within 300 ms");
            Thread.sleep(SHORT.toMillis() * 4); // the late reply arrives meanwhile
            int seen = received.size();
            assertThatThrownBy(() -> fe.readConfig(0, dst, 0, 8))
                    .as("refused at once: the connection is out of step")
                    .hasMessageContaining("GET_CONFIG not sent: no reply to GET_CONFIG");
            assertThat(dst).as("the late reply's bytes were never taken").containsOnly(0);
            assertThat(received).as("nothing more went to the back-end").hasSize(seen);
        }
    }
}
