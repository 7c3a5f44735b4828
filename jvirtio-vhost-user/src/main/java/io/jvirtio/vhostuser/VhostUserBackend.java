package io.jvirtio.vhostuser;

import io.jvirtio.core.device.VirtioDeviceModel;
import io.jvirtio.core.os.NativeException;
import io.jvirtio.core.os.Posix;

import java.io.IOException;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Supplier;

/**
 * A vhost-user back-end: listens on a Unix socket and serves a device model to each frontend that
 * connects (QEMU's {@code -chardev socket} + {@code vhost-user-*-pci}, or jvirtio's
 * {@link VhostUserFrontend}). Each connection gets the device from {@code devices} and its own session
 * thread; a frontend that breaks the protocol loses its connection, and the server keeps accepting.
 */
public final class VhostUserBackend implements AutoCloseable {
    private static final Logger LOG = System.getLogger(VhostUserBackend.class.getName());

    private final Path socket;
    private final Supplier<VirtioDeviceModel> devices;
    private final int listenFd;
    private final Thread acceptor;
    private final List<BackendSession> sessions = new CopyOnWriteArrayList<>();
    private final AtomicLong connections = new AtomicLong();
    private volatile boolean open = true;

    /**
     * Starts serving on {@code socket} (a stale socket file there is replaced).
     *
     * @param devices makes the device model for each connection
     */
    public VhostUserBackend(Path socket, Supplier<VirtioDeviceModel> devices) throws IOException {
        this.socket = socket;
        this.devices = devices;
        // Bind and listen under a temporary name, then rename: a front-end that sees the socket can connect
        // (between bind and listen a connect would be refused).
        Path pending = socket.resolveSibling(socket.getFileName() + ".new");
        Files.deleteIfExists(pending);
        this.listenFd = Posix.unixListen(pending.toString(), 4);
        try {
            Files.move(pending, socket, java.nio.file.StandardCopyOption.ATOMIC_MOVE,
                    java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        } catch (IOException e) {
            Channel.closeQuietly(listenFd);
            Files.deleteIfExists(pending);
            throw e;
        }
        this.acceptor = Thread.ofPlatform().name("vhost-user-accept").daemon().start(this::acceptLoop);
        LOG.log(Level.INFO, "vhost-user backend listening on {0}", socket);
    }

    public Path socket() {
        return socket;
    }

    /** Connections accepted so far. */
    public long connections() {
        return connections.get();
    }

    /** Sessions currently open. */
    public int activeSessions() {
        return (int) sessions.stream().count();
    }

    /** Messages handled over all sessions still open. */
    public long messages() {
        return sessions.stream().mapToLong(s -> s.messages.get()).sum();
    }

    /**
     * Accepts until closed. Nothing one connection does can end it: a failure to make its device or its
     * thread closes that connection only, and a failing accept (out of descriptors) is retried after a pause.
     */
    private void acceptLoop() {
        while (open) {
            int fd;
            try {
                fd = Posix.accept(listenFd);
            } catch (NativeException e) {
                if (!open) {
                    return;
                }
                LOG.log(Level.ERROR, "accept on {0} failed: {1}; retrying", socket, e.getMessage());
                pause();
                continue;
            }
            long n = connections.incrementAndGet();
            try {
                BackendSession s = new BackendSession(fd, devices.get(), "vhost-user#" + n);
                sessions.add(s);
                Thread.ofPlatform().name("vhost-user-session-" + n).daemon().start(() -> {
                    try {
                        s.run();
                    } finally {
                        sessions.remove(s);
                    }
                });
            } catch (Throwable e) {
                LOG.log(Level.ERROR, "vhost-user#{0}: cannot serve this connection: {1}", n, e);
                sessions.removeIf(s -> s.name().equals("vhost-user#" + n));
                Channel.closeQuietly(fd);
                pause();
            }
        }
    }

    private static void pause() {
        try {
            Thread.sleep(100);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Stops accepting, ends every session (devices stopped, memory unmapped) and removes the socket. */
    @Override
    public void close() {
        open = false;
        Posix.shutdown(listenFd);
        try {
            acceptor.join(2000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        Channel.closeQuietly(listenFd);
        for (BackendSession s : sessions) {
            s.close();
        }
        long deadline = System.nanoTime() + 5_000_000_000L;
        while (!sessions.isEmpty() && System.nanoTime() < deadline) {
            Thread.onSpinWait();
            Thread.yield();
        }
        try {
            Files.deleteIfExists(socket);
        } catch (IOException e) {
            LOG.log(Level.DEBUG, e.getMessage());
        }
    }
}
