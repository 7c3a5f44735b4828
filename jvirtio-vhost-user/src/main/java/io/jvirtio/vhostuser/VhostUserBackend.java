package io.jvirtio.vhostuser;

import io.jvirtio.core.device.VirtioDeviceModel;
import io.jvirtio.core.os.NativeException;
import io.jvirtio.core.os.UnixSockets;

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
 * {@link #connect} is the other way round: the back-end connects to a front-end that listens (QEMU's
 * {@code -chardev socket,server=on}), and connects again whenever the session ends.
 */
public final class VhostUserBackend implements AutoCloseable {
    private static final Logger LOG = System.getLogger(VhostUserBackend.class.getName());

    private final Path socket;
    private final Supplier<VirtioDeviceModel> devices;
    /** The listening socket, or -1 for a back-end that connects ({@link #connect}). */
    private final int listenFd;
    private final Thread acceptor;
    private final List<BackendSession> sessions = new CopyOnWriteArrayList<>();
    private final AtomicLong connections = new AtomicLong();
    private final AtomicLong ringErrors = new AtomicLong();
    private volatile boolean open = true;
    private final java.util.concurrent.atomic.AtomicBoolean closed = new java.util.concurrent.atomic.AtomicBoolean();

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
        this.listenFd = UnixSockets.listen(pending.toString(), 4);
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

    private VhostUserBackend(Path frontend, Supplier<VirtioDeviceModel> devices, boolean connecting) {
        this.socket = frontend;
        this.devices = devices;
        this.listenFd = -1;
        this.acceptor = Thread.ofPlatform().name("vhost-user-connect").daemon().start(this::connectLoop);
    }

    /**
     * A back-end that connects to the front-end listening on {@code frontend} and serves it; when the session
     * ends (the front-end restarted, the connection broke) or nobody listens yet, it connects again — every
     * 100 ms at first, backing off to once a second — until closed. A back-end restarted this way (after a
     * crash, an upgrade) finds its guest's requests in the in-flight buffer QEMU hands it back.
     */
    public static VhostUserBackend connect(Path frontend, Supplier<VirtioDeviceModel> devices) {
        LOG.log(Level.INFO, "vhost-user backend connecting to {0}", frontend);
        return new VhostUserBackend(frontend, devices, true);
    }

    private void connectLoop() {
        long delay = 100;
        boolean waiting = false;
        while (open) {
            int fd;
            try {
                fd = UnixSockets.connect(socket.toString());
            } catch (NativeException e) {
                if (!waiting) {
                    LOG.log(Level.INFO, "no front-end at {0} yet ({1}); trying again", socket, e.getMessage());
                    waiting = true;
                }
                sleep(delay);
                delay = Math.min(delay * 2, 1000);
                continue;
            }
            waiting = false;
            delay = 100;
            long n = connections.incrementAndGet();
            BackendSession s;
            try {
                s = new BackendSession(fd, devices.get(), "vhost-user#" + n, ringErrors::incrementAndGet);
            } catch (Throwable e) {
                LOG.log(Level.ERROR, "vhost-user#{0}: cannot serve this connection: {1}", n, e);
                Channel.closeQuietly(fd);
                sleep(1000);
                continue;
            }
            sessions.add(s);
            try {
                s.run();
            } finally {
                sessions.remove(s);
            }
            if (open) {
                LOG.log(Level.INFO, "{0}: session over; connecting to {1} again", s.name(), socket);
            }
        }
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    public Path socket() {
        return socket;
    }

    /** Connections accepted so far. */
    public long connections() {
        return connections.get();
    }

    /** Rings the devices found broken (DEVICE_NEEDS_RESET), over every session so far. */
    public long ringErrors() {
        return ringErrors.get();
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
                fd = UnixSockets.accept(listenFd);
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
                BackendSession s = new BackendSession(fd, devices.get(), "vhost-user#" + n, ringErrors::incrementAndGet);
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

    /**
     * Stops accepting (or connecting), ends every session (devices stopped, memory unmapped) and removes the
     * socket it listened on.
     */
    @Override
    public void close() {
        if (!closed.compareAndSet(false, true)) {
            return; // once: a descriptor number closed twice may by then be somebody else's
        }
        open = false;
        if (listenFd >= 0) {
            UnixSockets.shutdown(listenFd);
        }
        for (BackendSession s : sessions) {
            s.close();
        }
        acceptor.interrupt();
        try {
            acceptor.join(listenFd >= 0 ? 2000 : 10_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (listenFd >= 0) {
            Channel.closeQuietly(listenFd);
        }
        for (BackendSession s : sessions) {
            s.close();
        }
        long deadline = System.nanoTime() + 5_000_000_000L;
        while (!sessions.isEmpty() && System.nanoTime() < deadline) {
            Thread.onSpinWait();
            Thread.yield();
        }
        if (listenFd < 0) {
            return; // the front-end's socket: not ours to remove
        }
        try {
            Files.deleteIfExists(socket);
        } catch (IOException e) {
            LOG.log(Level.DEBUG, e.getMessage());
        }
    }
}
