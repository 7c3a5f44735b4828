package io.jvirtio.drivers.console;

import io.jvirtio.core.spec.Console;
import io.jvirtio.bus.TransportException;
import io.jvirtio.bus.VirtioDevice;
import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemoryException;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.VirtqueueException;
import io.jvirtio.core.spec.Feature;

import java.io.IOException;
import java.io.InputStream;
import java.io.InterruptedIOException;
import java.io.OutputStream;
import java.util.ArrayDeque;
import java.util.concurrent.TimeUnit;

/**
 * A virtio console as a pair of streams: {@link #input()} yields what the device sends, {@link #output()}
 * writes to the device. Receive buffers are posted at probe and re-posted as soon as they are consumed;
 * writes are copied into transmit buffers in guest memory and block only while all are in flight.
 */
public final class VirtioConsole {
    static final int RX_BUFFERS = 16;
    static final int TX_BUFFERS = 16;
    static final int BUFFER = 4096;

    private final VirtioDevice device;
    private final DriverQueue<Object> rxq;
    private final DriverQueue<Object> txq;
    private final GuestAllocator dma;
    private final long rxMemory;
    private final long txMemory;
    private final ArrayDeque<Integer> freeTx = new ArrayDeque<>();
    private final ArrayDeque<byte[]> received = new ArrayDeque<>();
    /** Input buffers the device reported with a length past their end, dropped. */
    public final java.util.concurrent.atomic.AtomicLong rxDropped = new java.util.concurrent.atomic.AtomicLong();
    private volatile int cols;
    private volatile int rows;
    private boolean detached;

    VirtioConsole(VirtioDevice device, DriverQueue<Object> rxq, DriverQueue<Object> txq) throws TransportException {
        this.device = device;
        this.rxq = rxq;
        this.txq = txq;
        this.dma = device.config().dma();
        this.rxMemory = dma.allocate((long) RX_BUFFERS * BUFFER, 64);
        this.txMemory = dma.allocate((long) TX_BUFFERS * BUFFER, 64);
        for (int i = 0; i < TX_BUFFERS; i++) {
            freeTx.add(i);
        }
        refreshSize();
    }

    /**
     * Posts the receive buffers and kicks; after DRIVER_OK, since a driver MUST NOT notify the device before
     * it (§3.1.1, basic-drv-18).
     */
    void start() {
        synchronized (rxq) {
            for (int i = 0; i < RX_BUFFERS; i++) {
                rxq.addInBuf(rxMemory + (long) i * BUFFER, BUFFER, i);
            }
            rxq.kick();
        }
    }

    public VirtioDevice device() {
        return device;
    }

    public int columns() {
        return cols;
    }

    public int rows() {
        return rows;
    }

    void refreshSize() {
        if (device.hasFeature(Feature.CONSOLE_SIZE)) {
            try {
                long[] v = device.readConfigFields(Console.CFG_COLS, 2, Console.CFG_ROWS, 2);
                cols = (int) v[0];
                rows = (int) v[1];
            } catch (TransportException e) {
                System.getLogger(VirtioConsole.class.getName()).log(System.Logger.Level.WARNING, e.getMessage());
            }
        }
    }

    /** Writes one byte through {@code emerg_wr} (VIRTIO_CONSOLE_F_EMERG_WRITE), bypassing the queues. */
    public void emergencyWrite(int c) throws IOException {
        if (!device.hasFeature(Feature.CONSOLE_EMERG_WRITE)) {
            throw new IOException("VIRTIO_CONSOLE_F_EMERG_WRITE was not negotiated");
        }
        device.config().writeConfig(Console.CFG_EMERG_WR, new byte[] {(byte) c, 0, 0, 0});
    }

    /** Bytes from the device, in order; blocks until some arrive; -1 after the device is removed. */
    public InputStream input() {
        return new InputStream() {
            private byte[] chunk;
            private int pos;

            @Override
            public int read() throws IOException {
                byte[] one = new byte[1];
                return read(one, 0, 1) < 0 ? -1 : one[0] & 0xff;
            }

            @Override
            public int read(byte[] b, int off, int len) throws IOException {
                if (len == 0) {
                    return 0;
                }
                if (chunk == null || pos == chunk.length) {
                    chunk = take();
                    pos = 0;
                    if (chunk == null) {
                        return -1;
                    }
                }
                int n = Math.min(len, chunk.length - pos);
                System.arraycopy(chunk, pos, b, off, n);
                pos += n;
                return n;
            }
        };
    }

