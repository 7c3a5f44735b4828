package io.jvirtio.interop;

// The example of docs/devices.md, "Serving your own storage" (DevicesDocExampleTest checks the two are the same).
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.BlockBackend;
import io.jvirtio.devices.blk.BlockBackends;
import io.jvirtio.devices.blk.SyncBlockBackend;
import io.jvirtio.vhostuser.VhostUserBackend;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.concurrent.ConcurrentHashMap;

/** A disk whose 512-byte sectors live in a map; sectors never written read as zeroes. */
public final class MapStore implements SyncBlockBackend {
    final ConcurrentHashMap<Long, byte[]> sectors = new ConcurrentHashMap<>();
    private final long capacity;

    public MapStore(long capacity) { this.capacity = capacity; }
    public long capacity() { return capacity; }
    public boolean readOnly() { return false; }
    public String id() { return "map-store"; }
    public void flush() { }       // every write is in the map already

    public void read(long offset, MemorySegment dst) {
        for (long at = 0; at < dst.byteSize(); at += 512) {
            byte[] s = sectors.get((offset + at) / 512);
            if (s == null) dst.asSlice(at, 512).fill((byte) 0);
            else MemorySegment.copy(s, 0, dst, ValueLayout.JAVA_BYTE, at, 512);
        }
    }

    public void write(long offset, MemorySegment src) {
        for (long at = 0; at < src.byteSize(); at += 512)
            sectors.put((offset + at) / 512, src.asSlice(at, 512).toArray(ValueLayout.JAVA_BYTE));
    }

    public void writeZeroes(long offset, long length, boolean unmap) {
        for (long at = 0; at < length; at += 512) sectors.remove((offset + at) / 512);
    }

    /** Serves a 64 MiB MapStore as vhost-user-blk on {@code socket} until closed. */
    public static VhostUserBackend serve(Path socket) throws Exception {
        BlockBackend disk = BlockBackends.pooled(new MapStore(64 << 20), 4);  // 4 threads per queue
        return new VhostUserBackend(socket, () -> new BlkDevice(disk));
    }

    public static void main(String[] args) throws Exception {
        try (VhostUserBackend server = serve(Path.of(args[0]))) {
            Thread.currentThread().join();                                     // until killed
        }
    }
}
