package io.jvirtio.devices.net;

import java.lang.foreign.MemorySegment;

/**
 * Where a NIC's frames go: a port of a {@link VirtualSwitch}, a TAP device, ... Frames are passed as
 * the first {@code length} bytes of a segment that is valid only during the call, so nothing is
 * allocated per frame: whoever keeps a frame copies it.
 */
public interface NetBackend extends AutoCloseable {
    /** Receives frames for the NIC. */
    @FunctionalInterface
    interface Receiver {
        void receive(MemorySegment buffer, long length);
    }

    /** Sends one Ethernet frame (without FCS): the first {@code length} bytes of {@code buffer}. */
    void transmit(MemorySegment buffer, long length);

    /** Frames for the NIC arrive at {@code receiver}, on whatever thread the backend uses. */
    void connect(Receiver receiver);

    @Override
    default void close() {
    }
}
