package io.jvirtio.devices.net;

import io.jvirtio.core.queue.Scatterlist;
import io.jvirtio.core.spec.Feature;
import io.jvirtio.devices.DeviceHarness;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A transmitted frame reaches the backend where it lies in the guest's buffer when it can (one buffer, a header
 * that asks nothing or what the driver negotiated): the frame is copied once, by whoever receives it, not first by
 * the transmitting NIC. What the device relies on, the header, it reads once; a frame over several buffers goes to
 * a backend that takes it gathered (a TAP device) as it lies behind the header as checked, else it is copied
 * together, as is a frame behind a header written without CSUM (cleared).
 */
class ZeroCopyTransmitTest {
    static final long BASE = Feature.maskOf(Feature.VERSION_1, Feature.NET_MAC);
    static final byte[] MAC = {0x52, 0x54, 0, 0, 0, 1};

    /** What the backend was handed: where the frame lay, and its bytes. */
    record Sent(long address, byte[] bytes) {
    }

    static class Recorder implements NetBackend {
        final List<Sent> sent = new CopyOnWriteArrayList<>();
        final long offloads;

        Recorder(long offloads) {
            this.offloads = offloads;
        }

        @Override
        public void transmit(MemorySegment buffer, long offset, long length) {
            sent.add(new Sent(buffer.address() + offset, buffer.asSlice(offset, length).toArray(ValueLayout.JAVA_BYTE)));
        }

        @Override
        public void connect(Receiver receiver) {
        }

        @Override
        public long offloads() {
            return offloads;
        }
    }

    DeviceHarness h;

    @AfterEach
    void tearDown() {
        if (h != null) {
            h.close();
        }
    }

    Recorder start(long offloads, long features) throws Exception {
        Recorder r = new Recorder(offloads);
        h = new DeviceHarness(new NetDevice(r, MAC, 1), features);
        return r;
    }

    long host(long guestAddress) throws Exception {
        return h.memory.slice(guestAddress, 1).address();
    }

    static boolean inside(long address, long start, long length) {
        return address >= start && address < start + length;
    }

    static byte[] frame(int size) {
        byte[] f = new byte[size];
        for (int i = 0; i < size; i++) {
            f[i] = (byte) (i * 7 + 1);
        }
        return f;
    }

    @Test
    void aPlainFrameInTheHeadersBufferIsHandedOnWhereItLies() throws Exception {
        Recorder r = start(0, BASE);
        long buf = h.alloc.allocate(12 + 60, 8);
        h.memory.write(buf + 12, frame(60), 0, 60);
        h.roundTrip(1, new Scatterlist().addReadable(buf, 12 + 60));
        assertThat(r.sent).hasSize(1);
        assertThat(r.sent.getFirst().bytes()).isEqualTo(frame(60));
        assertThat(r.sent.getFirst().address()).as("the guest's buffer, after the header").isEqualTo(host(buf + 12));
    }

    @Test
    void aPlainFrameInABufferOfItsOwnIsHandedOnWhereItLies() throws Exception {
        Recorder r = start(0, BASE);
        long hdr = h.alloc.allocate(12, 8);
        long buf = h.alloc.allocate(100, 8);
        h.memory.write(buf, frame(100), 0, 100);
        h.roundTrip(1, new Scatterlist().addReadable(hdr, 12).addReadable(buf, 100));
        assertThat(r.sent.getFirst().bytes()).isEqualTo(frame(100));
        assertThat(r.sent.getFirst().address()).isEqualTo(host(buf));
    }

    @Test
    void aFrameOverSeveralBuffersIsGatheredIntoACopy() throws Exception {
        Recorder r = start(0, BASE);
        long a = h.alloc.allocate(12 + 30, 8);
        long b = h.alloc.allocate(70, 8);
        byte[] f = frame(100);
        h.memory.write(a + 12, f, 0, 30);
        h.memory.write(b, f, 30, 70);
        h.roundTrip(1, new Scatterlist().addReadable(a, 12 + 30).addReadable(b, 70));
        assertThat(r.sent.getFirst().bytes()).isEqualTo(f);
        long at = r.sent.getFirst().address();
        assertThat(inside(at, host(a), 42) || inside(at, host(b), 70)).as("in the guest's buffers").isFalse();
    }

    /** A backend that takes frames over several buffers as they lie (as a TAP device does): the pieces it got. */
    static final class Gatherer extends Recorder {
        final List<byte[]> headers = new CopyOnWriteArrayList<>();
        final List<long[]> pieces = new CopyOnWriteArrayList<>();

        Gatherer() {
            super(TapBackend.OFFLOADS);
        }

        @Override
        public boolean transmitGathered(int queue, MemorySegment header, io.jvirtio.core.queue.DescriptorChain chain,
                                        long offset, long length) {
            headers.add(header.asSlice(0, 12).toArray(ValueLayout.JAVA_BYTE));
            long[] p = new long[chain.readableCount()];
            for (int i = 0; i < p.length; i++) {
                p[i] = chain.regionSegment(i).address() + chain.regionOffset(i);
            }
            pieces.add(p);
            return offset == 12 && length == chain.readableBytes() - 12;
        }
    }

