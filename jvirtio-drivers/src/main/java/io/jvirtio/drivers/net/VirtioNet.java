package io.jvirtio.drivers.net;

import io.jvirtio.core.spec.Net;
import io.jvirtio.bus.TransportException;
import io.jvirtio.bus.VirtioDevice;
import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.queue.VirtqueueException;
import io.jvirtio.core.spec.Feature;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.lang.foreign.MemorySegment;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;

/**
 * An Ethernet NIC over virtio-net. {@link #send} copies a frame behind a zeroed {@code virtio_net_hdr}
 * into a transmit buffer and kicks; transmit buffers come back on the transmit interrupt. Frames are bounded
 * by the device's MTU when VIRTIO_NET_F_MTU is negotiated (1514 bytes with the header otherwise). Receive
 * buffers (2 KiB, or header + the largest frame when that is more and MRG_RXBUF is off) are posted at
 * start and re-posted as each frame is
 * handed to the receiver (by default a bounded queue read with {@link #receive}).
 */
public final class VirtioNet {
    /** Receive buffers (with MRG_RXBUF a large frame spans several) and transmit slots are at least this. */
    static final int BUFFER = 2048;
    /** The Ethernet header, which the MTU does not count. */
    static final int ETH_HLEN = 14;

    private final VirtioDevice device;
    private final GuestAllocator dma;
    private final int pairs;
    private final Lane[] lanes;
    private final DriverQueue<Object> ctrl;
    private final long ctrlMemory;
    private CompletableFuture<Integer> ctrlPending;
    private final ArrayBlockingQueue<byte[]> inbox = new ArrayBlockingQueue<>(4096);
    /** Where frames over several receive buffers are put together (interrupt thread only). */
    private final MemorySegment merged = java.lang.foreign.Arena.ofAuto().allocate(65536);
    private volatile Consumer<MemorySegment> receiver = this::enqueue;
    private volatile boolean linkUp = true;
    private final byte[] mac = new byte[6];
    /** The largest frame this NIC sends or takes: MTU + Ethernet header (1514 without VIRTIO_NET_F_MTU). */
    private final int maxFrame;
    private final int rxBuffer;
    private final int txBuffer;
    /** VIRTIO_NET_F_MRG_RXBUF negotiated: only then does {@code num_buffers} mean anything (§5.1.6.4). */
    private final boolean mergeable;
    public final AtomicLong rxFrames = new AtomicLong();
    public final AtomicLong txFrames = new AtomicLong();
    public final AtomicLong rxDropped = new AtomicLong();

    /** One queue pair with its buffer memory. */
    private static final class Lane {
        final DriverQueue<Object> rx;
        final DriverQueue<Object> tx;
        final long rxMemory;
        final long txMemory;
        /** Free transmit slots, a stack; slot numbers are the queue tokens, boxed once here. */
        final int[] freeTx;
        int freeCount;
        final Integer[] tokens;
        boolean detached;

        Lane(DriverQueue<Object> rx, DriverQueue<Object> tx, GuestAllocator dma, int rxBuffer, int txBuffer) {
            this.rx = rx;
            this.tx = tx;
            this.rxMemory = dma.allocate((long) rx.size() * rxBuffer, 4096);
            this.txMemory = dma.allocate((long) tx.size() * txBuffer, 4096);
            this.freeTx = new int[tx.size()];
            this.tokens = new Integer[Math.max(rx.size(), tx.size())];
            for (int i = 0; i < tokens.length; i++) {
                tokens[i] = i;
            }
            for (int i = 0; i < tx.size(); i++) {
                freeTx[freeCount++] = i;
            }
        }
    }

    VirtioNet(VirtioDevice device, List<DriverQueue<Object>> queues, int pairs, boolean hasCtrl)
            throws TransportException {
        this.device = device;
        this.dma = device.config().dma();
        this.pairs = pairs;
        // §5.1.4.1 / net-drv-5, net-drv-6: with VIRTIO_NET_F_MTU the device's mtu bounds what is sent, and
        // every receive buffer (or, with MRG_RXBUF, a chain of them) holds a header and a frame that size.
        int mtu = device.hasFeature(Feature.NET_MTU) ? (int) device.readConfigField(Net.CFG_MTU, 2) : Net.MTU;
        this.maxFrame = mtu + ETH_HLEN;
        int whole = (Net.HDR_SIZE + maxFrame + 63) & ~63;
        this.txBuffer = Math.max(BUFFER, whole);
        this.mergeable = device.hasFeature(Feature.NET_MRG_RXBUF);
        this.rxBuffer = mergeable ? BUFFER : Math.max(BUFFER, whole);
        this.lanes = new Lane[pairs];
        for (int p = 0; p < pairs; p++) {
            lanes[p] = new Lane(queues.get(2 * p), queues.get(2 * p + 1), dma, rxBuffer, txBuffer);
        }
        this.ctrl = hasCtrl ? queues.getLast() : null;
        this.ctrlMemory = hasCtrl ? dma.allocate(1024, 64) : 0;
        if (device.hasFeature(Feature.NET_MAC)) {
            device.readConfig(Net.CFG_MAC, mac);
        } else {
            new java.security.SecureRandom().nextBytes(mac);
            mac[0] = (byte) ((mac[0] & 0xfe) | 0x02); // locally administered unicast
        }
        refreshStatus();
    }

