package io.jvirtio.machine;

import io.jvirtio.bus.VirtioBus;
import io.jvirtio.core.device.VirtioDeviceModel;
import io.jvirtio.core.spec.Conformance;
import io.jvirtio.core.spec.DeviceStatus;
import io.jvirtio.devices.blk.BlkDevice;
import io.jvirtio.devices.blk.MemoryBackend;
import io.jvirtio.devices.console.ConsoleDevice;
import io.jvirtio.devices.console.EchoBackend;
import io.jvirtio.devices.net.NetDevice;
import io.jvirtio.devices.net.VirtualSwitch;
import io.jvirtio.devices.rng.RngDevice;
import io.jvirtio.drivers.blk.BlkDriver;
import io.jvirtio.drivers.console.ConsoleDriver;
import io.jvirtio.drivers.net.NetDriver;
import io.jvirtio.drivers.rng.RngDriver;
import io.jvirtio.transport.pci.Pci;
import io.jvirtio.transport.pci.PciFunction;
import io.jvirtio.transport.pci.PciInterrupts;
import io.jvirtio.transport.pci.VirtioPciCap;
import io.jvirtio.transport.pci.VirtioPciDevice;
import io.jvirtio.transport.pci.VirtioPciDriver;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

import static org.assertj.core.api.Assertions.assertThat;

/** §3.1.1 / basic-drv-18: every driver probes, fills its queues, and notifies only once DRIVER_OK is set. */
class NotifyBeforeDriverOkTest {

    /** A virtio-pci function that records the device status at every queue notification it receives. */
    static final class Watched implements PciFunction {
        final VirtioPciDevice inner;
        final List<Integer> statusAtNotify = new CopyOnWriteArrayList<>();
        final List<String> deviceCfgReads = new CopyOnWriteArrayList<>();
        final List<String> deviceCfgWrites = new CopyOnWriteArrayList<>();
        int notifyBar = -1;
        long notifyOffset;
        long notifyLength;
        int cfgBar = -1;
        long cfgOffset;
        long cfgLength;

        Watched(VirtioPciDevice inner) {
            this.inner = inner;
            int at = inner.configRead(Pci.CAPABILITY_LIST, 1);
            while (at != 0) {
                if (inner.configRead(at, 1) == Pci.CAP_ID_VNDR
                        && inner.configRead(at + VirtioPciCap.CFG_TYPE, 1) == VirtioPciCap.NOTIFY_CFG) {
                    notifyBar = inner.configRead(at + VirtioPciCap.BAR, 1);
                    notifyOffset = inner.configRead(at + VirtioPciCap.OFFSET, 4) & 0xffffffffL;
                    notifyLength = inner.configRead(at + VirtioPciCap.LENGTH, 4) & 0xffffffffL;
                }
                if (inner.configRead(at, 1) == Pci.CAP_ID_VNDR
                        && inner.configRead(at + VirtioPciCap.CFG_TYPE, 1) == VirtioPciCap.DEVICE_CFG) {
                    cfgBar = inner.configRead(at + VirtioPciCap.BAR, 1);
                    cfgOffset = inner.configRead(at + VirtioPciCap.OFFSET, 4) & 0xffffffffL;
                    cfgLength = inner.configRead(at + VirtioPciCap.LENGTH, 4) & 0xffffffffL;
                }
                at = inner.configRead(at + 1, 1);
            }
        }

        public void barWrite(int bar, long offset, int size, long value) {
            if (bar == cfgBar && offset >= cfgOffset && offset < cfgOffset + cfgLength) {
                deviceCfgWrites.add((offset - cfgOffset) + "/" + size);
            }
            if (bar == notifyBar && offset >= notifyOffset && offset < notifyOffset + notifyLength) {
                statusAtNotify.add(inner.status());
            }
            inner.barWrite(bar, offset, size, value);
        }

        public int configRead(int offset, int size) { return inner.configRead(offset, size); }
        public void configWrite(int offset, int size, int value) { inner.configWrite(offset, size, value); }
        /** Device-specific configuration reads, as "offset/width". */
        public long barRead(int bar, long offset, int size) {
            if (bar == cfgBar && offset >= cfgOffset && offset < cfgOffset + cfgLength) {
                deviceCfgReads.add((offset - cfgOffset) + "/" + size);
            }
            return inner.barRead(bar, offset, size);
        }
        public long barAddress(int bar) { return inner.barAddress(bar); }
        public long barSize(int bar) { return inner.barSize(bar); }
        public boolean barIsIo(int bar) { return inner.barIsIo(bar); }
        public void connect(PciInterrupts interrupts) { inner.connect(interrupts); }
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"blk", "net", "console", "rng"})
    @Conformance("basic-drv-18")
    void noNotificationBeforeDriverOk(String type) throws Exception {
        try (Machine m = new Machine(64 << 20)) {
            VirtioDeviceModel model = switch (type) {
                case "blk" -> new BlkDevice(new MemoryBackend(1 << 20, false));
                case "net" -> new NetDevice(new VirtualSwitch().port(), new byte[] {0x52, 0x54, 0, 0, 0, 1}, 1);
                case "console" -> new ConsoleDevice(new EchoBackend(), 80, 25);
                default -> new RngDevice();
            };
            Watched w = new Watched(new VirtioPciDevice(model, m.memory(), "00:05.0", model.numQueues() + 1, false));
            m.plug(5, w);
            VirtioBus bus = new VirtioBus();
            bus.registerDriver(new BlkDriver());
            NetDriver netDriver = new NetDriver();
            ConsoleDriver consoleDriver = new ConsoleDriver();
            bus.registerDriver(netDriver);
            bus.registerDriver(consoleDriver);
            bus.registerDriver(new RngDriver());
            new VirtioPciDriver(m, bus).scan();
            assertThat(bus.devices().getFirst().status() & DeviceStatus.DRIVER_OK).isNotZero();
            // the receive ring starts quiet (RxWorker.begin), so posting buffers need not notify; sending does
            if (type.equals("net")) {
                netDriver.nics().getFirst().send(new byte[60]);
                assertThat(w.statusAtNotify).as("a transmit notifies").isNotEmpty();
            } else if (type.equals("console")) {
                consoleDriver.consoles().getFirst().output().write('x');
                consoleDriver.consoles().getFirst().output().flush();
                assertThat(w.statusAtNotify).as("a write notifies").isNotEmpty();
            }
            assertThat(w.statusAtNotify).allMatch(s -> (s & DeviceStatus.DRIVER_OK) != 0);
        }
    }
}
