package io.jvirtio.drivers.console;

import io.jvirtio.bus.QueueSpec;
import io.jvirtio.bus.VirtioDevice;
import io.jvirtio.bus.VirtioDriver;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.core.spec.Feature;

import java.util.List;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Consumer;

/** The console driver (Linux {@code virtio_console}, single port): offers each console as streams. */
public final class ConsoleDriver implements VirtioDriver {
    private final List<VirtioConsole> consoles = new CopyOnWriteArrayList<>();
    private final Consumer<VirtioConsole> onProbe;

    public ConsoleDriver() {
        this(c -> { });
    }

    public ConsoleDriver(Consumer<VirtioConsole> onProbe) {
        this.onProbe = onProbe;
    }

    @Override
    public String name() {
        return "virtio_console";
    }

    @Override
    public Set<DeviceType> idTable() {
        return Set.of(DeviceType.CONSOLE);
    }

    @Override
    public long features() {
        return Feature.maskOf(Feature.CONSOLE_SIZE, Feature.CONSOLE_EMERG_WRITE);
    }

    @Override
    public void probe(VirtioDevice device) throws Exception {
        VirtioConsole[] holder = new VirtioConsole[1];
        List<DriverQueue<Object>> qs = device.findQueues(List.of(
                new QueueSpec("receiveq0", 0, q -> holder[0].received()),
                new QueueSpec("transmitq0", 0, q -> holder[0].transmitted())));
        holder[0] = new VirtioConsole(device, qs.get(0), qs.get(1));
        device.setDriverData(holder[0]);
        device.ready();
        holder[0].start();
        consoles.add(holder[0]);
        onProbe.accept(holder[0]);
    }

    @Override
    public void remove(VirtioDevice device) {
        VirtioConsole c = (VirtioConsole) device.driverData();
        device.config().reset();
        c.detach();
        consoles.remove(c);
    }

    @Override
    public void configChanged(VirtioDevice device) {
        VirtioConsole c = (VirtioConsole) device.driverData();
        if (c != null) {
            c.refreshSize();
        }
    }

    public List<VirtioConsole> consoles() {
        return List.copyOf(consoles);
    }
}
