package io.jvirtio.transport.pci;

import io.jvirtio.bus.TransportException;
import io.jvirtio.bus.VirtioBus;
import io.jvirtio.bus.VirtioDevice;

import java.lang.System.Logger.Level;
import java.lang.System.Logger;
import java.util.ArrayList;
import java.util.List;

import static io.jvirtio.transport.pci.VirtioPciCap.*;

/**
 * The driver side of virtio over PCI (Linux {@code virtio_pci_modern}): enumerates bus 0, recognises
 * virtio functions by vendor and device id (§4.1.2), assigns their BARs when firmware has not, finds
 * and checks the virtio capabilities (§4.1.4), and registers each device on the {@link VirtioBus} with
 * a {@link VirtioPciConfigOps}.
 */
public final class VirtioPciDriver {
    private static final Logger LOG = System.getLogger(VirtioPciDriver.class.getName());

    private final PciHost host;
    private final VirtioBus bus;
    private final boolean forceLegacy;
    private final List<Probed> probed = new ArrayList<>();

    /** One function found on the bus, as lspci would list it. */
    public record Probed(int slot, int vendor, int device, int subsystem, int revision, int virtioId,
                         VirtioDevice virtioDevice, List<String> capabilities) {
        public String bdf() {
            return Pci.bdf(slot, 0);
        }
    }

    public VirtioPciDriver(PciHost host, VirtioBus bus) {
        this(host, bus, false);
    }

    /**
     * @param forceLegacy drive transitional devices through their legacy I/O BAR even though they have
     *                    the modern capabilities (Linux's {@code virtio_pci.force_legacy=1})
     */
    public VirtioPciDriver(PciHost host, VirtioBus bus, boolean forceLegacy) {
        this.host = host;
        this.bus = bus;
        this.forceLegacy = forceLegacy;
    }

    /** Scans devices 0..31 of bus 0 and registers every virtio function found. */
    public List<Probed> scan() {
        List<Probed> found = new ArrayList<>();
        for (int slot = 0; slot < 32; slot++) {
            int s = slot;
            if (probed.stream().anyMatch(p -> p.slot() == s)) {
                continue; // a rescan (after a hot-plug) leaves the functions it already drives alone
            }
            int vendor = host.configRead(slot, Pci.VENDOR_ID, 2);
            if (vendor == 0xffff || vendor == -1 || vendor == 0) {
                continue;
            }
            int device = host.configRead(slot, Pci.DEVICE_ID, 2);
            if (vendor != Pci.VIRTIO_VENDOR || device < Pci.VIRTIO_TRANSITIONAL_FIRST || device > 0x107f) {
                continue;
            }
            try {
                Probed p = probe(slot, device);
                found.add(p);
                probed.add(p);
            } catch (TransportException e) {
                LOG.log(Level.WARNING, "{0}: not driven: {1}", Pci.bdf(slot, 0), e.getMessage());
            }
        }
        return found;
    }

    public List<Probed> probed() {
        return List.copyOf(probed);
    }

    /** Hot-unplug of the function at {@code slot}: the bus removes the driver, then the device. */
    public void unplug(int slot) {
        probed.removeIf(p -> {
            if (p.slot() == slot) {
                bus.unregisterDevice(p.virtioDevice());
                return true;
            }
            return false;
        });
    }

