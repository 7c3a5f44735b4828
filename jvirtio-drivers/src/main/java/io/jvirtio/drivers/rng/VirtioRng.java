package io.jvirtio.drivers.rng;

import io.jvirtio.bus.VirtioDevice;
import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemoryException;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.VirtqueueException;

import java.io.IOException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * Entropy from a virtio-rng device: {@link #read(byte[])} posts one device-writable buffer and waits for
 * the device to fill it (§5.4). One request in flight at a time, like Linux's driver.
 */
public final class VirtioRng {
    static final int BUFFER = 4096;

    private final VirtioDevice device;
    private final DriverQueue<Object> queue;
    private final GuestAllocator dma;
    private final long buffer;
    private CompletableFuture<Integer> pending;
    private boolean detached;

    VirtioRng(VirtioDevice device, DriverQueue<Object> queue) {
        this.device = device;
        this.queue = queue;
        this.dma = device.config().dma();
        this.buffer = dma.allocate(BUFFER, 64);
    }

    public VirtioDevice device() {
        return device;
    }

    /**
     * Fills {@code dst} with entropy from the device, in as many requests as needed.
     *
     * @throws IOException if the device is removed, broken, returns an impossible length, or does not
     *                     answer within 10 s
     */
    public synchronized void read(byte[] dst) throws IOException {
        int done = 0;
        while (done < dst.length) {
            int want = Math.min(BUFFER, dst.length - done);
            int got = request(want);
            try {
                dma.memory().read(buffer, dst, done, got);
            } catch (GuestMemoryException e) {
                throw new IOException(e);
            }
            done += got;
        }
    }

    private int request(int want) throws IOException {
        CompletableFuture<Integer> f = new CompletableFuture<>();
        synchronized (queue) {
            if (detached) {
                throw new IOException(device + " was removed");
            }
            pending = f;
            if (!queue.addInBuf(buffer, want, f)) {
                throw new IOException("entropy queue full");
            }
            queue.kick();
        }
        try {
            int got = f.get(10, TimeUnit.SECONDS);
            // §5.4.6.1: the device may fill less than asked, never more; zero means "try again".
            if (got < 0 || got > want) {
                throw new IOException("device returned " + got + " bytes for a " + want + "-byte buffer");
            }
            return got;
        } catch (ExecutionException e) {
            throw new IOException(e.getCause());
        } catch (TimeoutException e) {
            throw new IOException(device + " did not answer within 10 s");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException(e);
        }
    }

    /** The queue callback, on the interrupt thread. */
    @SuppressWarnings("unchecked")
    void complete() {
        CompletableFuture<Integer> f = null;
        int len = 0;
        synchronized (queue) {
            try {
                Object t;
                while ((t = queue.getBuf()) != null) {
                    f = (CompletableFuture<Integer>) t;
                    len = queue.lastLength();
                }
            } catch (VirtqueueException e) {
                f = pending;
                if (f != null) {
                    f.completeExceptionally(e);
                }
                return;
            }
        }
        if (f != null) {
            f.complete(len);
        }
    }

    /** After the device was reset: fail what was in flight and give the buffer back. */
    void detach() {
        synchronized (queue) {
            detached = true;
            Object t;
            while ((t = queue.detachUnused()) != null) {
                ((CompletableFuture<?>) t).completeExceptionally(new IOException(device + " was removed"));
            }
        }
        dma.free(buffer, BUFFER);
    }
}
