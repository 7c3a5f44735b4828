package io.jvirtio.devices.net;

import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.devices.Poller;

import java.lang.foreign.MemorySegment;

/**
 * Where a NIC's frames go: a port of a {@link VirtualSwitch}, a TAP device, ... Frames are passed as
 * {@code length} bytes at {@code offset} of a segment that is valid only during the call, so nothing is
 * allocated per frame — no slice either: a NIC hands on the frame where it lies in the transmitting guest's
 * buffer. Whoever keeps a frame copies it; nobody writes into it (it may be guest memory the driver gave the
 * device to read only), and a receiver reads what it relies on once (the guest may change it meanwhile).
 *
 * <p>A backend that can carry offloads ({@link #offloads()} not 0) passes every frame, both ways, behind the
 * 12-byte {@code virtio_net_hdr} of VERSION_1 (§5.1.6: flags, gso_type, hdr_len, gso_size, csum_start,
 * csum_offset; num_buffers is not its business): a frame may then be a 64 KiB segment to be cut, or carry a
 * partial checksum, as the header says.
 */
public interface NetBackend extends AutoCloseable {
    /** Receives frames for the NIC. */
    @FunctionalInterface
    interface Receiver {
        /** The {@code length} bytes at {@code offset} of {@code buffer}: a frame, read-only, valid during the call. */
        void receive(MemorySegment buffer, long offset, long length);

        /** {@link #receive(MemorySegment, long, long)} of the first {@code length} bytes. */
        default void receive(MemorySegment buffer, long length) {
            receive(buffer, 0, length);
        }

        /**
         * Frames {@code from} (inclusive) to {@code to} (exclusive) of {@code burst}, in order, with the same rules
         * as one. A receiver that can take them together (a NIC: one set of checks, one used-index update) says so
         * by overriding this; by default, one at a time.
         */
        default void receive(FrameBurst burst, int from, int to) {
            for (int i = from; i < to; i++) {
                receive(burst.data(i), burst.offset(i), burst.length(i));
            }
        }

        /**
         * Whether frames to {@code dst} (a 48-bit address, its first byte the most significant) can concern this
         * receiver at all: a switch floods frames to an address only to the receivers that want it. By default,
         * every address.
         */
        default boolean wants(long dst) {
            return true;
        }

        /**
         * A frame over several of a sending guest's buffers, taken from where it lies if this receiver can (a NIC
         * writing it straight into its ring: one copy): the first 12 bytes of {@code header} — the virtio-net header
         * as the sending NIC checked it, in memory of its own — then {@code length} bytes of {@code chain}'s
         * readable buffers from {@code offset} on, valid during the call, read-only. False, by default: nothing was
         * done, and the sender hands the frame on gathered into a copy, to {@link #receive}.
         */
        default boolean receiveGathered(MemorySegment header, DescriptorChain chain, long offset, long length) {
            return false;
        }

        /**
         * The next frame of {@code reader}, read by this receiver straight into buffers of its own if it can take
         * one now — a NIC whose receive ring has buffers and nothing waiting: the reader's copy (the kernel's) is
         * the only one — and delivered as {@link #receive} would. True when it read (whatever became of the
         * frame, or of the ring); false, by default: nothing was read, and the backend reads the frame into its
         * own memory and hands it to {@link #receive}. Only for a backend that carries a header when it
         * {@link #offloads()}, as with {@link #receive}.
         */
        default boolean receiveRead(FrameReader reader) {
            return false;
        }

        /**
         * Whether a frame now would find no room — a NIC whose driver has stopped taking frames and whose queue for
         * them is full. A backend that can leave frames where they are (a TAP device: in the kernel's queue, which
         * drops and counts what overflows it, as with QEMU's {@code -netdev tap}) stops reading until it is not,
         * rather than read frames only for them to be dropped. By default, never.
         */
        default boolean congested() {
            return false;
        }
    }

