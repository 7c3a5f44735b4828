package io.jvirtio.devices.net;

import io.jvirtio.core.spec.Net;
import io.jvirtio.devices.Poller;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

/**
 * A traffic source on a {@link VirtualSwitch}, the model of DPDK testpmd's {@code txonly}: it sends the same
 * IPv4/UDP frame of a given size to the broadcast address, so every NIC on the switch receives it, as fast as
 * the switch takes it. It measures and exercises the path into a front-end's receive ring (`serve net
 * --generate BYTES`, with testpmd's {@code rxonly} or a guest counting frames on the other end).
 *
 * <p>It sends only while a NIC is on the switch beside the ports that are not receivers of interest ({@code
 * others}: the switch's own host), a batch at a time: in each round of the {@link Poller} that serves the NICs'
 * rings, if there is one — the frames then go straight into the receive rings, one used-index update per ring
 * and batch, as DPDK's lcore does — or else on a thread of its own, which yields its CPU after every batch so
 * that the threads writing the frames into the rings run between batches. A receiver without buffers drops
 * what it cannot take and counts it, as a NIC does.
 */
public final class PacketGenerator implements AutoCloseable {
    /** Frames sent in one burst, between two yields of the CPU. */
    static final int BATCH = 32;
    /** The smallest frame (an Ethernet frame of 60 bytes, its FCS not counted) and the largest (a 9,000-byte MTU). */
    public static final int MIN_FRAME = 60;
    public static final int MAX_FRAME = 9014;
    /** The source address: locally administered, beside the responder's 52:54:00:4a:56:01. */
    static final byte[] MAC = {0x52, 0x54, 0x00, 0x4a, 0x56, 0x02};

    private final VirtualSwitch sw;
    private final int others;
    private final NetBackend port;
    private final MemorySegment frame;
    private final FrameBurst burst = new FrameBurst();
    private final long length;
    private final AtomicLong sent = new AtomicLong();
    private final Poller poller;
    private final Poller.Producer producer = this::produce;
    private final Thread thread;
    private volatile boolean open = true;

    /**
     * Starts sending frames of {@code frameBytes} (Ethernet header to the end of the payload, as testpmd's
     * {@code --txpkts}) on {@code sw}, once more than {@code others} other ports are on it: in the rounds of
     * {@code poller}, or on a thread of its own if it is null.
     */
    public PacketGenerator(VirtualSwitch sw, int frameBytes, int others, Poller poller) {
        if (frameBytes < MIN_FRAME || frameBytes > MAX_FRAME) {
            throw new IllegalArgumentException("frame size " + frameBytes + " is outside " + MIN_FRAME + ".." + MAX_FRAME);
        }
        this.sw = sw;
        this.others = others;
        this.port = sw.offloadPort(); // a header that asks nothing: passed as it is to every NIC
        port.acceptOffloads(VirtualSwitch.OFFLOADS); // what is flooded back to it is ignored, never finished for it
        port.connect((buffer, at, len) -> { });
        this.length = Net.HDR_SIZE + frameBytes;
        // freed by the collector: a poller may be inside its last round when the generator closes
        this.frame = Arena.ofAuto().allocate(length, 64);
        udpFrame(frame.asSlice(Net.HDR_SIZE), frameBytes);
        for (int i = 0; i < BATCH; i++) {
            burst.add(frame, 0, length); // the same frame BATCH times: testpmd's txonly sends one frame over and over
        }
        this.poller = poller;
        if (poller != null) {
            poller.addProducer(producer);
            this.thread = null;
        } else {
            this.thread = Thread.ofPlatform().name("jvirtio-net-generator").daemon().start(this::run);
        }
    }

    /** Frames handed to the switch so far (receivers without buffers drop some: see their counters). */
    public long sent() {
        return sent.get();
    }

    public int frameBytes() {
        return (int) length - Net.HDR_SIZE;
    }

    /**
     * Broadcast, from {@link #MAC}, IPv4 198.18.0.1 → 198.18.0.255 (the benchmarking range of RFC 2544), UDP port 9
     * (discard) to 9, the payload zero; the IPv4 header checksum set, the UDP one 0 (none, allowed for IPv4).
     */
    static void udpFrame(MemorySegment f, int bytes) {
        ValueLayout.OfShort be16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
        for (int i = 0; i < 6; i++) {
            f.set(ValueLayout.JAVA_BYTE, i, (byte) 0xff);
            f.set(ValueLayout.JAVA_BYTE, 6 + i, MAC[i]);
        }
        f.set(be16, 12, (short) 0x0800);
        int ipLength = bytes - 14;
        byte[] ip = {0x45, 0, (byte) (ipLength >> 8), (byte) ipLength, 0, 0, 0x40, 0, 64, 17, 0, 0,
                (byte) 198, 18, 0, 1, (byte) 198, 18, 0, (byte) 255};
        short sum = Responder.checksum(ip, 0, 20);
        ip[10] = (byte) (sum >> 8);
        ip[11] = (byte) sum;
        MemorySegment.copy(MemorySegment.ofArray(ip), 0, f, 14, 20);
        f.set(be16, 34, (short) 9);
        f.set(be16, 36, (short) 9);
        f.set(be16, 38, (short) (ipLength - 20));
    }

    /** One batch, if anyone is there to take it: true if sent. */
    private boolean produce() {
        if (!open || sw.portCount() <= others + 1) {
            return false; // no NIC yet: nobody to send to
        }
        port.transmit(0, burst); // one call: the switch floods the run once, each NIC writes it in one go
        sent.lazySet(sent.get() + BATCH); // one writer: the poller, or the thread
        return true;
    }

    private void run() {
        while (open) {
            if (!produce()) {
                LockSupport.parkNanos(10_000_000L);
                continue;
            }
            Thread.yield(); // the receivers' threads, which may share this CPU, write the batch into their rings
        }
    }

    /** Stops sending and leaves the switch. */
    @Override
    public void close() {
        open = false;
        if (poller != null) {
            poller.removeProducer(producer);
        } else {
            try {
                thread.join(5_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        port.close();
    }
}
