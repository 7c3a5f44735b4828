package io.jvirtio.vhostuser;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.os.NativeException;

/**
 * The front-end's memory table (SET_MEM_TABLE): guest memory mapped from the descriptors it sent, and the
 * translation of the front-end's virtual addresses — how it names ring addresses — to guest-physical ones.
 */
final class MemoryTable implements AutoCloseable {
    final GuestMemory memory;
    private final Payloads.MemRegion[] regions;

    private MemoryTable(GuestMemory memory, Payloads.MemRegion[] regions) {
        this.memory = memory;
        this.regions = regions;
    }

    /** Maps every region, all or nothing: a region refused unmaps the ones mapped before it. */
    static MemoryTable map(Message m) throws ProtocolException {
        Payloads.MemRegion[] regions = Payloads.memTable(m);
        try (GuestMemory.Builder builder = GuestMemory.builder()) {
            for (int i = 0; i < regions.length; i++) {
                builder.mapFd(regions[i].guest(), regions[i].size(), m.fds()[i], regions[i].offset());
            }
            return new MemoryTable(builder.build(), regions);
        } catch (NativeException e) {
            throw new ProtocolException("SET_MEM_TABLE: cannot map region: " + e.getMessage(), e);
        } catch (IllegalArgumentException e) {
            throw new ProtocolException("SET_MEM_TABLE: " + e.getMessage(), e);
        }
    }

    /** A front-end virtual address range to a guest-physical address, through the table. */
    long translate(long user, long length) throws ProtocolException {
        for (Payloads.MemRegion r : regions) {
            long off = user - r.user();
            if (Long.compareUnsigned(user, r.user()) >= 0 && Long.compareUnsigned(off, r.size()) < 0
                    && Long.compareUnsigned(length, r.size() - off) <= 0) {
                return r.guest() + off;
            }
        }
        throw new ProtocolException(String.format("address 0x%x (+%d) is in no memory region", user, length));
    }

    @Override
    public void close() {
        memory.close();
    }
}
