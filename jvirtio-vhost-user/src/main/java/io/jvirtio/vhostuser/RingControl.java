package io.jvirtio.vhostuser;

import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.device.VirtioDeviceModel;
import io.jvirtio.core.os.NativeException;
import io.jvirtio.core.os.Posix;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.queue.QueueState;
import io.jvirtio.core.queue.RingAddresses;
import io.jvirtio.core.queue.VirtqueueException;
import io.jvirtio.core.spec.Feature;

import java.lang.System.Logger.Level;
import java.lang.System.Logger;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The rings of one session and the device model over them, ring by ring (vhost-user.rst "Ring states"): a
 * ring runs once it is started (a kick), addressed and sized, whether enabled or not; a ring message touches
 * that ring only — the model's {@code startQueue}/{@code stopQueue}, never a device reset — so a NIC keeps its
 * filters and queued frames while QEMU stops one ring or sends a new memory table. Only {@link #reset()}
 * (RESET_OWNER, RESET_DEVICE, status 0) resets the model. Not thread-safe: the session's thread calls it.
 */
final class RingControl {
    private static final Logger LOG = System.getLogger(RingControl.class.getName());

    private final VirtioDeviceModel model;
    private final Vring[] rings;
    private final String name;
    private final Runnable onRingError;
    private MemoryTable memory;
    private InflightBuffer inflight;
    /** The virtio features the model runs with (no vhost-user bits). */
    private long features;
    private boolean inflightWarned;
    private boolean active;
    private KickLoop kicks;
    /** The dirty log (SET_LOG_BASE) and its mapping; written to while {@link #logging} (VHOST_F_LOG_ALL). */
    private io.jvirtio.core.memory.DirtyLog log;
    private Arena logArena;
    private boolean logging;

    RingControl(VirtioDeviceModel model, String name, Runnable onRingError) {
        this.model = model;
        this.name = name;
        this.onRingError = onRingError;
        this.rings = new Vring[model.numQueues()];
        for (int i = 0; i < rings.length; i++) {
            rings[i] = new Vring(i);
        }
    }

    int count() {
        return rings.length;
    }

    Vring ring(int index) throws ProtocolException {
        if (index < 0 || index >= rings.length) {
            throw new ProtocolException("ring index " + index + " (the device has " + rings.length + ")");
        }
        return rings[index];
    }

    boolean hasMemory() {
        return memory != null;
    }

    /**
     * New virtio features (SET_FEATURES). The same ones again change nothing; different ones while the model
     * runs are a renegotiation: the model restarts over the running rings with them (its state starts over).
     */
    void setFeatures(long virtio) {
        if (virtio == features) {
            return;
        }
        features = virtio;
        if (active) {
            List<Vring> running = stopAll();
            model.reset();
            active = false;
            start(running);
        }
    }

    /**
     * A new memory table: running rings stop (keeping their positions and the device's state), move, and restart
     * with every other ring that became ready without memory to run on.
     */
    void setMemory(MemoryTable table) {
        stopAll();
        if (memory != null) {
            memory.close();
        }
        memory = table;
        startReady();
    }

    /** A new in-flight buffer: running rings restart with their requests recorded in it. */
    void setInflight(InflightBuffer buffer) {
        List<Vring> running = stopAll();
        if (inflight != null) {
            inflight.close();
        }
        inflight = buffer;
        start(running);
    }

    /**
     * A new dirty log (SET_LOG_BASE): running rings stop (keeping position and device state), so that no
     * queue thread still marks the old mapping when it is unmapped, then restart on the new one.
     */
    void setLog(io.jvirtio.core.memory.DirtyLog newLog, Arena arena) {
        List<Vring> running = stopAll();
        if (logArena != null) {
            logArena.close();
        }
        log = newLog;
        logArena = arena;
        start(running);
    }

    /** VHOST_F_LOG_ALL on or off: running queues log from their next used element on. */
    void setLogging(boolean on) {
        if (on != logging) {
            Events.DirtyLog event = new Events.DirtyLog();
            event.session = name;
            event.on = on;
            event.commit();
        }
        logging = on;
        for (Vring r : rings) {
            if (r.queue != null) {
                applyLog(r);
            }
        }
    }

    private void applyLog(Vring r) {
        r.queue.logTo(logging ? log : null, r.logUsed);
    }

    void setNum(Vring r, int num) {
        r.num = num;
    }

    void setAddr(Vring r, Payloads.VringAddr a) {
        r.descUser = a.desc();
        r.usedUser = a.used();
        r.availUser = a.avail();
        r.logUsed = (a.flags() & Payloads.VRING_F_LOG) != 0;
        r.addressed = true;
        if (r.queue != null) {
            applyLog(r);
        }
    }

    void setBase(Vring r, int base) {
        r.base = base;
    }

    /**
     * SET_VRING_KICK: the ring's kick (fd, or polling with -1) — and its start. A running ring stops first
     * (keeping the device's state) and restarts on the new descriptor.
     */
    void setKick(Vring r, int fd, boolean polling, boolean enableOnStart) {
        stop(r);
        Channel.closeQuietly(r.kickFd);
        r.kickFd = fd;
        r.kickPolling = polling;
        r.started = true;
        if (enableOnStart) {
            r.enabled = true; // without PROTOCOL_FEATURES a ring is enabled as soon as it starts
        }
        startReady();
    }

    /** SET_VRING_ENABLE: the device talks to its peer through the ring, or not; the ring runs either way. */
    void enable(Vring r, boolean on) {
        r.enabled = on;
        model.enableQueue(r.index, on);
    }

    /** GET_VRING_BASE: the ring stops (its kick is dropped) and this is where the device got to. */
    int stopRing(Vring r) {
        stop(r);
        r.started = false;
        Channel.closeQuietly(r.kickFd);
        r.kickFd = -1;
        rebuildKicks();
        return r.base;
    }

    /**
     * Device reset: the model stops and forgets its state. The rings keep their positions until the
     * front-end resets them ({@code forgetRings}), since QEMU asks for them (GET_VRING_BASE) after status 0.
     */
    void reset(boolean forgetRings) {
        stopAll();
        if (active) {
            model.reset();
            active = false;
        }
        if (forgetRings) {
            for (Vring r : rings) {
                r.dropFds();
                r.num = 0;
                r.addressed = false;
                r.base = 0;
                r.enabled = false;
                r.started = false;
            }
        } else {
            for (Vring r : rings) {
                r.started = false;
            }
        }
        rebuildKicks();
    }

    /** The session ends: the model stops and closes; every descriptor and mapping is released. */
    void close() {
        try {
            reset(true);
        } catch (RuntimeException e) {
            LOG.log(Level.WARNING, "{0}: stopping the device failed: {1}", name, e);
        }
        try {
            model.close();
        } catch (RuntimeException e) {
            LOG.log(Level.WARNING, "{0}: closing the device failed: {1}", name, e);
        }
        for (Vring r : rings) {
            r.dropFds();
        }
        if (kicks != null) {
            kicks.stop();
            kicks = null;
        }
        if (memory != null) {
            memory.close();
            memory = null;
        }
        if (inflight != null) {
            inflight.close();
            inflight = null;
        }
        if (logArena != null) {
            logArena.close();
            logArena = null;
            log = null;
        }
    }

    /** Stops one running ring through the model, keeping its position in {@code base}. */
    private void stop(Vring r) {
        if (r.queue == null) {
            return;
        }
        QueueState st = active ? model.stopQueue(r.index) : null;
        QueueState s = st != null ? st : r.queue.state();
        // vhost-user "ring states": split, the next avail index; packed, avail slot and wrap counter in bits
        // 0-15 and used slot and wrap counter in bits 16-31
        r.base = packed() ? s.nextAvail() | s.nextUsed() << 16 : s.nextAvail();
        r.queue = null;
    }

    private List<Vring> stopAll() {
        List<Vring> running = new ArrayList<>();
        for (Vring r : rings) {
            if (r.queue != null) {
                stop(r);
                running.add(r);
            }
        }
        rebuildKicks();
        return running;
    }

    /** Starts every ring that is ready and not running. */
    private void startReady() {
        List<Vring> ready = new ArrayList<>();
        for (Vring r : rings) {
            if (r.queue == null && r.ready()) {
                ready.add(r);
            }
        }
        start(ready);
    }

    /**
     * Starts {@code which} (ready rings) from their saved positions: the model is activated over them if it
     * is not running yet, else each joins it with {@code startQueue}.
     */
    private void start(List<Vring> which) {
        if (memory == null || which.isEmpty()) {
            rebuildKicks();
            return;
        }
        DeviceQueue[] queues = new DeviceQueue[rings.length];
        Interrupt[] irqs = new Interrupt[rings.length];
        for (Vring r : which) {
            if (!r.ready()) {
                continue;
            }
            try {
                queues[r.index] = queue(r);
            } catch (VirtqueueException | ProtocolException | IllegalArgumentException e) {
                failure("ring " + r.index + ": " + e.getMessage());
                continue;
            }
            irqs[r.index] = r.interrupt();
            // the dirty log before the queue's thread exists: its first used element is logged too
            r.queue = queues[r.index];
            applyLog(r);
            boolean eventfd = !r.kickPolling && r.kickFd >= 0;
            // A device that waits on the kick eventfd itself saves a thread hand-off per kick.
            r.kickTaken = model.watchKicks(r.index, eventfd ? r.kickFd : -1);
            model.enableQueue(r.index, r.enabled);
        }
        if (!active) {
            List<DeviceQueue> qs = new ArrayList<>(Arrays.asList(queues));
            List<Interrupt> is = new ArrayList<>();
            for (int i = 0; i < rings.length; i++) {
                is.add(irqs[i] != null ? irqs[i] : rings[i].interrupt());
            }
            if (qs.stream().allMatch(q -> q == null)) {
                rebuildKicks();
                return;
            }
            model.activate(new DeviceContext(memory.memory, features, qs, is, this::failure));
            active = true;
        } else {
            for (int i = 0; i < rings.length; i++) {
                if (queues[i] != null) {
                    model.startQueue(i, queues[i], irqs[i]);
                }
            }
        }
        for (int i = 0; i < rings.length; i++) {
            if (queues[i] != null) {
                // The device that ran this ring before (a back-end killed between publishing used buffers and
                // writing the call fd, or a ring stopped mid-batch) may have used buffers the driver was never
                // told about; with EVENT_IDX no later publish crosses used_event again, and a driver waiting
                // for them waits for ever. One interrupt at each start says so; a spurious one costs the
                // driver a look at its used ring (§2.7.7: it must tolerate them). Queued until the call fd.
                irqs[i].raise();
            }
        }
        rebuildKicks();
    }

    /** The ring's queue over the current memory, resuming at its saved position (and its in-flight log). */
    private DeviceQueue queue(Vring r) throws VirtqueueException, ProtocolException {
        DeviceQueue q;
        if (packed()) {
            // both positions (with their wrap counters) come from the base; the driver and device areas are
            // 4-byte event suppression structures (VIRTIO 1.2 §2.8.10). A base without its used half (DPDK's
            // virtio_user sends the available position alone, and DPDK's own back-end reads it so) means the
            // used side stands where the available one does: nothing was in flight when the ring stopped.
            int avail = r.base & 0xffff;
            int used = r.base >>> 16 == 0 ? avail : r.base >>> 16;
            q = DeviceQueue.create(memory.memory, r.index, r.num, new RingAddresses(
                    memory.translate(r.descUser, 16L * r.num), memory.translate(r.availUser, 4),
                    memory.translate(r.usedUser, 4)), features, new QueueState(avail, used));
        } else {
            // used_idx is the ring's own; resume both indices from the base (§ "ring states")
            q = DeviceQueue.create(memory.memory, r.index, r.num, new RingAddresses(
                    memory.translate(r.descUser, 16L * r.num), memory.translate(r.availUser, 6 + 2L * r.num),
                    memory.translate(r.usedUser, 6 + 8L * r.num)), features, new QueueState(r.base, usedIndex(r)));
        }
        if (inflight != null) {
            MemorySegment log = inflight.region(r.index, r.num, features);
            if (log != null) {
                q.trackInflight(log);
            } else if (!inflightWarned) {
                inflightWarned = true;
                LOG.log(System.Logger.Level.WARNING, "{0}: ring {1} ({2} entries, {3}) is not covered by the in-flight"
                        + " buffer ({4} queues of {5}, {6}): its requests in flight are not logged for a reconnect",
                        name, r.index, r.num, packed() ? "packed" : "split", inflight.queues, inflight.queueSize,
                        Feature.RING_PACKED.isSet(inflight.features) ? "packed" : "split");
            }
        }
        return q;
    }

    /** VIRTIO_F_RING_PACKED negotiated: every ring of the session is packed. */
    boolean packed() {
        return Feature.RING_PACKED.isSet(features);
    }

    private int usedIndex(Vring r) throws ProtocolException {
        try {
            return Short.toUnsignedInt(memory.memory.readU16(memory.translate(r.usedUser, 4) + 2));
        } catch (io.jvirtio.core.memory.GuestMemoryException e) {
            throw new ProtocolException("ring " + r.index + " used ring outside memory");
        }
    }

    /** The session's epoll thread watches the kicks of running rings the device does not watch itself. */
    private void rebuildKicks() {
        if (kicks != null) {
            kicks.stop();
            kicks = null;
        }
        int[] fds = new int[rings.length];
        boolean any = false;
        for (Vring r : rings) {
            fds[r.index] = r.queue == null || r.kickTaken ? -2 : r.kickPolling ? -1 : r.kickFd;
            any |= fds[r.index] != -2;
        }
        if (!any) {
            return;
        }
        try {
            kicks = new KickLoop(name + "-kicks", fds, model::queueNotify);
        } catch (NativeException e) {
            failure("cannot wait for kicks: " + e.getMessage());
        }
    }

    /** The device model found the driver's ring unusable: log it and tell the front-end (SET_VRING_ERR fds). */
    void failure(String reason) {
        LOG.log(Level.WARNING, "{0}: device needs reset: {1}", name, reason);
        onRingError.run();
        Events.RingError event = new Events.RingError();
        event.session = name;
        event.reason = reason;
        event.commit();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment one = a.allocate(8);
            MemorySegment state = Posix.callState(a);
            for (Vring r : rings) {
                r.signalError(one, state);
            }
        }
    }
}
