package io.jvirtio.drivers.blk;

import io.jvirtio.core.spec.Blk;
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
 * The block driver (Linux {@code virtio_blk}): reads the configuration (§5.2.4), sets up one or
 * {@code num_queues} request queues, and offers each disk as a {@link VirtioBlock}.
 */
public final class BlkDriver implements VirtioDriver {
    /** Offsets in struct virtio_blk_config the driver reads. */

    private final List<VirtioBlock> disks = new CopyOnWriteArrayList<>();
    private final Consumer<VirtioBlock> onProbe;

    public BlkDriver() {
        this(b -> { });
    }

    /** @param onProbe called with each disk once it is live */
    public BlkDriver(Consumer<VirtioBlock> onProbe) {
        this.onProbe = onProbe;
    }

    @Override
    public String name() {
        return "virtio_blk";
    }

    @Override
    public Set<DeviceType> idTable() {
        return Set.of(DeviceType.BLOCK);
    }

    @Override
    public long features() {
        return Feature.maskOf(Feature.BLK_SIZE_MAX, Feature.BLK_SEG_MAX, Feature.BLK_BLK_SIZE, Feature.BLK_FLUSH, Feature.BLK_TOPOLOGY,
                Feature.BLK_RO, Feature.BLK_MQ, Feature.BLK_DISCARD, Feature.BLK_WRITE_ZEROES);
    }

    @Override
    public void probe(VirtioDevice device) throws Exception {
        long capacity = device.readConfigField(Blk.CFG_CAPACITY, 8);
        int blockSize = device.hasFeature(Feature.BLK_BLK_SIZE) ? (int) device.readConfigField(Blk.CFG_BLK_SIZE, 4) : 512;
        int nq = device.hasFeature(Feature.BLK_MQ) ? Math.max(1, (int) device.readConfigField(Blk.CFG_NUM_QUEUES, 2)) : 1;
        VirtioBlock[] holder = new VirtioBlock[1];
        List<QueueSpec> specs = new ArrayList<>();
        for (int i = 0; i < nq; i++) {
            int qi = i;
            specs.add(new QueueSpec("req." + i, 0, q -> holder[0].complete(qi)));
        }
        List<DriverQueue<Object>> queues = device.findQueues(specs);
        // §5.2.4: size_max bounds each data segment, seg_max their number per request.
        long sizeMax = device.hasFeature(Feature.BLK_SIZE_MAX) ? device.readConfigField(Blk.CFG_SIZE_MAX, 4) : 0;
        long segMax = device.hasFeature(Feature.BLK_SEG_MAX) ? device.readConfigField(Blk.CFG_SEG_MAX, 4) : 0;
        holder[0] = new VirtioBlock(device, queues, capacity, blockSize,
                sizeMax >= 512 ? (int) Math.min(sizeMax, Integer.MAX_VALUE) & ~511 : Integer.MAX_VALUE & ~511,
                segMax > 0 ? (int) Math.min(segMax, 1024) : 1);
        device.setDriverData(holder[0]);
        device.ready();
        disks.add(holder[0]);
        onProbe.accept(holder[0]);
    }

    @Override
    public void remove(VirtioDevice device) {
        VirtioBlock disk = (VirtioBlock) device.driverData();
        device.config().reset();
        disk.detach();
        disks.remove(disk);
    }

    @Override
    public void needsReset(VirtioDevice device) {
        VirtioBlock disk = (VirtioBlock) device.driverData();
        if (disk != null) {
            disk.fail(new java.io.IOException(device + ": device needs reset (DEVICE_NEEDS_RESET); request abandoned"));
        }
    }

    @Override
    public void configChanged(VirtioDevice device) {
        VirtioBlock disk = (VirtioBlock) device.driverData();
        if (disk != null) {
            disk.refreshCapacity();
        }
    }

    public List<VirtioBlock> disks() {
        return List.copyOf(disks);
    }
}
