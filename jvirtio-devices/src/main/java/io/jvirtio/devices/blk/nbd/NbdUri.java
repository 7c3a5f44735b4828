package io.jvirtio.devices.blk.nbd;

import java.net.URI;
import java.net.URISyntaxException;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;

/**
 * Where an NBD export is, as the NBD URI standard writes it: {@code nbd://host[:port]/export} (TCP, port
 * 10809 by default) or {@code nbd+unix:///export?socket=PATH} (a Unix socket).
 *
 * @param host   the server's host name or address, null for a Unix socket
 * @param socket the Unix socket's path, null for TCP
 */
public record NbdUri(String host, int port, String socket, String export) {
    public static final int DEFAULT_PORT = 10809;

    /** Whether {@code s} is meant as an NBD URI rather than a path. */
    public static boolean isNbd(String s) {
        return s.startsWith("nbd://") || s.startsWith("nbd+unix://") || s.startsWith("nbd+tcp://");
    }

    /** Parses an NBD URI; the message names what is wrong with it. */
    public static NbdUri parse(String s) {
        URI u;
        try {
            u = new URI(s);
        } catch (URISyntaxException e) {
            throw new IllegalArgumentException("'" + s + "' is not an NBD URI: " + e.getMessage());
        }
        String path = u.getRawPath() == null ? "" : URLDecoder.decode(u.getRawPath(), StandardCharsets.UTF_8);
        String export = path.startsWith("/") ? path.substring(1) : path;
        switch (u.getScheme()) {
            case "nbd", "nbd+tcp" -> {
                if (u.getHost() == null || u.getHost().isEmpty()) {
                    throw new IllegalArgumentException("'" + s + "': an nbd:// URI needs a host (nbd://HOST[:PORT]/EXPORT)");
                }
                return new NbdUri(u.getHost(), u.getPort() < 0 ? DEFAULT_PORT : u.getPort(), null, export);
            }
            case "nbd+unix" -> {
                String q = u.getRawQuery();
                String socket = null;
                for (String kv : q == null ? new String[0] : q.split("&")) {
                    if (kv.startsWith("socket=")) {
                        socket = URLDecoder.decode(kv.substring(7), StandardCharsets.UTF_8);
                    }
                }
                if (socket == null || socket.isEmpty()) {
                    throw new IllegalArgumentException("'" + s + "': nbd+unix needs ?socket=PATH (nbd+unix:///EXPORT?socket=PATH)");
                }
                return new NbdUri(null, 0, socket, export);
            }
            default -> throw new IllegalArgumentException("'" + s + "': scheme " + u.getScheme()
                    + " is not nbd, nbd+tcp or nbd+unix");
        }
    }

    @Override
    public String toString() {
        return socket != null ? "nbd+unix:///" + export + "?socket=" + socket
                : "nbd://" + host + (port == DEFAULT_PORT ? "" : ":" + port) + "/" + export;
    }
}
