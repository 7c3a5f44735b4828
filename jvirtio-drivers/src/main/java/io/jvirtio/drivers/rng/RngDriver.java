package io.jvirtio.drivers.rng;

import io.jvirtio.bus.QueueSpec;
import io.jvirtio.bus.VirtioDevice;
import io.jvirtio.bus.VirtioDriver;
import io.jvirtio.core.spec.DeviceType;

import java.util.List;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Consumer;

/** The entropy driver (Linux {@code virtio-rng}): binds entropy devices and offers {@link VirtioRng}. */
public final class RngDriver implements VirtioDriver {
    private final List<VirtioRng> devices = new CopyOnWriteArrayList<>();
    private final Consumer<VirtioRng> onProbe;

    public RngDriver() {
        this(r -> { });
    }

    /** @param onProbe called with each device's API once it is live */
    public RngDriver(Consumer<VirtioRng> onProbe) {
        this.onProbe = onProbe;
    }

    @Override
    public String name() {
        return "virtio_rng";
    }

    @Override
    public Set<DeviceType> idTable() {
        return Set.of(DeviceType.ENTROPY);
    }

    @Override
    public long features() {
        return 0;
    }

    @Override
    public void probe(VirtioDevice device) throws Exception {
        VirtioRng[] holder = new VirtioRng[1];
        var queues = device.findQueues(List.of(new QueueSpec("input", 0, q -> holder[0].complete())));
        holder[0] = new VirtioRng(device, queues.getFirst());
        device.setDriverData(holder[0]);
        device.ready();
        devices.add(holder[0]);
        onProbe.accept(holder[0]);
    }

    @Override
    public void remove(VirtioDevice device) {
        VirtioRng rng = (VirtioRng) device.driverData();
        device.config().reset();
        rng.detach();
        devices.remove(rng);
    }

    public List<VirtioRng> devices() {
        return List.copyOf(devices);
    }
}
