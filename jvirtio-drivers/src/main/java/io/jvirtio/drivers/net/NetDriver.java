package io.jvirtio.drivers.net;

import io.jvirtio.core.spec.Net;
import io.jvirtio.bus.QueueSpec;
import io.jvirtio.bus.VirtioDevice;
import io.jvirtio.bus.VirtioDriver;
import io.jvirtio.core.queue.DriverQueue;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.core.spec.Feature;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Consumer;

/**
 * The network driver (Linux {@code virtio_net}): reads MAC, status and queue pairs (§5.1.4), sets up the
 * receive/transmit pairs and the control queue, fills the receive rings, and offers each NIC as a
 * {@link VirtioNet}.
 */
public final class NetDriver implements VirtioDriver {
    private final List<VirtioNet> nics = new CopyOnWriteArrayList<>();
    private final Consumer<VirtioNet> onProbe;

    public NetDriver() {
        this(n -> { });
    }

    public NetDriver(Consumer<VirtioNet> onProbe) {
        this.onProbe = onProbe;
    }

    @Override
    public String name() {
        return "virtio_net";
    }

    @Override
    public Set<DeviceType> idTable() {
        return Set.of(DeviceType.NET);
    }

    @Override
    public long features() {
        return Feature.maskOf(Feature.NET_MAC, Feature.NET_STATUS, Feature.NET_MRG_RXBUF, Feature.NET_CTRL_VQ,
                Feature.NET_CTRL_RX, Feature.NET_CTRL_MAC_ADDR, Feature.NET_MQ, Feature.NET_MTU);
    }

    @Override
    public void probe(VirtioDevice device) throws Exception {
        int pairs = device.hasFeature(Feature.NET_MQ) ? Math.max(1, (int) device.readConfigField(Net.CFG_MAX_VIRTQUEUE_PAIRS, 2)) : 1;
        VirtioNet[] holder = new VirtioNet[1];
        List<QueueSpec> specs = new ArrayList<>();
        for (int p = 0; p < pairs; p++) {
            int pi = p;
            specs.add(new QueueSpec("input." + p, 0, q -> holder[0].received(pi)));
            specs.add(new QueueSpec("output." + p, 0, q -> holder[0].transmitted(pi)));
        }
        boolean ctrl = device.hasFeature(Feature.NET_CTRL_VQ);
        if (ctrl) {
            // §5.1.2: the control queue follows the pairs, at index 2 × (max_virtqueue_pairs with MQ, else 1).
            specs.add(new QueueSpec("control", 64, q -> holder[0].controlDone()));
        }
        List<DriverQueue<Object>> queues = device.findQueues(specs);
        holder[0] = new VirtioNet(device, queues, pairs, ctrl);
        device.setDriverData(holder[0]);
        device.ready();
        holder[0].start();
        nics.add(holder[0]);
        onProbe.accept(holder[0]);
    }

    @Override
    public void remove(VirtioDevice device) {
        VirtioNet nic = (VirtioNet) device.driverData();
        device.config().reset();
        nic.detach();
        nics.remove(nic);
    }

    @Override
    public void configChanged(VirtioDevice device) {
        VirtioNet nic = (VirtioNet) device.driverData();
        if (nic != null) {
            nic.refreshStatus();
        }
    }

    public List<VirtioNet> nics() {
        return List.copyOf(nics);
    }
}
