package io.jvirtio.core.queue.packed;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.memory.GuestMemoryException;
import io.jvirtio.core.memory.MemoryRegion;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.RingError;
import io.jvirtio.core.queue.VirtqueueException;

import java.lang.foreign.MemorySegment;

import static io.jvirtio.core.queue.packed.Packed.DESC_ADDR;
import static io.jvirtio.core.queue.packed.Packed.DESC_FLAGS;
import static io.jvirtio.core.queue.packed.Packed.DESC_LEN;
import static io.jvirtio.core.queue.packed.Packed.DESC_SIZE;
import static io.jvirtio.core.queue.packed.Packed.F_INDIRECT;
import static io.jvirtio.core.queue.packed.Packed.F_NEXT;
import static io.jvirtio.core.queue.packed.Packed.F_WRITE;

/**
 * The walk of a packed ring's descriptor lists (§2.8.6, §2.8.8) — from the ring, or from the copies an
 * in-flight log kept — into a {@link DescriptorChain}: the device side's reading of descriptors. Every walk
 * is bounded by the ring or table size, so a hostile ring cannot make it spin. Errors come from
 * {@link DescriptorChain#fail}; the queue breaks with them.
 */
final class PackedChains {
    private PackedChains() {
    }

    /**
     * Walks the list whose first descriptor, at {@code first}, is available (its flags already read with
     * acquire); sets the chain's head to the buffer id of its last descriptor, checked against the ring size.
     *
     * @return how many ring slots the list takes
     */
    static int walk(DescriptorChain chain, GuestMemory memory, MemorySegment desc, int size, int queueIndex,
                    int first, boolean wrap, int firstFlags, boolean indirectAllowed) throws VirtqueueException {
        chain.begin(memory, -1);
        int slot = first;
        int flags = firstFlags;
        int taken = 0;
        while (true) {
            if (++taken > size) {
                throw chain.fail(queueIndex, new RingError.ChainLoop(first, size, false));
            }
            long at = (long) slot * DESC_SIZE;
            if (taken > 1) {
                flags = Short.toUnsignedInt(desc.get(GuestMemory.U16, at + DESC_FLAGS));
                if (!Packed.isAvail(flags, wrap)) {
                    throw chain.fail(queueIndex, new RingError.ChainDescriptorNotAvailable(first, slot, flags));
                }
            }
            long addr = desc.get(GuestMemory.U64, at + DESC_ADDR);
            // len and id in one little-endian load (§2.8.13: le32 len, le16 id, le16 flags), after the flags
            // were read — with acquire for the head — so they are the driver's for this list
            long meta = desc.get(GuestMemory.U64, at + DESC_LEN);
            int len = (int) meta;
            if ((flags & F_INDIRECT) != 0) {
                if (!indirectAllowed) {
                    throw chain.fail(queueIndex, new RingError.IndirectNotNegotiated(first));
                }
                if (taken > 1 || (flags & F_NEXT) != 0) {
                    throw chain.fail(queueIndex, new RingError.IndirectInChain(first));
                }
                loadIndirect(chain, memory, queueIndex, first, addr, len);
            } else {
                chain.append(queueIndex, addr, len, (flags & F_WRITE) != 0);
            }
            if (++slot == size) {
                slot = 0;
                wrap = !wrap;
            }
            if ((flags & F_NEXT) == 0) {
                // §2.8.6: the buffer id is in the last descriptor of the list
                int id = (int) (meta >>> 32) & 0xffff;
                if (id >= size) {
                    throw chain.fail(queueIndex, new RingError.BufferIdOutOfRange(first, id, size));
                }
                chain.setHead(id);
                return taken;
            }
        }
    }

    /**
     * Rebuilds the list an in-flight log copied at entry {@code head}, with the checks a list read from the
     * ring gets; an indirect table is read again from guest memory (the driver leaves it alone until used).
     */
    static void walkLogged(DescriptorChain chain, GuestMemory memory, PackedInflight log, int queueIndex, int head,
                           boolean indirectAllowed) throws VirtqueueException {
        int n = log.num(head);
        chain.begin(memory, -1);
        int e = head;
        for (int k = 0; k < n; k++, e = log.next(e)) {
            int flags = log.flags(e);
            if ((flags & F_INDIRECT) != 0) {
                if (!indirectAllowed) {
                    throw chain.fail(queueIndex, new RingError.IndirectNotNegotiated(head));
                }
                if (n > 1) {
                    throw chain.fail(queueIndex, new RingError.IndirectInChain(head));
                }
                loadIndirect(chain, memory, queueIndex, head, log.addr(e), log.len(e));
            } else {
                chain.append(queueIndex, log.addr(e), log.len(e), (flags & F_WRITE) != 0);
            }
        }
        chain.setHead(log.id(log.last(head)));
    }

    /** §2.8.8: a table of {@code len / 16} descriptors, of whose flags only WRITE counts. */
    private static void loadIndirect(DescriptorChain chain, GuestMemory memory, int queueIndex, int first, long addr,
                                     int len) throws VirtqueueException {
        long bytes = Integer.toUnsignedLong(len);
        if (bytes == 0 || bytes % DESC_SIZE != 0 || bytes / DESC_SIZE > DescriptorChain.MAX_INDIRECT) {
            throw chain.fail(queueIndex, new RingError.BadIndirectLength(first, bytes));
        }
        MemorySegment table;
        long base;
        try {
            MemoryRegion r = memory.region(memory.regionIndex(addr, bytes));
            table = r.segment();
            base = addr - r.guestAddress();
        } catch (GuestMemoryException e) {
            throw chain.fail(queueIndex, new RingError.BufferOutsideMemory(first, addr, bytes));
        }
        for (long off = base; off < base + bytes; off += DESC_SIZE) {
            int f = Short.toUnsignedInt(table.get(GuestMemory.U16, off + DESC_FLAGS));
            chain.append(queueIndex, table.get(GuestMemory.U64, off + DESC_ADDR), table.get(GuestMemory.U32, off + DESC_LEN),
                    (f & F_WRITE) != 0);
        }
    }
}
