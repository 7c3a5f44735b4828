package io.jvirtio.cli.conform;

import io.jvirtio.core.spec.DeviceType;

import java.util.Set;

/**
 * One graded rule: an id, what it checks, the device types it applies to (empty: all), whether it is
 * hostile (the back-end must still serve a fresh connection afterwards), and the check itself, which
 * runs on connections of its own.
 */
record Check(String id, String title, Set<DeviceType> devices, boolean hostile, Body body) {
    @FunctionalInterface
    interface Body {
        Result run(Target target, String id) throws Exception;
    }

    boolean appliesTo(DeviceType type) {
        return devices.isEmpty() || devices.contains(type);
    }
}
