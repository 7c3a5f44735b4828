package io.jvirtio.devices.net;

import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;

/**
 * A learning Ethernet switch between NICs in the machine: it remembers which port each source MAC came
 * from, forwards unicast frames to that port, and floods broadcast, multicast and unknown destinations
 * to every other port.
 */
public final class VirtualSwitch {
    private final List<Port> ports = new CopyOnWriteArrayList<>();
    private final Map<Long, Port> macTable = new ConcurrentHashMap<>();
    private final AtomicLong forwarded = new AtomicLong();
    private final AtomicLong flooded = new AtomicLong();

    /** A new port; give it to a NIC as its backend. */
    public NetBackend port() {
        Port p = new Port();
        ports.add(p);
        return p;
    }

    public long forwarded() {
        return forwarded.get();
    }

    public long flooded() {
        return flooded.get();
    }

    static long mac(byte[] f, int at) {
        long m = 0;
        for (int i = 0; i < 6; i++) {
            m = (m << 8) | (f[at + i] & 0xff);
        }
        return m;
    }

    private void switchFrame(Port from, byte[] frame) {
        if (frame.length < 14) {
            return;
        }
        long src = mac(frame, 6);
        if ((frame[6] & 1) == 0) {
            macTable.put(src, from);
        }
        if ((frame[0] & 1) == 0) {
            Port to = macTable.get(mac(frame, 0));
            if (to != null) {
                if (to != from && to.receiver != null) {
                    forwarded.incrementAndGet();
                    to.receiver.accept(frame);
                }
                return;
            }
        }
        flooded.incrementAndGet();
        for (Port p : ports) {
            if (p != from && p.receiver != null) {
                p.receiver.accept(frame.clone());
            }
        }
    }

    private final class Port implements NetBackend {
        volatile Consumer<byte[]> receiver;

        @Override
        public void transmit(byte[] frame) {
            switchFrame(this, frame);
        }

        @Override
        public void connect(Consumer<byte[]> receiver) {
            this.receiver = receiver;
        }

        @Override
        public void close() {
            ports.remove(this);
            macTable.values().removeIf(p -> p == this);
        }
    }
}
