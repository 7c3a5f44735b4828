package io.jvirtio.devices.net;

import io.jvirtio.core.os.NativeException;
import io.jvirtio.core.os.Posix;

import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;

/**
 * A host TAP device as a NIC's backend (Linux {@code /dev/net/tun}, {@code IFF_TAP | IFF_NO_PI}): frames
 * the guest transmits are written to the TAP fd and appear on the host interface; frames the host sends
 * out of that interface are read by a thread and delivered to the NIC. Needs CAP_NET_ADMIN; bring the
 * interface up with {@code ip link set NAME up}. A TAP device the process created disappears when it closes.
 */
public final class TapBackend implements NetBackend {
    static final long TUNSETIFF = 0x400454caL;
    static final short IFF_TAP = 0x0002;
    static final short IFF_NO_PI = 0x1000;
    private static final Logger LOG = System.getLogger(TapBackend.class.getName());

    private final int fd;
    private final String name;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment txBuffer = arena.allocate(65536);
    private final MemorySegment txState = Posix.callState(arena);
    private volatile Receiver receiver = (b, n) -> { };
    private volatile boolean open = true;
    private final Thread reader;

    /**
     * Opens (creating if needed) the TAP interface {@code name}; a name with {@code %d} (such as {@code jv%d})
     * is a template the kernel completes with the first free number — {@link #name()} tells which.
     *
     * @throws NativeException naming {@code open} or {@code ioctl} when /dev/net/tun is missing or the
     *                         process lacks CAP_NET_ADMIN
     */
    public TapBackend(String name) throws NativeException {
        byte[] n = name.getBytes(StandardCharsets.US_ASCII);
        if (n.length == 0 || n.length > 15) {
            throw new IllegalArgumentException("interface name '" + name + "' must be 1..15 characters");
        }
        int tun = Posix.openDevice("/dev/net/tun");
        try (Arena a = Arena.ofConfined()) {
            MemorySegment ifreq = a.allocate(40);
            MemorySegment.copy(n, 0, ifreq, ValueLayout.JAVA_BYTE, 0, n.length);
            ifreq.set(ValueLayout.JAVA_SHORT, 16, (short) (IFF_TAP | IFF_NO_PI));
            Posix.ioctl(tun, TUNSETIFF, ifreq);
            this.name = ifreq.getString(0, StandardCharsets.US_ASCII);
        } catch (NativeException e) {
            Posix.close(tun);
            throw e;
        }
        this.fd = tun;
        this.reader = Thread.ofPlatform().name("jvirtio-tap-" + this.name).daemon().start(this::readLoop);
    }

    public String name() {
        return name;
    }

    @Override
    public synchronized void transmit(MemorySegment buffer, long length) {
        if (!open || length > txBuffer.byteSize()) {
            return;
        }
        MemorySegment.copy(buffer, 0, txBuffer, 0, length);
        try {
            Posix.write(fd, txBuffer.asSlice(0, length), txState);
        } catch (NativeException e) {
            LOG.log(Level.WARNING, "{0}: {1}", name, e.getMessage());
        }
    }

    @Override
    public void connect(Receiver receiver) {
        this.receiver = receiver;
    }

    private void readLoop() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(65536);
            MemorySegment pollfd = a.allocate(8);
            MemorySegment state = Posix.callState(a);
            while (open) {
                // poll with a timeout so close() ends the thread without relying on close waking a read
                if (!Posix.pollIn(fd, 200, pollfd, state)) {
                    continue;
                }
                long n = Posix.read(fd, buf, state);
                if (n > 0) {
                    receiver.receive(buf, n);
                }
            }
        } catch (NativeException e) {
            if (open) {
                LOG.log(Level.WARNING, "{0}: reader stopped: {1}", name, e.getMessage());
            }
        }
    }

    @Override
    public void close() {
        if (!open) {
            return;
        }
        open = false;
        try {
            reader.join(2000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        synchronized (this) {
            try {
                Posix.close(fd);
            } catch (NativeException e) {
                LOG.log(Level.WARNING, e.getMessage());
            }
            arena.close();
        }
    }
}
