package io.jvirtio.core.queue.split;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.memory.GuestMemoryException;
import io.jvirtio.core.memory.MemoryRegion;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.RingError;
import io.jvirtio.core.queue.VirtqueueException;

import java.lang.foreign.MemorySegment;

import static io.jvirtio.core.queue.split.Virtq.DESC_ADDR;
import static io.jvirtio.core.queue.split.Virtq.DESC_F_INDIRECT;
import static io.jvirtio.core.queue.split.Virtq.DESC_F_NEXT;
import static io.jvirtio.core.queue.split.Virtq.DESC_F_WRITE;
import static io.jvirtio.core.queue.split.Virtq.DESC_LEN;
import static io.jvirtio.core.queue.split.Virtq.DESC_SIZE;

/** The walk of a split ring's descriptor chain (§2.7.5): the device side's reading of the table. */
final class SplitChains {
    private SplitChains() {
    }

    /**
     * Walks the chain at {@code head} of {@code ring} into {@code chain}, validating each rule of
     * §2.7.5. Every loop is bounded by a table size, so a hostile ring cannot make this spin.
     */
    static void load(DescriptorChain chain, GuestMemory mem, SplitRing ring, int queueIndex, int head,
                     boolean indirectAllowed) throws VirtqueueException {
        chain.begin(mem, head);
        // The table being walked is (table, base): the ring's descriptor table, or an indirect table
        // addressed inside its region's segment — no slice is created, so popping never allocates.
        MemorySegment table = ring.desc;
        long base = 0;
        int tableSize = ring.size;
        boolean inIndirect = false;
        int walked = 0;
        int idx = head;
        while (true) {
            if (++walked > tableSize) {
                throw chain.fail(queueIndex, new RingError.ChainLoop(head, tableSize, inIndirect));
            }
            long off = base + (long) idx * DESC_SIZE;
            long addr = table.get(GuestMemory.U64, off + DESC_ADDR);
            // len, flags and next in one little-endian load (§2.7.5: le32 len, le16 flags, le16 next): one bounds
            // and liveness check instead of three, on the path of every buffer
            long meta = table.get(GuestMemory.U64, off + DESC_LEN);
            int len = (int) meta;
            int flags = (int) (meta >>> 32) & 0xffff;
            int next = (int) (meta >>> 48);
            if ((flags & DESC_F_INDIRECT) != 0) {
                if (!indirectAllowed) {
                    throw chain.fail(queueIndex, new RingError.IndirectNotNegotiated(head));
                }
                if (inIndirect) {
                    throw chain.fail(queueIndex, new RingError.NestedIndirect(head));
                }
                if ((flags & DESC_F_NEXT) != 0) {
                    throw chain.fail(queueIndex, new RingError.IndirectWithNext(head));
                }
                long tableBytes = Integer.toUnsignedLong(len);
                if (tableBytes == 0 || tableBytes % DESC_SIZE != 0 || tableBytes / DESC_SIZE > DescriptorChain.MAX_INDIRECT) {
                    throw chain.fail(queueIndex, new RingError.BadIndirectLength(head, tableBytes));
                }
                try {
                    MemoryRegion r = mem.region(mem.regionIndex(addr, tableBytes));
                    table = r.segment();
                    base = addr - r.guestAddress();
                } catch (GuestMemoryException e) {
                    throw chain.fail(queueIndex, new RingError.BufferOutsideMemory(head, addr, tableBytes));
                }
                // §2.7.5.3.2: the WRITE flag of the descriptor that points to the table is ignored, and
                // zero or more direct descriptors may precede it; the walk continues at table entry 0.
                tableSize = (int) (tableBytes / DESC_SIZE);
                inIndirect = true;
                walked = 0;
                idx = 0;
                continue;
            }
            chain.append(queueIndex, addr, len, (flags & DESC_F_WRITE) != 0);
            if ((flags & DESC_F_NEXT) == 0) {
                return;
            }
            if (next >= tableSize) {
                throw chain.fail(queueIndex, new RingError.NextOutOfRange(head, next, tableSize, inIndirect));
            }
            idx = next;
        }
    }

}
