package io.jvirtio.devices.net;

import java.util.function.Consumer;

/** Where a NIC's frames go: a port of a {@link VirtualSwitch}, a TAP device, ... */
public interface NetBackend extends AutoCloseable {
    /** Sends one Ethernet frame (without FCS) out of the NIC. The array is the backend's to keep. */
    void transmit(byte[] frame);

    /** Frames for the NIC arrive at {@code receiver}, on whatever thread the backend uses. */
    void connect(Consumer<byte[]> receiver);

    @Override
    default void close() {
    }
}
