package io.jvirtio.machine;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.core.spec.Conformance;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.MemoryBackend;
import io.jvirtio.drivers.blk.BlkDriver;
import io.jvirtio.drivers.blk.VirtioBlock;
import io.jvirtio.transport.pci.Pci;
import io.jvirtio.transport.pci.PciFunction;
import io.jvirtio.transport.pci.PciInterrupts;
import io.jvirtio.transport.pci.VirtioPciCap;
import io.jvirtio.transport.pci.VirtioPciDevice;
import io.jvirtio.transport.pci.VirtioPciDriver;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * §4.1.4: a device may carry vendor-specific capabilities the driver does not know — vendor data
 * (cfg_type 9, whose {@code bar} byte is not a BAR), reserved cfg_types, reserved bar numbers, a structure
 * that does not fit its BAR. The driver ignores them and uses the first usable structure of each type.
 */
class PciCapabilityTest {
    /** Extra capabilities in the free part of config space (0xb0..0xff: five), ahead of the device's own list. */
    static final int EXTRA = 0xb0;

    /** A real virtio-pci function whose capability list starts with {@code extra} foreign capabilities. */
    static final class WithForeignCaps implements PciFunction {
        final VirtioPciDevice inner;
        final byte[] overlay = new byte[4096];
        final boolean[] present = new boolean[4096];

        WithForeignCaps(VirtioPciDevice inner, int[][] caps) {
            this.inner = inner;
            int at = EXTRA;
            put(Pci.CAPABILITY_LIST, at);
            for (int i = 0; i < caps.length; i++) {
                int next = i + 1 < caps.length ? at + 16 : inner.configRead(Pci.CAPABILITY_LIST, 1);
                put(at, Pci.CAP_ID_VNDR);
                put(at + 1, next);
                put(at + VirtioPciCap.CAP_LEN, 16);
                put(at + VirtioPciCap.CFG_TYPE, caps[i][0]);
                put(at + VirtioPciCap.BAR, caps[i][1]);
                for (int b = 0; b < 4; b++) {
                    put(at + VirtioPciCap.OFFSET + b, caps[i][2] >>> (8 * b));
                    put(at + VirtioPciCap.LENGTH + b, caps[i][3] >>> (8 * b));
                }
                at += 16;
            }
        }

        private void put(int at, int v) {
            overlay[at] = (byte) v;
            present[at] = true;
        }

        public int configRead(int offset, int size) {
            int v = inner.configRead(offset, size);
            for (int i = 0; i < size; i++) {
                if (present[offset + i]) {
                    v = (v & ~(0xff << (8 * i))) | ((overlay[offset + i] & 0xff) << (8 * i));
                }
            }
            return v;
        }

        public void configWrite(int offset, int size, int value) { inner.configWrite(offset, size, value); }
        public long barRead(int bar, long offset, int size) { return inner.barRead(bar, offset, size); }
        public void barWrite(int bar, long offset, int size, long value) { inner.barWrite(bar, offset, size, value); }
        public long barAddress(int bar) { return inner.barAddress(bar); }
        public long barSize(int bar) { return inner.barSize(bar); }
        public boolean barIsIo(int bar) { return inner.barIsIo(bar); }
        public void connect(PciInterrupts interrupts) { inner.connect(interrupts); }
    }

