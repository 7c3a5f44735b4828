package io.jvirtio.devices.console;

import io.jvirtio.core.spec.Console;
import io.jvirtio.core.device.ConfigSpace;
import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.QueueDevice;
import io.jvirtio.devices.QueueHandler;
import io.jvirtio.devices.QueueThread;
import io.jvirtio.devices.RxWorker;

import java.io.IOException;
import java.lang.System.Logger.Level;
import java.lang.System.Logger;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.ConcurrentLinkedQueue;

/**
 * The console device (VIRTIO 1.2 §5.3), one port: receiveq0 carries input to the driver, transmitq0
 * carries output from it. VIRTIO_CONSOLE_F_SIZE reports columns and rows; VIRTIO_CONSOLE_F_EMERG_WRITE
 * lets the driver write a character through {@code emerg_wr} before any queue works. Input that arrives
 * while the driver has posted no buffers waits (in order) until it does.
 */
public final class ConsoleDevice extends QueueDevice {
    static final int QUEUE_SIZE = 128;

    private static final Logger LOG = System.getLogger(ConsoleDevice.class.getName());

    private final ConsoleBackend backend;
    private final ConfigSpace config;
    /** Input waiting for receive buffers, in order; like a chardev's, it outlives ring restarts and resets. */
    private final InputSource input = new InputSource();

    public ConsoleDevice(ConsoleBackend backend, int cols, int rows) {
        this.backend = backend;
        this.config = new ConfigSpace(Console.CONFIG_SIZE, (space, offset, data) -> {
            // §5.3.4: a write to emerg_wr outputs its low byte at once.
            if (offset == Console.CFG_EMERG_WR && data.length == 4) {
                try {
                    backend.write(data, 0, 1);
                } catch (IOException e) {
                    LOG.log(Level.WARNING, "console emergency write failed: " + e.getMessage());
                }
            }
        });
        config.store(Console.CFG_COLS, cols, 2);
        config.store(Console.CFG_ROWS, rows, 2);
        config.store(Console.CFG_MAX_NR_PORTS, 1, 4);
        backend.start(this::onInput);
    }

    private void onInput(byte[] data) {
        input.chunks.add(data);
        wake(0);
    }

    /** Changes the size the driver sees (§5.3.4 with VIRTIO_CONSOLE_F_SIZE): a configuration change. */
    public void resize(int cols, int rows) {
        config.update(Console.CFG_COLS, cols | (rows << 16), 4);
    }

    @Override
    public DeviceType type() {
        return DeviceType.CONSOLE;
    }

    @Override
    public long deviceFeatures() {
        return RING_FEATURES | IN_ORDER | Feature.maskOf(Feature.CONSOLE_SIZE,
                Feature.CONSOLE_EMERG_WRITE);
    }

    @Override
    public int numQueues() {
        return 2;
    }

    @Override
    public int maxQueueSize(int index) {
        return QUEUE_SIZE;
    }

    @Override
    public ConfigSpace config() {
        return config;
    }

    @Override
    protected QueueThread worker(int index, DeviceQueue queue, Interrupt interrupt, DeviceContext context) {
        return index == 0 ? receiveWorker(index, queue, interrupt, input, context)
                : requestWorker(index, queue, interrupt, new Output(), context);
    }

    /** transmitq0: the driver's bytes go to the backend. */
    private final class Output implements QueueHandler {
        private final byte[] buf = new byte[4096];
        private final MemorySegment seg = MemorySegment.ofArray(buf);

        @Override
        public int handle(DescriptorChain chain) {
            long at = 0;
            while (at < chain.readableBytes()) {
                int n = (int) Math.min(buf.length, chain.readableBytes() - at);
                chain.readReadable(at, seg.asSlice(0, n));
                try {
                    backend.write(buf, 0, n);
                } catch (IOException e) {
                    LOG.log(Level.WARNING, "console output failed: " + e.getMessage());
                    break;
                }
                at += n;
            }
            return 0; // §5.3.6.1: nothing is written into a transmit buffer
        }
    }

    /** Input bytes in order; a chunk may be split over several receive buffers. */
    private static final class InputSource implements RxWorker.Source {
        final ConcurrentLinkedQueue<byte[]> chunks = new ConcurrentLinkedQueue<>();
        private byte[] current;
        private int offset;

        @Override
        public boolean hasPending() {
            return current != null || !chunks.isEmpty();
        }

        @Override
        public int fill(DescriptorChain chain, DeviceQueue queue) {
            int written = 0;
            while (written < chain.writableBytes() && hasPending()) {
                if (current == null) {
                    current = chunks.poll();
                    offset = 0;
                }
                int n = (int) Math.min(current.length - offset, chain.writableBytes() - written);
                chain.writeWritable(written, MemorySegment.ofArray(current).asSlice(offset, n));
                written += n;
                offset += n;
                if (offset == current.length) {
                    current = null;
                }
            }
            return written;
        }
    }
}