    /** Bytes to the device; {@code flush} waits until the device has taken everything written. */
    public OutputStream output() {
        return new OutputStream() {
            @Override
            public void write(int b) throws IOException {
                write(new byte[] {(byte) b}, 0, 1);
            }

            @Override
            public void write(byte[] b, int off, int len) throws IOException {
                while (len > 0) {
                    int n = Math.min(len, BUFFER);
                    send(b, off, n);
                    off += n;
                    len -= n;
                }
            }

            @Override
            public void flush() throws IOException {
                synchronized (txq) {
                    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
                    while (freeTx.size() < TX_BUFFERS && !detached) {
                        waitOn(txq, deadline);
                    }
                }
            }
        };
    }

    private void send(byte[] b, int off, int n) throws IOException {
        synchronized (txq) {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (freeTx.isEmpty() && !detached) {
                waitOn(txq, deadline);
            }
            if (detached) {
                throw new IOException(device + " was removed");
            }
            int slot = freeTx.poll();
            long at = txMemory + (long) slot * BUFFER;
            try {
                dma.memory().write(at, b, off, n);
            } catch (GuestMemoryException e) {
                throw new IOException(e);
            }
            txq.addOutBuf(at, n, slot);
            txq.kick();
        }
    }

    private static void waitOn(Object lock, long deadline) throws IOException {
        long left = deadline - System.nanoTime();
        if (left <= 0) {
            throw new IOException("console device did not take output within 10 s");
        }
        try {
            lock.wait(Math.max(1, left / 1_000_000));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new InterruptedIOException();
        }
    }

    private byte[] take() throws IOException {
        synchronized (received) {
            while (received.isEmpty()) {
                if (detached) {
                    return null;
                }
                try {
                    received.wait();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new InterruptedIOException();
                }
            }
            return received.poll();
        }
    }

    /** receiveq callback: hand the bytes to readers, re-post the buffer. */
    void received() {
        synchronized (rxq) {
            try {
                Object t;
                boolean reposted = false;
                while ((t = rxq.getBuf()) != null) {
                    int slot = (Integer) t;
                    long len = Integer.toUnsignedLong(rxq.lastLength());
                    long at = rxMemory + (long) slot * BUFFER;
                    if (len > BUFFER) {
                        // the device reports more than the buffer holds: what lies past what it wrote is
                        // earlier input, so none of it is handed on (split-drv-15)
                        rxDropped.incrementAndGet();
                        System.getLogger(VirtioConsole.class.getName()).log(System.Logger.Level.WARNING,
                                "{0}: input of {1} bytes reported in a {2}-byte buffer: dropped", device, len, BUFFER);
                    } else if (len > 0) {
                        byte[] data = new byte[(int) len];
                        dma.memory().read(at, data, 0, (int) len);
                        synchronized (received) {
                            received.add(data);
                            received.notifyAll();
                        }
                    }
                    rxq.addInBuf(at, BUFFER, slot);
                    reposted = true;
                }
                if (reposted) {
                    rxq.kick();
                }
            } catch (VirtqueueException | GuestMemoryException e) {
                System.getLogger(VirtioConsole.class.getName()).log(System.Logger.Level.ERROR, e.getMessage());
            }
        }
    }

    /** transmitq callback: transmit buffers are free again. */
    void transmitted() {
        synchronized (txq) {
            try {
                Object t;
                while ((t = txq.getBuf()) != null) {
                    freeTx.add((Integer) t);
                }
            } catch (VirtqueueException e) {
                System.getLogger(VirtioConsole.class.getName()).log(System.Logger.Level.ERROR, e.getMessage());
            }
            txq.notifyAll();
        }
    }

    void detach() {
        synchronized (rxq) {
            while (rxq.detachUnused() != null) {
                // receive buffers carry no caller state
            }
        }
        synchronized (txq) {
            detached = true;
            while (txq.detachUnused() != null) {
                // nothing waits on individual transmit buffers
            }
            txq.notifyAll();
        }
        synchronized (received) {
            received.notifyAll();
        }
        dma.free(rxMemory, (long) RX_BUFFERS * BUFFER);
        dma.free(txMemory, (long) TX_BUFFERS * BUFFER);
    }
}