    @Test
    void aFrameOverSeveralBuffersGoesToAGatheringBackendAsItLiesBehindItsHeaderAsChecked() throws Exception {
        Gatherer g = new Gatherer();
        h = new DeviceHarness(new NetDevice(g, MAC, 1), BASE | Feature.NET_CSUM.mask());
        long a = h.alloc.allocate(12 + 30, 8);
        long b = h.alloc.allocate(70, 8);
        byte[] f = frame(100);
        h.memory.write(a, new byte[] {(byte) Offloads.HDR_F_NEEDS_CSUM}, 0, 1);
        h.memory.writeU16(a + 6, (short) 34);
        h.memory.writeU16(a + 8, (short) 6);
        h.memory.writeU16(a + 10, (short) 9); // num_buffers: cleared in the checked copy
        h.memory.write(a + 12, f, 0, 30);
        h.memory.write(b, f, 30, 70);
        h.roundTrip(1, new Scatterlist().addReadable(a, 12 + 30).addReadable(b, 70));
        assertThat(g.sent).as("nothing copied for transmit").isEmpty();
        assertThat(g.pieces.getFirst()).containsExactly(host(a), host(b));
        byte[] head = g.headers.getFirst();
        assertThat(head[0]).isEqualTo((byte) Offloads.HDR_F_NEEDS_CSUM);
        assertThat(MemorySegment.ofArray(head).get(ValueLayout.JAVA_SHORT_UNALIGNED, 6)).isEqualTo((short) 34);
        assertThat(MemorySegment.ofArray(head).get(ValueLayout.JAVA_SHORT_UNALIGNED, 10)).as("checked copy").isZero();
    }

    @Test
    void withOffloadsAnEmptyHeaderAndItsFrameAreHandedOnWhereTheyLie() throws Exception {
        Recorder r = start(TapBackend.OFFLOADS, BASE | Feature.NET_CSUM.mask());
        long buf = h.alloc.allocate(12 + 60, 8);
        h.memory.write(buf + 12, frame(60), 0, 60);
        h.roundTrip(1, new Scatterlist().addReadable(buf, 12 + 60));
        byte[] want = new byte[72];
        System.arraycopy(frame(60), 0, want, 12, 60);
        assertThat(r.sent.getFirst().bytes()).isEqualTo(want);
        assertThat(r.sent.getFirst().address()).isEqualTo(host(buf));
    }

    @Test
    void aHeaderTheDriverMayWriteGoesOnWithItsFrameWhereTheyLie() throws Exception {
        // CSUM: a partial checksum is the driver's to ask, checked as read; header and frame are not copied
        Recorder r = start(TapBackend.OFFLOADS, BASE | Feature.NET_CSUM.mask());
        long buf = h.alloc.allocate(12 + 60, 8);
        byte[] f = frame(60);
        h.memory.write(buf + 12, f, 0, 60);
        h.memory.write(buf, new byte[] {(byte) Offloads.HDR_F_NEEDS_CSUM}, 0, 1);
        h.memory.writeU16(buf + 6, (short) 34);  // csum_start
        h.memory.writeU16(buf + 8, (short) 6);   // csum_offset
        h.memory.writeU16(buf + 10, (short) 9);  // num_buffers: not the backend's business (receivers set theirs)
        h.roundTrip(1, new Scatterlist().addReadable(buf, 12 + 60));
        byte[] got = r.sent.getFirst().bytes();
        assertThat(got[0]).isEqualTo((byte) Offloads.HDR_F_NEEDS_CSUM);
        assertThat(MemorySegment.ofArray(got).get(ValueLayout.JAVA_SHORT_UNALIGNED, 6)).isEqualTo((short) 34);
        assertThat(MemorySegment.ofArray(got).get(ValueLayout.JAVA_SHORT_UNALIGNED, 8)).isEqualTo((short) 6);
        assertThat(java.util.Arrays.copyOfRange(got, 12, 72)).isEqualTo(f);
        assertThat(r.sent.getFirst().address()).as("the guest's buffer").isEqualTo(host(buf));
    }

    @Test
    @io.jvirtio.core.spec.Conformance("net-dev-6")
    void aSegmentTheDriverMayNotSendIsDroppedThoughItLiesInOneBuffer() throws Exception {
        Recorder r = start(TapBackend.OFFLOADS, BASE | Feature.maskOf(Feature.NET_CSUM, Feature.NET_HOST_TSO4));
        long buf = h.alloc.allocate(12 + 60, 8);
        h.memory.write(buf + 12, frame(60), 0, 60);
        h.memory.write(buf, new byte[] {(byte) Offloads.HDR_F_NEEDS_CSUM, 4}, 0, 2); // TCPv6: no HOST_TSO6
        h.memory.writeU16(buf + 4, (short) 1400);
        h.roundTrip(1, new Scatterlist().addReadable(buf, 12 + 60));
        assertThat(r.sent).isEmpty();
        h.memory.write(buf, new byte[] {(byte) Offloads.HDR_F_NEEDS_CSUM, 1}, 0, 2); // TCPv4: negotiated
        h.roundTrip(1, new Scatterlist().addReadable(buf, 12 + 60));
        assertThat(r.sent).hasSize(1);
        assertThat(r.sent.getFirst().address()).isEqualTo(host(buf));
    }

    @Test
    void withoutCsumAHeaderWithFieldsSetIsClearedInACopy() throws Exception {
        // net-drv-7: without CSUM the driver has nothing to ask; what it wrote is cleared, not passed on
        Recorder r = start(TapBackend.OFFLOADS, BASE);
        long buf = h.alloc.allocate(12 + 60, 8);
        h.memory.write(buf + 12, frame(60), 0, 60);
        h.memory.writeU16(buf + 4, (short) 1400); // gso_size, with no gso_type: asks nothing, yet not zero
        h.roundTrip(1, new Scatterlist().addReadable(buf, 12 + 60));
        byte[] got = r.sent.getFirst().bytes();
        assertThat(java.util.Arrays.copyOfRange(got, 0, 12)).isEqualTo(new byte[12]);
        assertThat(inside(r.sent.getFirst().address(), host(buf), 72)).as("in the guest's buffer").isFalse();
    }
}