    private Probed probe(int slot, int device) throws TransportException {
        int subsystem = host.configRead(slot, Pci.SUBSYSTEM_ID, 2);
        int revision = host.configRead(slot, Pci.REVISION_ID, 1);
        // §4.1.2: modern ids carry the type; transitional ids carry it in the subsystem id.
        int virtioId = device >= Pci.VIRTIO_MODERN_BASE ? device - Pci.VIRTIO_MODERN_BASE : subsystem;
        long[] barSizes = new long[Pci.BAR_COUNT];
        long[] bars = assignBars(slot, barSizes);
        int cmd = host.configRead(slot, Pci.COMMAND, 2);
        host.configWrite(slot, Pci.COMMAND, 2, cmd | Pci.COMMAND_MEMORY | Pci.COMMAND_IO | Pci.COMMAND_MASTER);

        Region common = null, isr = null, deviceCfg = null, notify = null;
        int notifyMultiplier = 0;
        int msixCap = 0;
        List<String> caps = new ArrayList<>();
        if ((host.configRead(slot, Pci.STATUS, 2) & Pci.STATUS_CAP_LIST) == 0) {
            throw new TransportException("no capability list");
        }
        int at = host.configRead(slot, Pci.CAPABILITY_LIST, 1) & 0xfc;
        for (int hops = 0; at != 0 && hops < 48; hops++) {
            int id = host.configRead(slot, at, 1);
            int next = host.configRead(slot, at + 1, 1) & 0xfc;
            if (id == Pci.CAP_ID_MSIX) {
                msixCap = at;
                caps.add(String.format("[%02x] MSI-X: table size %d", at,
                        (host.configRead(slot, at + Pci.MSIX_CONTROL, 2) & 0x7ff) + 1));
            } else if (id == Pci.CAP_ID_VNDR) {
                int type = host.configRead(slot, at + CFG_TYPE, 1);
                int bar = host.configRead(slot, at + BAR, 1);
                long offset = host.configRead(slot, at + OFFSET, 4) & 0xffffffffL;
                long length = host.configRead(slot, at + LENGTH, 4) & 0xffffffffL;
                caps.add(String.format("[%02x] virtio %s: BAR%d +0x%x, %d bytes", at, capName(type), bar, offset, length));
                // §4.1.4.1: the driver MUST ignore a structure with a reserved cfg_type or bar (the bar byte
                // of other types, e.g. vendor data, means something else) and SHOULD use the first of each
                // type it can use; one that does not fit its BAR is skipped as Linux does.
                Region r = type >= COMMON_CFG && type <= DEVICE_CFG && bar < Pci.BAR_COUNT
                        ? region(bars, barSizes, bar, offset, length, capName(type)) : null;
                if (r != null) {
                    switch (type) {
                        case COMMON_CFG -> { if (common == null) common = r; }
                        case ISR_CFG -> { if (isr == null) isr = r; }
                        case DEVICE_CFG -> { if (deviceCfg == null) deviceCfg = r; }
                        default -> {
                            if (notify == null) {
                                notify = r;
                                notifyMultiplier = host.configRead(slot, at + NOTIFY_OFF_MULTIPLIER, 4);
                            }
                        }
                    }
                }
            }
            at = next;
        }
        boolean modern = common != null && isr != null && notify != null;
        boolean transitional = device <= Pci.VIRTIO_TRANSITIONAL_LAST;
        boolean legacyBar = transitional && (host.configRead(slot, Pci.BAR0, 4) & Pci.BAR_IO) != 0 && bars[0] != 0;
        Registers regs;
        if (modern && !(forceLegacy && legacyBar)) {
            if (common.length() < COMMON_CFG_SIZE - 4) {
                throw new TransportException("common configuration is " + common.length() + " bytes, too short");
            }
            regs = new ModernRegisters(host, common, isr, deviceCfg, notify, notifyMultiplier);
        } else if (legacyBar) {
            // §4.1.2.3 / §4.1.4.10: a transitional device driven through its legacy I/O BAR.
            regs = new LegacyRegisters(host, slot, bars[0], msixCap);
        } else {
            throw new TransportException("missing virtio capability (common " + (common != null) + ", isr "
                    + (isr != null) + ", notify " + (notify != null) + ") and no legacy I/O BAR");
        }
        VirtioPciConfigOps ops = new VirtioPciConfigOps(host, slot, regs, msixCap);
        VirtioDevice dev = bus.registerDevice(virtioId, ops);
        ops.attach(bus, dev);
        return new Probed(slot, Pci.VIRTIO_VENDOR, device, subsystem, revision, virtioId, dev, caps);
    }

    /** Firmware's job where it was not done: size each BAR (write all ones, read back) and place it. */
    private long[] assignBars(int slot, long[] sizes) {
        long[] base = new long[Pci.BAR_COUNT];
        for (int bar = 0; bar < Pci.BAR_COUNT; bar++) {
            int reg = Pci.BAR0 + 4 * bar;
            int orig = host.configRead(slot, reg, 4);
            boolean io = (orig & Pci.BAR_IO) != 0;
            boolean is64 = !io && (orig & 0x6) == Pci.BAR_MEM_TYPE_64;
            int origHigh = is64 ? host.configRead(slot, reg + 4, 4) : 0;
            host.configWrite(slot, reg, 4, 0xffffffff);
            long mask = host.configRead(slot, reg, 4) & 0xffffffffL;
            if (is64) {
                host.configWrite(slot, reg + 4, 4, 0xffffffff);
                mask |= (host.configRead(slot, reg + 4, 4) & 0xffffffffL) << 32;
            } else {
                mask |= 0xffffffff00000000L;
            }
            long sizeMask = mask & (io ? ~0x3L : ~0xfL);
            if (sizeMask == 0 || sizeMask == 0xffffffff00000000L) {
                host.configWrite(slot, reg, 4, orig);
                if (is64) {
                    host.configWrite(slot, reg + 4, 4, origHigh);
                    bar++;
                }
                continue;
            }
            long size = -sizeMask;
            long current = (orig & (io ? ~0x3L : ~0xfL)) & 0xffffffffL;
            if (is64) {
                current |= (origHigh & 0xffffffffL) << 32;
            }
            long addr = current != 0 ? current : host.allocateBarSpace(size, io);
            host.configWrite(slot, reg, 4, (int) addr);
            if (is64) {
                host.configWrite(slot, reg + 4, 4, (int) (addr >>> 32));
            }
            base[bar] = addr;
            sizes[bar] = size;
            if (is64) {
                bar++;
            }
        }
        return base;
    }

    /** A capability's structure, checked to lie inside its BAR. */
    record Region(long address, long length) {
    }

    /** A capability's structure if it lies inside a memory BAR that exists, else null (logged). */
    private static Region region(long[] bars, long[] sizes, int bar, long offset, long length, String what) {
        if (bars[bar] == 0) {
            LOG.log(Level.DEBUG, "{0} capability names BAR{1}, which is not present: ignored", what, bar);
            return null;
        }
        if (offset + length > sizes[bar] || offset + length < offset) {
            LOG.log(Level.WARNING, String.format("%s capability 0x%x+%d overruns BAR%d of %d bytes: ignored", what,
                    offset, length, bar, sizes[bar]));
            return null;
        }
        return new Region(bars[bar] + offset, length);
    }

    static String capName(int type) {
        return switch (type) {
            case COMMON_CFG -> "common-cfg";
            case NOTIFY_CFG -> "notify";
            case ISR_CFG -> "isr";
            case DEVICE_CFG -> "device-cfg";
            case PCI_CFG -> "pci-cfg";
            default -> "type " + type;
        };
    }
}
