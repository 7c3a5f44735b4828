package io.jvirtio.cli.conform;

import io.jvirtio.core.spec.DeviceType;

import java.nio.file.Path;

/**
 * The back-end under test: its socket, the device type it serves, and what it offered on a first
 * connection (virtio features with VHOST_USER_F_PROTOCOL_FEATURES, and the protocol features).
 */
record Target(Path socket, DeviceType device, long features, long protocolFeatures) {
    boolean hasProtocol(int bit) {
        return (protocolFeatures & (1L << bit)) != 0;
    }
}