    /** Fills every receive ring and, with MQ, turns all pairs on (§5.1.6.5.5). */
    void start() throws IOException {
        for (Lane l : lanes) {
            synchronized (l.rx) {
                for (int i = 0; i < l.rx.size(); i++) {
                    l.rx.addInBuf(l.rxMemory + (long) i * rxBuffer, rxBuffer, l.tokens[i]);
                }
                l.rx.kick();
            }
        }
        if (pairs > 1) {
            command(Net.CTRL_MQ, Net.CTRL_MQ_VQ_PAIRS_SET, new byte[] {(byte) pairs, (byte) (pairs >> 8)});
        }
    }

    public VirtioDevice device() {
        return device;
    }

    public byte[] mac() {
        return mac.clone();
    }

    public String macString() {
        return HexFormat.ofDelimiter(":").formatHex(mac);
    }

    public int queuePairs() {
        return pairs;
    }

    /** Link state from the device's status field (VIRTIO_NET_F_STATUS); always up without it. */
    public boolean linkUp() {
        return linkUp;
    }

    void refreshStatus() {
        if (device.hasFeature(Feature.NET_STATUS)) {
            try {
                linkUp = (device.readConfigField(Net.CFG_STATUS, 2) & Net.S_LINK_UP) != 0;
            } catch (TransportException e) {
                System.getLogger(VirtioNet.class.getName()).log(System.Logger.Level.WARNING, e.getMessage());
            }
        }
    }

    /**
     * Replaces the default receiver. {@code receiver} runs on the interrupt thread with a view of the
     * frame in guest memory that is valid only during the call.
     */
    public void onReceive(Consumer<MemorySegment> receiver) {
        this.receiver = receiver;
    }

    /** The next received frame, or null after {@code timeout}. For the default receiver. */
    public byte[] receive(long timeout, TimeUnit unit) throws InterruptedException {
        return inbox.poll(timeout, unit);
    }

