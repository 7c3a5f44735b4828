package io.jvirtio.devices.blk.nbd;

import io.jvirtio.core.spec.Blk;
import io.jvirtio.devices.blk.BlockBackend;
import io.jvirtio.devices.blk.BlockCompletion;
import io.jvirtio.devices.blk.BlockQueue;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;

/**
 * A disk served by any NBD server — {@code qemu-nbd} for qcow2 and every other QEMU format, {@code nbdkit}
 * plugins, Ceph through {@code rbd-nbd} — as a {@link BlockBackend}: each virtqueue gets its own connection
 * (so queues share no lock), with up to the queue's depth of requests in flight on it. FLUSH, TRIM and
 * WRITE_ZEROES map from virtio-blk where the server offers them; durable writes use FUA (or a FLUSH after
 * them). A lost connection is made again and the requests in flight sent again (see {@link NbdQueue}).
 *
 * <p>The connection made to learn the export's size is kept and handed to the first queue; a queue that
 * stops hands its connection back, so a server that takes one client at a time ({@code qemu-nbd} without
 * {@code --shared}) serves one queue, and a restarted ring reuses the connection. More queues need a server
 * that takes as many connections (and, for FLUSH to cover writes of other queues, advertises
 * NBD_FLAG_CAN_MULTI_CONN).
 */
public final class NbdBackend implements BlockBackend {
    /** How long a queue waits for a lost server before failing its requests, unless told otherwise. */
    public static final long DEFAULT_RECONNECT_TIMEOUT_MS = 60_000;

    private final NbdUri uri;
    private final long reconnectTimeoutMillis;
    private final NbdConnection probe;
    private final ConcurrentLinkedQueue<NbdConnection> idle = new ConcurrentLinkedQueue<>();
    private final List<NbdConnection> all = new ArrayList<>();
    private volatile boolean closed;

    public NbdBackend(NbdUri uri) throws IOException {
        this(uri, DEFAULT_RECONNECT_TIMEOUT_MS);
    }

    public NbdBackend(NbdUri uri, long reconnectTimeoutMillis) throws IOException {
        this.uri = uri;
        this.reconnectTimeoutMillis = reconnectTimeoutMillis;
        this.probe = NbdConnection.open(uri);
        synchronized (all) {
            all.add(probe);
        }
        idle.add(probe);
    }

    NbdUri uri() {
        return uri;
    }

    long reconnectTimeoutMillis() {
        return reconnectTimeoutMillis;
    }

    /** The first connection's view of the export: its size and transmission flags. */
    NbdConnection probe() {
        return probe;
    }

    /** A new connection to the same export (a queue's reconnect). */
    NbdConnection connect() throws IOException {
        if (closed) {
            throw new IOException(uri + ": the back-end is closed");
        }
        NbdConnection c = NbdConnection.open(uri);
        synchronized (all) {
            all.removeIf(NbdConnection::isClosed);
            all.add(c);
        }
        return c;
    }

    /** A queue stopped with this connection whole and idle: the next queue takes it. */
    void release(NbdConnection c) {
        if (closed) {
            c.close();
        } else {
            idle.add(c);
        }
    }

    @Override
    public long capacity() {
        return probe.size & ~(Blk.SECTOR_SIZE - 1L);
    }

    @Override
    public boolean readOnly() {
        return probe.has(Nbd.TFLAG_READ_ONLY);
    }

    @Override
    public String id() {
        String name = uri.export().isEmpty() ? "nbd" : uri.export();
        return name.length() > Blk.ID_BYTES ? name.substring(name.length() - Blk.ID_BYTES) : name;
    }

    /** Writes may sit in the server's cache until FLUSH, when the server has one to flush. */
    @Override
    public boolean writeCache() {
        return probe.has(Nbd.TFLAG_SEND_FLUSH);
    }

    @Override
    public BlockQueue open(int queueIndex, int depth, BlockCompletion completion) throws IOException {
        NbdConnection c = idle.poll();
        return new NbdQueue(this, c != null ? c : connect(), queueIndex, depth, completion);
    }

    @Override
    public String describe() {
        List<String> f = new ArrayList<>();
        for (int[] flag : new int[][] {{Nbd.TFLAG_READ_ONLY}, {Nbd.TFLAG_SEND_FLUSH}, {Nbd.TFLAG_SEND_FUA},
                {Nbd.TFLAG_SEND_TRIM}, {Nbd.TFLAG_SEND_WRITE_ZEROES}, {Nbd.TFLAG_CAN_MULTI_CONN}}) {
            if (probe.has(flag[0])) {
                f.add(switch (flag[0]) {
                    case Nbd.TFLAG_READ_ONLY -> "read-only";
                    case Nbd.TFLAG_SEND_FLUSH -> "flush";
                    case Nbd.TFLAG_SEND_FUA -> "fua";
                    case Nbd.TFLAG_SEND_TRIM -> "trim";
                    case Nbd.TFLAG_SEND_WRITE_ZEROES -> "write-zeroes";
                    default -> "multi-conn";
                });
            }
        }
        return "NBD export " + uri + ", " + probe.size + " bytes, " + String.join(" ", f)
                + (probe.structured ? ", structured replies" : ", simple replies");
    }

    @Override
    public void close() {
        closed = true;
        synchronized (all) {
            for (NbdConnection c : all) {
                c.close();
            }
            all.clear();
        }
        idle.clear();
    }
}
