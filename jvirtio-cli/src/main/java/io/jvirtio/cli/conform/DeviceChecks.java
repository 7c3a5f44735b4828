package io.jvirtio.cli.conform;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.spec.DeviceType;
import io.jvirtio.drivers.blk.BlkDriver;
import io.jvirtio.drivers.blk.VirtioBlock;
import io.jvirtio.drivers.rng.RngDriver;
import io.jvirtio.vhostuser.VhostUserFrontend;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.TimeUnit;

/**
 * The device type's own rules, through real requests: jvirtio's front-end and drivers where the request
 * is a well-formed one, a hand-built ring where it is not.
 */
final class DeviceChecks {
    static final long BASE = 0x1_0000_0000L;
    static final long RAM = 64L << 20;

    private DeviceChecks() {
    }

    static List<Check> all() {
        return List.of(
                new Check("blk-io", "written sectors read back the same; FLUSH completes", Set.of(DeviceType.BLOCK), false,
                        DeviceChecks::blkIo),
                new Check("blk-get-id", "GET_ID answers at most 20 bytes", Set.of(DeviceType.BLOCK), false,
                        DeviceChecks::blkGetId),
                new Check("blk-beyond-capacity", "a read past the capacity completes with IOERR", Set.of(DeviceType.BLOCK),
                        true, (t, id) -> blkRaw(t, id, "a read at the capacity", true)),
                new Check("blk-short-header", "a request with an 8-byte header completes with IOERR or is reported as a broken ring",
                        Set.of(DeviceType.BLOCK), true, (t, id) -> blkRaw(t, id, "an 8-byte header", false)),
                new Check("rng-read", "entropy requests are filled, and not with a constant", Set.of(DeviceType.ENTROPY),
                        false, DeviceChecks::rngRead));
    }

    /** jvirtio's virtio bus and driver over the back-end. */
    private interface WithBus {
        Result run(VirtioBus bus) throws Exception;
    }

    private static Result driven(Target t, Object driver, WithBus body) throws Exception {
        try (GuestMemory mem = GuestMemory.memfd(BASE, RAM);
             VhostUserFrontend fe = VhostUserFrontend.connect(t.socket(), mem, new GuestAllocator(mem, BASE, RAM))) {
            VirtioBus bus = new VirtioBus();
            bus.registerDriver((io.jvirtio.bus.VirtioDriver) driver);
            var dev = bus.registerDevice(t.device().id(), fe);
            try {
                return body.run(bus);
            } finally {
                bus.unregisterDevice(dev);
            }
        }
    }

    private static Result blkIo(Target t, String id) throws Exception {
        BlkDriver blk = new BlkDriver();
        return driven(t, blk, bus -> {
            if (blk.disks().isEmpty()) {
                return Result.fail(id, "the block driver could not bind: " + bus.events().getLast());
            }
            VirtioBlock disk = blk.disks().getFirst();
            if (disk.capacitySectors() < 256) {
                return Result.skip(id, "disk of " + disk.capacitySectors() + " sectors is too small to test");
            }
            if (disk.readOnly()) {
                return Result.skip(id, "read-only disk");
            }
            MemorySegment out = disk.allocateBuffer(65536);
            byte[] pattern = new byte[65536];
            new Random(7).nextBytes(pattern);
            MemorySegment.copy(pattern, 0, out, ValueLayout.JAVA_BYTE, 0, pattern.length);
            long sector = disk.capacitySectors() - 128;
            MemorySegment saved = disk.allocateBuffer(65536);
            disk.read(sector, saved).get(10, TimeUnit.SECONDS);
            disk.write(sector, out).get(10, TimeUnit.SECONDS);
            disk.flush().get(10, TimeUnit.SECONDS);
            MemorySegment back = disk.allocateBuffer(65536);
            disk.read(sector, back).get(10, TimeUnit.SECONDS);
            long mismatch = back.mismatch(out);
            disk.write(sector, saved).get(10, TimeUnit.SECONDS); // leave the disk as it was
            disk.flush().get(10, TimeUnit.SECONDS);
            return mismatch == -1 ? Result.pass(id, "64 KiB at sector " + sector + " written, flushed, read back")
                    : Result.fail(id, "64 KiB read back differs at byte " + mismatch);
        });
    }

    private static Result blkGetId(Target t, String id) throws Exception {
        BlkDriver blk = new BlkDriver();
        return driven(t, blk, bus -> {
            String serial = blk.disks().getFirst().id().get(10, TimeUnit.SECONDS);
            return serial.length() <= 20 ? Result.pass(id, "'" + serial + "'") : Result.fail(id, "'" + serial + "'");
        });
    }

    /** A read of one sector with a hand-built header: at the capacity, or with a header of 8 bytes. */
    private static Result blkRaw(Target t, String id, String what, boolean pastEnd) throws Exception {
        long[] capacity = new long[1];
        BlkDriver blk = new BlkDriver();
        Result unbound = driven(t, blk, bus -> {
            if (blk.disks().isEmpty()) {
                return Result.fail(id, "the block driver could not bind: " + bus.events().getLast());
            }
            capacity[0] = blk.disks().getFirst().capacitySectors();
            return null;
        });
        if (unbound != null) {
            return unbound;
        }
        try (RawRing r = new RawRing(t)) {
            long hdr = 0x8000, data = 0x9000, status = 0xa000;
            r.mem.writeU32(hdr, 0); // VIRTIO_BLK_T_IN
            r.mem.writeU32(hdr + 4, 0);
            r.mem.writeU64(hdr + 8, pastEnd ? capacity[0] : 0);
            r.mem.write(status, new byte[] {(byte) 0xee}, 0, 1);
            r.desc(0, hdr, pastEnd ? 16 : 8, RawRing.F_NEXT, 1);
            r.desc(1, data, 512, RawRing.F_NEXT | RawRing.F_WRITE, 2);
            r.desc(2, status, 1, RawRing.F_WRITE, 0);
            r.offer(0);
            r.start();
            if (!r.awaitUsed(1, 5000)) {
                // A driver that breaks a MUST may get DEVICE_NEEDS_RESET instead of an answer; what it may not
                // get is silence: a request that hangs with no error anywhere.
                return !pastEnd && r.errSignalled(0) ? Result.pass(id, what + ": reported on the err eventfd")
                        : Result.fail(id, what + ": neither completed nor reported on the err eventfd within 5 s");
            }
            int st = r.mem.slice(status, 1).get(ValueLayout.JAVA_BYTE, 0) & 0xff;
            return st == 1 ? Result.pass(id, what + ": IOERR")
                    : Result.fail(id, what + ": status " + (st == 0xee ? "not written" : st) + ", expected IOERR (1)");
        }
    }

    private static Result rngRead(Target t, String id) throws Exception {
        RngDriver rng = new RngDriver();
        return driven(t, rng, bus -> {
            byte[] b = new byte[4096];
            rng.devices().getFirst().read(b);
            long distinct = java.util.stream.IntStream.range(0, b.length).map(i -> b[i]).distinct().count();
            return distinct > 64 ? Result.pass(id, distinct + " distinct byte values in 4 KiB")
                    : Result.fail(id, "only " + distinct + " distinct byte values in 4 KiB");
        });
    }
}