    @Test
    @Conformance({"pci-drv-4", "pci-drv-5", "pci-drv-7", "pci-drv-10"})
    void foreignCapabilitiesAreIgnoredAndTheFirstUsableOfEachTypeIsUsed() throws Exception {
        try (Machine machine = new Machine(64 << 20)) {
            BlkDevice model = new BlkDevice(new MemoryBackend(1 << 20, false));
            VirtioPciDevice dev = new VirtioPciDevice(model, machine.memory(), "00:05.0", 2, false);
            machine.plug(5, new WithForeignCaps(dev, new int[][] {
                    {9, 0x37, 0x1af4, 0},                       // vendor data: its "bar" byte is an id, not a BAR
                    {VirtioPciCap.COMMON_CFG, 6, 0, 0x1000},   // reserved bar value
                    {0x20, 0, 0, 0x1000},                       // reserved cfg_type
                    {VirtioPciCap.ISR_CFG, 0, 0, 0x1000},       // BAR0 is not implemented: unusable
                    {VirtioPciCap.DEVICE_CFG, 4, 0x7fff_fff0, 0x1000}, // overruns its BAR
            }));
            VirtioBus bus = new VirtioBus();
            BlkDriver blk = new BlkDriver();
            bus.registerDriver(blk);
            var probed = new VirtioPciDriver(machine, bus).scan();

            assertThat(probed).hasSize(1);
            assertThat(probed.getFirst().capabilities()).anyMatch(c -> c.contains("type 9"));
            VirtioBlock disk = blk.disks().getFirst();
            assertThat(disk.capacitySectors()).isEqualTo(2048); // device cfg came from the device's own structure
            MemorySegment buf = disk.allocateBuffer(4096);
            buf.fill((byte) 0x5a);
            disk.write(8, buf).get(10, TimeUnit.SECONDS);
            MemorySegment back = disk.allocateBuffer(4096);
            disk.read(8, back).get(10, TimeUnit.SECONDS);
            assertThat(back.mismatch(buf)).isEqualTo(-1);
        }
    }

    /** The function with some config-space bytes replaced: an id, a revision, a capability's length fields. */
    static WithForeignCaps overlaid(VirtioPciDevice dev, int[][] bytes) {
        WithForeignCaps f = new WithForeignCaps(dev, new int[0][]);
        f.present[Pci.CAPABILITY_LIST] = false; // the device's own list, unchanged
        for (int[] b : bytes) {
            f.overlay[b[0]] = (byte) b[1];
            f.present[b[0]] = true;
        }
        return f;
    }

    @Test
    @Conformance({"pci-drv-1", "pci-drv-2", "pci-drv-6", "pci-drv-8"})
    void anyRevisionLargerCapLenAndLengthAreAcceptedAndOnlyVirtioIdsAreMatched() throws Exception {
        try (Machine machine = new Machine(64 << 20)) {
            VirtioPciDevice dev = new VirtioPciDevice(new BlkDevice(new MemoryBackend(1 << 20, false)), machine.memory(),
                    "00:05.0", 2, false);
            PciRulesTest.Cap common = PciRulesTest.Cap.find(dev, VirtioPciCap.COMMON_CFG);
            PciRulesTest.Cap device = PciRulesTest.Cap.find(dev, VirtioPciCap.DEVICE_CFG);
            machine.plug(5, overlaid(dev, new int[][] {
                    {Pci.REVISION_ID, 0x37},                              // any revision
                    {common.at() + VirtioPciCap.CAP_LEN, 0x20},           // a longer cap_len
                    {device.at() + VirtioPciCap.LENGTH + 1, 0x08},        // a device cfg of 2 KiB+: larger than needed
            }));
            VirtioPciDevice other = new VirtioPciDevice(new BlkDevice(new MemoryBackend(1 << 20, false)), machine.memory(),
                    "00:06.0", 2, false);
            machine.plug(6, overlaid(other, new int[][] {{Pci.DEVICE_ID, 0x80}, {Pci.DEVICE_ID + 1, 0x10}})); // 0x1080
            VirtioBus bus = new VirtioBus();
            BlkDriver blk = new BlkDriver();
            bus.registerDriver(blk);
            var probed = new VirtioPciDriver(machine, bus).scan();
            assertThat(probed).extracting(VirtioPciDriver.Probed::slot).as("0x1080 is not a virtio id").containsExactly(5);
            assertThat(probed.getFirst().revision()).isEqualTo(0x37);
            VirtioBlock disk = blk.disks().getFirst();
            MemorySegment buf = disk.allocateBuffer(512);
            disk.read(0, buf).get(10, TimeUnit.SECONDS);
        }
    }
}