    /**
     * A source of frames a receiver reads straight into its own buffers ({@link Receiver#receiveRead}): a TAP
     * device's descriptor, one frame per read.
     */
    interface FrameReader {
        /**
         * {@code readv(2)} of one frame into the first {@code count} iovecs of {@code iov} ({@code struct iovec}:
         * base address, length), in order: the frame's length — more than the iovecs hold when the frame was cut
         * — or 0 when none waits, or a negative errno.
         */
        long read(MemorySegment iov, int count);

        /**
         * Memory of the backend's own, at least its largest frame: the last iovec of a read, where what does not
         * fit the receiver's buffers goes.
         */
        MemorySegment spill();
    }

    /** Sends one Ethernet frame (without FCS): {@code length} bytes at {@code offset} of {@code buffer}. */
    void transmit(MemorySegment buffer, long offset, long length);

    /** {@link #transmit(MemorySegment, long, long)} of the first {@code length} bytes. */
    default void transmit(MemorySegment buffer, long length) {
        transmit(buffer, 0, length);
    }

    /** Frames for the NIC arrive at {@code receiver}, on whatever thread the backend uses. */
    void connect(Receiver receiver);

    /**
     * Queues of its own (a multi-queue TAP device): 1, or one per queue pair of the NIC, which then sends pair
     * {@code i}'s frames with {@link #transmit(int, MemorySegment, long, long)} and takes queue {@code i}'s frames on
     * pair {@code i} ({@link #connect(int, Receiver)}), so a flow keeps its queue and pairs share nothing.
     */
    default int queues() {
        return 1;
    }

    /** {@link #transmit(MemorySegment, long, long)} on queue {@code queue}. */
    default void transmit(int queue, MemorySegment buffer, long offset, long length) {
        transmit(buffer, offset, length);
    }

    /**
     * The frames of {@code burst}, in order, on queue {@code queue}: a switch port decides where each run of them
     * goes once ({@link FrameBurst}); by default, one at a time.
     */
    default void transmit(int queue, FrameBurst burst) {
        for (int i = 0; i < burst.count(); i++) {
            transmit(queue, burst.data(i), burst.offset(i), burst.length(i));
        }
    }

    /**
     * A frame over several of the transmitting guest's buffers, handed on without a copy if this backend can (a
     * TAP device writes it with one {@code writev}): the first 12 bytes of {@code header}, the header as the NIC
     * checked it, in memory of the NIC's own, then {@code length} bytes of {@code chain}'s readable buffers from
     * {@code offset} on, valid during the call. False: this backend cannot, and the NIC gathers the frame into a
     * copy for {@link #transmit(int, MemorySegment, long, long)}. Only for a backend with {@link #offloads()}.
     */
    default boolean transmitGathered(int queue, MemorySegment header, DescriptorChain chain, long offset, long length) {
        return false;
    }

    /** Frames arriving on queue {@code queue} go to {@code receiver}. */
    default void connect(int queue, Receiver receiver) {
        if (queue == 0) {
            connect(receiver);
        }
    }

    /**
     * The virtio-net offload features (CSUM, GUEST_CSUM, HOST_/GUEST_TSO4/6, HOST_/GUEST_ECN) this backend
     * carries, which the NIC offers its driver; 0: plain frames, no header.
     */
    default long offloads() {
        return 0;
    }

    /**
     * The features the driver accepted: from now on the backend hands the NIC only what the driver takes
     * (no partial checksum without GUEST_CSUM, no TCP segment larger than the MTU without GUEST_TSO4/6).
     */
    default void acceptOffloads(long features) {
    }

    /**
     * The NIC uses its first {@code n} queue pairs now (1 until the driver sets more, §5.1.6.5.5): a backend with a
     * queue of its own per pair stops taking frames on the others, so the host steers its flows to the ones in use —
     * as QEMU detaches the queues of a multi-queue TAP device the guest does not use. By default nothing changes.
     */
    default void activeQueues(int n) {
    }

    /**
     * Has {@code poller} read the frames of this backend's queue {@code queue} in its rounds, where it has threads of
     * its own reading them (a TAP device): the frames then go straight into polled rings. By default nothing changes.
     */
    default void readIn(int queue, Poller poller) {
    }

    @Override
    default void close() {
    }
}
