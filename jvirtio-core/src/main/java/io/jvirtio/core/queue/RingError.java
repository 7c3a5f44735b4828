package io.jvirtio.core.queue;

/**
 * Everything a driver can get wrong in a split ring, as seen by the device. Each case names the rule of
 * VIRTIO 1.2 it breaks. A device that meets one stops using the queue and sets DEVICE_NEEDS_RESET
 * (§2.1.2); none of them ever leads to an access outside guest memory or an endless loop.
 */
public sealed interface RingError {

    /** Human-readable description naming the bad values. */
    String message();

    /** A ring part lies (partly) outside guest memory. §2.7: each part is in guest memory. */
    record RingOutsideMemory(String part, long address, long length) implements RingError {
        public String message() {
            return String.format("%s at 0x%x (+%d) is outside guest memory", part, address, length);
        }
    }

    /** A ring part is not at its alignment. §2.7.1: the driver MUST align each part (16, 2, 4). */
    record RingMisaligned(String part, long address, int alignment) implements RingError {
        public String message() {
            return String.format("%s at 0x%x is not %d-byte aligned", part, address, alignment);
        }
    }

    /**
     * {@code avail.idx} moved more than the queue size ahead of the device. §2.7.6: the available index
     * only grows, by at most the number of descriptors the queue has.
     */
    record AvailIndexJump(int availIdx, int lastAvailIdx, int size) implements RingError {
        public String message() {
            return String.format("avail idx %d is %d entries ahead of %d, queue size %d", availIdx,
                    (availIdx - lastAvailIdx) & 0xffff, lastAvailIdx, size);
        }
    }

    /** An available ring entry names a head ≥ queue size. §2.7.5: there are only queue-size descriptors. */
    record HeadOutOfRange(int head, int size) implements RingError {
        public String message() {
            return "descriptor head " + head + " is not below the queue size " + size;
        }
    }

    /** A {@code next} field points outside its (main or indirect) table. */
    record NextOutOfRange(int head, int next, int tableSize, boolean indirect) implements RingError {
        public String message() {
            return String.format("chain at head %d: next %d is outside the %s table of %d descriptors", head,
                    next, indirect ? "indirect" : "descriptor", tableSize);
        }
    }

    /**
     * A chain has more descriptors than its table: it loops. §2.7.5.3.1: a driver MUST NOT create a chain
     * longer than the queue size; §2.7.5.2: loops are forbidden.
     */
    record ChainLoop(int head, int limit, boolean indirect) implements RingError {
        public String message() {
            return String.format("chain at head %d exceeds %d descriptors%s (a loop)", head, limit,
                    indirect ? " in its indirect table" : "");
        }
    }

    /** A buffer's address and length leave guest memory or wrap the 64-bit space. */
    record BufferOutsideMemory(int head, long address, long length) implements RingError {
        public String message() {
            return String.format("chain at head %d: buffer 0x%x (+%d) is outside guest memory", head, address, length);
        }
    }

    /** The buffers of a chain add up to more than 2^32 bytes. §2.7.5.2. */
    record ChainTooLong(int head, long totalBytes) implements RingError {
        public String message() {
            return "chain at head " + head + " describes " + totalBytes + " bytes, more than 2^32";
        }
    }

    /** An indirect table length that is zero or not a multiple of 16. §2.7.5.3. */
    record BadIndirectLength(int head, long length) implements RingError {
        public String message() {
            return "chain at head " + head + ": indirect table length " + length
                    + " is not a positive multiple of 16";
        }
    }

    /** INDIRECT inside an indirect table. §2.7.5.3.1: only one table per descriptor. */
    record NestedIndirect(int head) implements RingError {
        public String message() {
            return "chain at head " + head + ": indirect descriptor inside an indirect table";
        }
    }

    /** INDIRECT and NEXT both set. §2.7.5.3.1. */
    record IndirectWithNext(int head) implements RingError {
        public String message() {
            return "chain at head " + head + ": descriptor has both INDIRECT and NEXT";
        }
    }

    /** INDIRECT used without VIRTIO_F_INDIRECT_DESC negotiated. §2.7.5.3.1. */
    record IndirectNotNegotiated(int head) implements RingError {
        public String message() {
            return "chain at head " + head + ": INDIRECT used but VIRTIO_F_INDIRECT_DESC was not negotiated";
        }
    }

    /** A device-readable buffer after a device-writable one. §2.7.4.2. */
    record ReadableAfterWritable(int head) implements RingError {
        public String message() {
            return "chain at head " + head + ": device-readable descriptor after a device-writable one";
        }
    }

    /**
     * A buffer smaller than the device type requires, e.g. §5.1.6.3.1: with VIRTIO_NET_F_MRG_RXBUF each
     * receive buffer MUST hold at least the {@code virtio_net_hdr}.
     */
    record BufferTooSmall(int head, long length, long minimum, String rule) implements RingError {
        public String message() {
            return String.format("chain at head %d: %d writable bytes, %s requires at least %d", head, length, rule,
                    minimum);
        }
    }

    /**
     * The device reported a used element that the driver never made available (driver side, like Linux's
     * BAD_RING): the id is out of range or not in flight.
     */
    record BadUsedId(int id, int size) implements RingError {
        public String message() {
            return "used ring names id " + id + " which is not a buffer in flight (queue size " + size + ")";
        }
    }

    /** The used index moved more than the number of buffers in flight (driver side). */
    record UsedIndexJump(int usedIdx, int lastUsedIdx, int inFlight) implements RingError {
        public String message() {
            return String.format("used idx %d is %d ahead of %d but only %d buffers are in flight", usedIdx,
                    (usedIdx - lastUsedIdx) & 0xffff, lastUsedIdx, inFlight);
        }
    }

    /** Packed ring: a chain's buffer id is not below the queue size. §2.8.4. */
    record BufferIdOutOfRange(int slot, int id, int size) implements RingError {
        public String message() {
            return "chain at slot " + slot + ": buffer id " + id + " is not below the queue size " + size;
        }
    }

    /** Packed ring: a chain reuses the id of a buffer the device still holds. §2.8.4. */
    record BufferIdInFlight(int slot, int id) implements RingError {
        public String message() {
            return "chain at slot " + slot + ": buffer id " + id + " is already in flight";
        }
    }

    /**
     * Packed ring: a descriptor after the first of a chain is not marked available with the wrap counter of
     * its slot (§2.8.6: every descriptor of a list carries correct AVAIL/USED flags).
     */
    record ChainDescriptorNotAvailable(int slot, int at, int flags) implements RingError {
        public String message() {
            return String.format("chain at slot %d: descriptor %d (flags 0x%04x) is not available", slot, at, flags);
        }
    }

    /** Packed ring: an indirect descriptor in a list linked by NEXT. §2.8.8. */
    record IndirectInChain(int slot) implements RingError {
        public String message() {
            return "chain at slot " + slot + ": INDIRECT descriptor inside a list linked by NEXT";
        }
    }

    /**
     * vhost-user: the in-flight log a front-end handed over (SET_INFLIGHT_FD) is not one this queue can resume
     * from — wrong size, version or ring size, or links that leave the table or loop ("Inflight I/O tracking").
     */
    record InflightLogInvalid(String reason) implements RingError {
        public String message() {
            return "in-flight log: " + reason;
        }
    }
}