    private void enqueue(MemorySegment frame) {
        if (!inbox.offer(frame.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE))) {
            rxDropped.incrementAndGet();
        }
    }

    /**
     * Sends one Ethernet frame (14..1514 bytes). Waits up to 10 s for a transmit buffer.
     *
     * @throws IOException if the NIC is removed or no buffer frees up
     */
    public void send(MemorySegment frame) throws IOException {
        long len = frame.byteSize();
        if (len < ETH_HLEN || len > maxFrame) {
            throw new IllegalArgumentException("frame of " + len + " bytes; this link takes 14.." + maxFrame
                    + " (MTU " + (maxFrame - ETH_HLEN) + ")");
        }
        Lane l = lanes[(int) (Thread.currentThread().threadId() % pairs)];
        synchronized (l.tx) {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (l.freeCount == 0 && !l.detached) {
                reclaim(l);
                if (l.freeCount > 0) {
                    break;
                }
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    throw new IOException(device + ": no transmit buffer freed within 10 s");
                }
                try {
                    l.tx.wait(Math.max(1, left / 1_000_000));
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new InterruptedIOException();
                }
            }
            if (l.detached) {
                throw new IOException(device + " was removed");
            }
            int slot = l.freeTx[--l.freeCount];
            long at = l.txMemory + (long) slot * txBuffer;
            MemorySegment buf = slice(at, Net.HDR_SIZE + len);
            buf.asSlice(0, Net.HDR_SIZE).fill((byte) 0);
            MemorySegment.copy(frame, 0, buf, Net.HDR_SIZE, len);
            l.tx.addOutBuf(at, (int) (Net.HDR_SIZE + len), l.tokens[slot]);
            l.tx.kick();
            txFrames.incrementAndGet();
        }
    }

    public void send(byte[] frame) throws IOException {
        send(MemorySegment.ofArray(frame));
    }

    private void reclaim(Lane l) {
        try {
            Object t;
            while ((t = l.tx.getBuf()) != null) {
                l.freeTx[l.freeCount++] = (Integer) t;
            }
        } catch (VirtqueueException e) {
            l.detached = true;
        }
    }

    /** Transmit interrupt: buffers are free again. */
    void transmitted(int p) {
        Lane l = lanes[p];
        synchronized (l.tx) {
            reclaim(l);
            l.tx.notifyAll();
        }
    }

    /** Receive interrupt: hand each frame to the receiver, then re-post its buffer. */
    void received(int p) {
        Lane l = lanes[p];
        Consumer<MemorySegment> r = receiver;
        synchronized (l.rx) {
            boolean reposted = false;
            try {
                Object t;
                while ((t = l.rx.getBuf()) != null) {
                    int slot = (Integer) t;
                    // a used length beyond the buffer is a device error: what the buffer holds past what the
                    // device wrote is an earlier frame's, so the frame is dropped, never delivered (Linux:
                    // "rx error: len exceeds"); its continuation buffers are taken and dropped with it
                    boolean fits = Integer.toUnsignedLong(l.rx.lastLength()) <= rxBuffer;
                    int len = fits ? l.rx.lastLength() : rxBuffer;
                    long at = l.rxMemory + (long) slot * rxBuffer;
                    // §5.1.6.4.1 net-drv-10: of the header only num_buffers is used, and only with MRG_RXBUF;
                    // flags, gso and checksum fields a device sets (or leaves as junk) change nothing here.
                    int numBuffers = mergeable && len >= Net.HDR_SIZE
                            ? Short.toUnsignedInt(slice(at, Net.HDR_SIZE).get(GuestMemory.U16, Net.HDR_NUM_BUFFERS)) : 1;
                    if (numBuffers <= 1) {
                        if (fits && len >= Net.HDR_SIZE + 14) {
                            rxFrames.incrementAndGet();
                            r.accept(slice(at + Net.HDR_SIZE, len - Net.HDR_SIZE));
                        } else {
                            rxDropped.incrementAndGet();
                        }
                        l.rx.addInBuf(at, rxBuffer, l.tokens[slot]);
                    } else {
                        // VIRTIO_NET_F_MRG_RXBUF: the frame continues in the next numBuffers-1 used buffers.
                        mergeFrame(l, r, slot, at, len, numBuffers, fits);
                    }
                    reposted = true;
                }
            } catch (VirtqueueException e) {
                System.getLogger(VirtioNet.class.getName()).log(System.Logger.Level.ERROR, e.getMessage());
            }
            if (reposted) {
                l.rx.kick();
            }
        }
    }

    /**
     * Gathers a frame that the device spread over {@code count} receive buffers (§5.1.6.4.2), hands it to
     * the receiver, and re-posts every buffer. A device that reports fewer used buffers than it announced
     * loses that frame, not the ring; so does one that reports a buffer longer than it is ({@code fits} false
     * for the first), or a frame longer than the largest the driver takes.
     */
    private void mergeFrame(Lane l, Consumer<MemorySegment> r, int slot, long at, int len, int count, boolean fits)
            throws VirtqueueException {
        MemorySegment frame = merged;
        long size = len - Net.HDR_SIZE;
        MemorySegment.copy(slice(at + Net.HDR_SIZE, size), 0, frame, 0, size);
        l.rx.addInBuf(at, rxBuffer, l.tokens[slot]);
        boolean complete = fits;
        for (int i = 1; i < count; i++) {
            Object t = l.rx.getBuf();
            if (t == null) {
                complete = false;
                break;
            }
            int s = (Integer) t;
            long n = Integer.toUnsignedLong(l.rx.lastLength());
            long a = l.rxMemory + (long) s * rxBuffer;
            if (complete && n <= rxBuffer && size + n <= frame.byteSize()) {
                MemorySegment.copy(slice(a, n), 0, frame, size, n);
            } else {
                complete = false;
            }
            size += n;
            l.rx.addInBuf(a, rxBuffer, l.tokens[s]);
        }
        if (complete && size >= 14) {
            rxFrames.incrementAndGet();
            r.accept(frame.asSlice(0, size));
        } else {
            rxDropped.incrementAndGet();
        }
    }

    /** Promiscuous mode (VIRTIO_NET_CTRL_RX_PROMISC). */
    public void setPromiscuous(boolean on) throws IOException {
        requireFeature(Feature.NET_CTRL_RX);
        command(Net.CTRL_RX, Net.CTRL_RX_PROMISC, new byte[] {(byte) (on ? 1 : 0)});
    }

    /** All-multicast mode (VIRTIO_NET_CTRL_RX_ALLMULTI). */
    public void setAllMulticast(boolean on) throws IOException {
        requireFeature(Feature.NET_CTRL_RX);
        command(Net.CTRL_RX, Net.CTRL_RX_ALLMULTI, new byte[] {(byte) (on ? 1 : 0)});
    }

    /** The MAC filter (VIRTIO_NET_CTRL_MAC_TABLE_SET): extra unicast and multicast addresses. */
    public void setMacFilter(List<byte[]> unicast, List<byte[]> multicast) throws IOException {
        requireFeature(Feature.NET_CTRL_RX); // §5.1.6.5.2 (net-drv-12): every MAC command needs CTRL_RX
        byte[] data = new byte[8 + 6 * (unicast.size() + multicast.size())];
        MemorySegment d = MemorySegment.ofArray(data);
        int at = 0;
        for (List<byte[]> table : List.of(unicast, multicast)) {
            d.set(GuestMemory.U32, at, table.size());
            at += 4;
            for (byte[] m : table) {
                System.arraycopy(m, 0, data, at, 6);
                at += 6;
            }
        }
        command(Net.CTRL_MAC, Net.CTRL_MAC_TABLE_SET, data);
    }

    /** Changes the station address (VIRTIO_NET_CTRL_MAC_ADDR_SET). */
    public void setMacAddress(byte[] newMac) throws IOException {
        requireFeature(Feature.NET_CTRL_MAC_ADDR);
        requireFeature(Feature.NET_CTRL_RX); // net-drv-12
        command(Net.CTRL_MAC, Net.CTRL_MAC_ADDR_SET, newMac);
        System.arraycopy(newMac, 0, mac, 0, 6);
    }

    /**
     * §5.1.6.5.1/.2 (net-drv-11, net-drv-12): a command the device did not negotiate is never sent; the
     * caller learns why instead of getting the device's VIRTIO_NET_ERR, or worse, its acceptance.
     */
    private void requireFeature(Feature f) throws IOException {
        if (!device.hasFeature(f)) {
            throw new IOException(f + " was not negotiated");
        }
    }

    /** Sends a control command and waits for the device's ack (§5.1.6.5). */
    private void command(int cls, int cmd, byte[] data) throws IOException {
        if (ctrl == null) {
            throw new IOException("VIRTIO_NET_F_CTRL_VQ was not negotiated");
        }
        CompletableFuture<Integer> f = new CompletableFuture<>();
        synchronized (ctrl) {
            if (ctrlPending != null) {
                throw new IllegalStateException("one control command at a time");
            }
            MemorySegment buf = slice(ctrlMemory, 2 + data.length + 1);
            buf.set(java.lang.foreign.ValueLayout.JAVA_BYTE, 0, (byte) cls);
            buf.set(java.lang.foreign.ValueLayout.JAVA_BYTE, 1, (byte) cmd);
            MemorySegment.copy(MemorySegment.ofArray(data), 0, buf, 2, data.length);
            long ack = ctrlMemory + 2 + data.length;
            buf.set(java.lang.foreign.ValueLayout.JAVA_BYTE, 2 + data.length, (byte) 0xff);
            ctrlPending = f;
            ctrl.addBuf(new Scatterlist().addReadable(ctrlMemory, 2).addReadable(ctrlMemory + 2, data.length)
                    .addWritable(ack, 1), f);
            ctrl.kick();
        }
        try {
            f.get(10, TimeUnit.SECONDS);
        } catch (ExecutionException | TimeoutException e) {
            throw new IOException("control command " + cls + "/" + cmd + " got no answer", e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new InterruptedIOException();
        } finally {
            synchronized (ctrl) {
                ctrlPending = null;
            }
        }
        int status = slice(ctrlMemory + 2 + data.length, 1).get(java.lang.foreign.ValueLayout.JAVA_BYTE, 0);
        if (status != Net.OK) {
            throw new IOException("device refused control command " + cls + "/" + cmd + " (VIRTIO_NET_ERR)");
        }
    }

    void controlDone() {
        synchronized (ctrl) {
            try {
                Object t;
                while ((t = ctrl.getBuf()) != null) {
                    ((CompletableFuture<?>) t).complete(null);
                }
            } catch (VirtqueueException e) {
                if (ctrlPending != null) {
                    ctrlPending.completeExceptionally(e);
                }
            }
        }
    }

    void detach() {
        for (Lane l : lanes) {
            synchronized (l.rx) {
                while (l.rx.detachUnused() != null) {
                    // receive buffers carry no caller state
                }
            }
            synchronized (l.tx) {
                l.detached = true;
                while (l.tx.detachUnused() != null) {
                    // nor do transmit buffers
                }
                l.tx.notifyAll();
            }
            dma.free(l.rxMemory, (long) l.rx.size() * rxBuffer);
            dma.free(l.txMemory, (long) l.tx.size() * txBuffer);
        }
        if (ctrl != null) {
            synchronized (ctrl) {
                Object t;
                while ((t = ctrl.detachUnused()) != null) {
                    ((CompletableFuture<?>) t).completeExceptionally(new IOException(device + " was removed"));
                }
            }
            dma.free(ctrlMemory, 1024);
        }
    }

    private MemorySegment slice(long at, long len) {
        return dma.slice(at, len);
    }

    @Override
    public String toString() {
        return device.name() + " " + macString() + " (" + pairs + " queue pair" + (pairs > 1 ? "s" : "") + ")";
    }
}
