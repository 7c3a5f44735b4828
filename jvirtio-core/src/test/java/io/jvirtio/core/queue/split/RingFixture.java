package io.jvirtio.core.queue.split;

import io.jvirtio.core.memory.GuestAllocator;
import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.memory.GuestMemoryException;
import io.jvirtio.core.queue.QueueState;
import io.jvirtio.core.queue.VirtqueueException;

import java.util.concurrent.atomic.AtomicInteger;

/**
 * A guest memory above 4 GiB (so an address truncated to 32 bits shows), a driver queue allocated in it
 * and a device queue mapped over the same ring — the two ends meeting only through guest memory.
 */
final class RingFixture implements AutoCloseable {
    static final long BASE = 0x1_0000_0000L;
    static final long SIZE = 4 << 20;

    final GuestMemory memory;
    final GuestAllocator allocator;
    final SplitDriverQueue<Integer> driver;
    final SplitDeviceQueue device;
    final AtomicInteger doorbells = new AtomicInteger();

    RingFixture(int queueSize, long features) throws VirtqueueException {
        this(queueSize, features, 8);
    }

    RingFixture(int queueSize, long features, int maxIndirect) throws VirtqueueException {
        memory = GuestMemory.allocate(BASE, SIZE);
        allocator = new GuestAllocator(memory, BASE, SIZE);
        driver = SplitDriverQueue.allocate(allocator, 0, SplitLayout.modern(queueSize), features, maxIndirect,
                doorbells::incrementAndGet);
        device = SplitDeviceQueue.create(memory, 0, queueSize, driver.addresses(), features, QueueState.INITIAL);
    }

    long buffer(int bytes) {
        return allocator.allocate(bytes, 8);
    }

    /** Writes a raw descriptor into the main table: how a hostile driver builds its ring. */
    void writeDesc(int index, long addr, int len, int flags, int next) throws GuestMemoryException {
        writeDescAt(driver.addresses().descTable() + 16L * index, addr, len, flags, next);
    }

    void writeDescAt(long at, long addr, int len, int flags, int next) throws GuestMemoryException {
        memory.writeU64(at, addr);
        memory.writeU32(at + 8, len);
        memory.writeU16(at + 12, (short) flags);
        memory.writeU16(at + 14, (short) next);
    }

    /** Publishes {@code head} in the available ring slot {@code slot} and sets avail.idx. */
    void makeAvailable(int slot, int head, int availIdx, int queueSize) throws GuestMemoryException {
        long avail = driver.addresses().availRing();
        memory.writeU16(avail + 4 + 2L * (slot % queueSize), (short) head);
        memory.writeU16(avail + 2, (short) availIdx);
    }

    int usedFlags() throws GuestMemoryException {
        return memory.readU16(driver.addresses().usedRing()) & 0xffff;
    }

    int availFlags() throws GuestMemoryException {
        return memory.readU16(driver.addresses().availRing()) & 0xffff;
    }

    int usedEvent(int queueSize) throws GuestMemoryException {
        return memory.readU16(driver.addresses().availRing() + 4 + 2L * queueSize) & 0xffff;
    }

    int availEvent(int queueSize) throws GuestMemoryException {
        return memory.readU16(driver.addresses().usedRing() + 4 + 8L * queueSize) & 0xffff;
    }

    @Override
    public void close() {
        memory.close();
    }
}
