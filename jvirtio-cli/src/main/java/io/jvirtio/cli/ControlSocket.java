package io.jvirtio.cli;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * {@code jvirtio serve --control PATH}: a Unix socket taking one JSON request per line
 * ({@code {"command":"stats"}}) and answering one JSON line ({@code {"ok":true,...}} or
 * {@code {"ok":false,"error":"..."}}). Requests longer than 4 KiB end the connection.
 */
final class ControlSocket implements AutoCloseable {
    private static final Logger LOG = System.getLogger(ControlSocket.class.getName());
    static final int MAX_REQUEST = 4096;

    /** Answers one request; an exception becomes {@code {"ok":false,"error":...}}. */
    interface Handler {
        Map<String, Object> handle(Map<String, String> request) throws Exception;
    }

    private final Path path;
    private final ServerSocketChannel server;
    private final Handler handler;
    private final Thread acceptor;

    ControlSocket(Path path, Handler handler) throws IOException {
        this.path = path;
        this.handler = handler;
        Files.deleteIfExists(path);
        this.server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        server.bind(UnixDomainSocketAddress.of(path));
        this.acceptor = Thread.ofPlatform().name("jvirtio-control").daemon().start(this::accept);
    }

    private void accept() {
        while (server.isOpen()) {
            try {
                SocketChannel ch = server.accept();
                Thread.ofPlatform().name("jvirtio-control-client").daemon().start(() -> serve(ch));
            } catch (IOException e) {
                if (server.isOpen()) {
                    LOG.log(Level.WARNING, "control socket {0}: {1}", path, e.getMessage());
                }
                return;
            }
        }
    }

    private void serve(SocketChannel ch) {
        try (ch; BufferedReader in = new BufferedReader(new InputStreamReader(Channels.newInputStream(ch),
                StandardCharsets.UTF_8), MAX_REQUEST)) {
            OutputStream out = Channels.newOutputStream(ch);
            String line;
            while ((line = readLine(in)) != null) {
                Map<String, Object> answer;
                try {
                    Map<String, Object> result = handler.handle(Json.parseFlat(line));
                    answer = new LinkedHashMap<>();
                    answer.put("ok", true);
                    answer.putAll(result);
                } catch (Exception e) {
                    answer = new LinkedHashMap<>();
                    answer.put("ok", false);
                    answer.put("error", e.getMessage() == null ? e.toString() : e.getMessage());
                }
                out.write((Json.write(answer) + "\n").getBytes(StandardCharsets.UTF_8));
                out.flush();
            }
        } catch (IOException e) {
            LOG.log(Level.DEBUG, "control client: {0}", e.getMessage());
        }
    }

    /** A line of at most {@link #MAX_REQUEST} characters, or null at the end (or past the limit). */
    private static String readLine(BufferedReader in) throws IOException {
        StringBuilder b = new StringBuilder();
        for (int c; (c = in.read()) >= 0; ) {
            if (c == '\n') {
                return b.toString();
            }
            if (b.length() >= MAX_REQUEST) {
                throw new IOException("control request longer than " + MAX_REQUEST + " characters");
            }
            b.append((char) c);
        }
        return b.isEmpty() ? null : b.toString();
    }

    @Override
    public void close() throws IOException {
        server.close();
        acceptor.interrupt();
        Files.deleteIfExists(path);
    }
}
