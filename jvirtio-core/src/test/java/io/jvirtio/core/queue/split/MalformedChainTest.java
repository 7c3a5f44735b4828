package io.jvirtio.core.queue.split;

import io.jvirtio.core.memory.GuestMemory;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.QueueState;
import io.jvirtio.core.queue.RingAddresses;
import io.jvirtio.core.queue.RingError;
import io.jvirtio.core.queue.VirtqueueException;
import io.jvirtio.core.spec.Feature;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import static io.jvirtio.core.queue.split.RingFixture.BASE;
import static io.jvirtio.core.queue.split.Virtq.DESC_F_INDIRECT;
import static io.jvirtio.core.queue.split.Virtq.DESC_F_NEXT;
import static io.jvirtio.core.queue.split.Virtq.DESC_F_WRITE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * One test per way a hostile driver can break a split ring (§2.7). Each must end in a typed
 * {@link RingError}, leave the queue broken, and never touch memory outside the guest.
 */
class MalformedChainTest {
    static final int QSIZE = 8;
    static final long INDIRECT = Feature.INDIRECT_DESC.mask();

    RingFixture f;
    long buf;

    @BeforeEach
    void setUp() throws Exception {
        f = new RingFixture(QSIZE, INDIRECT);
        buf = f.buffer(4096);
    }

    @AfterEach
    void tearDown() {
        f.close();
    }

    private RingError popError() {
        DescriptorChain chain = new DescriptorChain();
        VirtqueueException e = org.junit.jupiter.api.Assertions.assertThrows(VirtqueueException.class,
                () -> f.device.pop(chain));
        // A broken queue stays broken: the next call reports the same error instead of reading on.
        VirtqueueException again = org.junit.jupiter.api.Assertions.assertThrows(VirtqueueException.class,
                () -> f.device.pop(chain));
        assertThat(again.error()).isEqualTo(e.error());
        assertThat(f.device.error()).isSameAs(e);
        return e.error();
    }

    @Test
    @io.jvirtio.core.spec.Conformance("split-dev-1")
    void wellFormedChainIsAccepted() throws Exception {
        f.writeDesc(0, buf, 16, DESC_F_NEXT, 1);
        f.writeDesc(1, buf + 16, 32, DESC_F_WRITE, 0);
        f.makeAvailable(0, 0, 1, QSIZE);
        DescriptorChain chain = new DescriptorChain();
        assertThat(f.device.pop(chain)).isTrue();
        assertThat(chain.head()).isZero();
        assertThat(chain.readableCount()).isEqualTo(1);
        assertThat(chain.writableCount()).isEqualTo(1);
        assertThat(chain.readableBytes()).isEqualTo(16);
        assertThat(chain.writableBytes()).isEqualTo(32);
        assertThat(chain.address(1)).isEqualTo(buf + 16);
        assertThat(f.device.pop(chain)).isFalse();
    }

    @Test
    void loopingChain() throws Exception {
        f.writeDesc(0, buf, 16, DESC_F_NEXT, 1);
        f.writeDesc(1, buf, 16, DESC_F_NEXT, 0);
        f.makeAvailable(0, 0, 1, QSIZE);
        assertThat(popError()).isEqualTo(new RingError.ChainLoop(0, QSIZE, false));
    }

    @Test
    void selfLoopingDescriptor() throws Exception {
        f.writeDesc(3, buf, 16, DESC_F_NEXT, 3);
        f.makeAvailable(0, 3, 1, QSIZE);
        assertThat(popError()).isInstanceOf(RingError.ChainLoop.class);
    }

    @Test
    void chainLongerThanQueueSizeWithoutLoopCannotExist() throws Exception {
        // A chain of exactly queue-size descriptors is legal and must not be mistaken for a loop.
        for (int i = 0; i < QSIZE; i++) {
            f.writeDesc(i, buf + 16L * i, 16, i + 1 < QSIZE ? DESC_F_NEXT : 0, i + 1);
        }
        f.makeAvailable(0, 0, 1, QSIZE);
        DescriptorChain chain = new DescriptorChain();
        assertThat(f.device.pop(chain)).isTrue();
        assertThat(chain.count()).isEqualTo(QSIZE);
    }

    @Test
    void nextOutOfRange() throws Exception {
        f.writeDesc(0, buf, 16, DESC_F_NEXT, QSIZE);
        f.makeAvailable(0, 0, 1, QSIZE);
        assertThat(popError()).isEqualTo(new RingError.NextOutOfRange(0, QSIZE, QSIZE, false));
    }

    @Test
    void headOutOfRange() throws Exception {
        f.makeAvailable(0, QSIZE + 3, 1, QSIZE);
        assertThat(popError()).isEqualTo(new RingError.HeadOutOfRange(QSIZE + 3, QSIZE));
    }

    @Test
    void availIndexJumpsPastQueueSize() throws Exception {
        f.makeAvailable(0, 0, QSIZE + 1, QSIZE);
        assertThat(popError()).isEqualTo(new RingError.AvailIndexJump(QSIZE + 1, 0, QSIZE));
    }

    @Test
    void availIndexMovingBackwardsIsAJumpToo() throws Exception {
        f.makeAvailable(0, 0, 0xffff, QSIZE);
        assertThat(popError()).isInstanceOf(RingError.AvailIndexJump.class);
    }

    @Test
    void bufferOutsideGuestMemory() throws Exception {
        f.writeDesc(0, BASE + RingFixture.SIZE - 8, 16, 0, 0);
        f.makeAvailable(0, 0, 1, QSIZE);
        assertThat(popError()).isEqualTo(new RingError.BufferOutsideMemory(0, BASE + RingFixture.SIZE - 8, 16));
    }

    @Test
    void bufferBelowGuestMemory() throws Exception {
        f.writeDesc(0, 0x1000, 16, 0, 0);
        f.makeAvailable(0, 0, 1, QSIZE);
        assertThat(popError()).isInstanceOf(RingError.BufferOutsideMemory.class);
    }

    @Test
    void bufferAddressPlusLengthOverflows() throws Exception {
        f.writeDesc(0, 0xffff_ffff_ffff_ff00L, 0x1000, 0, 0);
        f.makeAvailable(0, 0, 1, QSIZE);
        assertThat(popError()).isInstanceOf(RingError.BufferOutsideMemory.class);
    }

    @Test
    void readableAfterWritable() throws Exception {
        f.writeDesc(0, buf, 16, DESC_F_WRITE | DESC_F_NEXT, 1);
        f.writeDesc(1, buf + 16, 16, 0, 0);
        f.makeAvailable(0, 0, 1, QSIZE);
        assertThat(popError()).isEqualTo(new RingError.ReadableAfterWritable(0));
    }

    @Test
    void indirectTableLengthNotMultipleOf16() throws Exception {
        f.writeDesc(0, buf, 24, DESC_F_INDIRECT, 0);
        f.makeAvailable(0, 0, 1, QSIZE);
        assertThat(popError()).isEqualTo(new RingError.BadIndirectLength(0, 24));
    }

    @Test
    void emptyIndirectTable() throws Exception {
        f.writeDesc(0, buf, 0, DESC_F_INDIRECT, 0);
        f.makeAvailable(0, 0, 1, QSIZE);
        assertThat(popError()).isEqualTo(new RingError.BadIndirectLength(0, 0));
    }

    @Test
    void indirectTableOutsideGuestMemory() throws Exception {
        f.writeDesc(0, BASE + RingFixture.SIZE - 16, 32, DESC_F_INDIRECT, 0);
        f.makeAvailable(0, 0, 1, QSIZE);
        assertThat(popError()).isInstanceOf(RingError.BufferOutsideMemory.class);
    }

    @Test
    void indirectInsideIndirect() throws Exception {
        long table = f.buffer(64);
        f.writeDescAt(table, buf, 16, DESC_F_NEXT, 1);
        f.writeDescAt(table + 16, table, 32, DESC_F_INDIRECT, 0);
        f.writeDesc(0, table, 32, DESC_F_INDIRECT, 0);
        f.makeAvailable(0, 0, 1, QSIZE);
        assertThat(popError()).isEqualTo(new RingError.NestedIndirect(0));
    }

    @Test
    void indirectTogetherWithNext() throws Exception {
        long table = f.buffer(16);
        f.writeDescAt(table, buf, 16, 0, 0);
        f.writeDesc(0, table, 16, DESC_F_INDIRECT | DESC_F_NEXT, 1);
        f.writeDesc(1, buf, 16, 0, 0);
        f.makeAvailable(0, 0, 1, QSIZE);
        assertThat(popError()).isEqualTo(new RingError.IndirectWithNext(0));
    }

    @Test
    void loopInsideIndirectTable() throws Exception {
        long table = f.buffer(32);
        f.writeDescAt(table, buf, 16, DESC_F_NEXT, 1);
        f.writeDescAt(table + 16, buf, 16, DESC_F_NEXT, 0);
        f.writeDesc(0, table, 32, DESC_F_INDIRECT, 0);
        f.makeAvailable(0, 0, 1, QSIZE);
        assertThat(popError()).isEqualTo(new RingError.ChainLoop(0, 2, true));
    }

    @Test
    void nextOutsideIndirectTable() throws Exception {
        long table = f.buffer(32);
        f.writeDescAt(table, buf, 16, DESC_F_NEXT, 2);
        f.writeDesc(0, table, 32, DESC_F_INDIRECT, 0);
        f.makeAvailable(0, 0, 1, QSIZE);
        assertThat(popError()).isEqualTo(new RingError.NextOutOfRange(0, 2, 2, true));
    }

    @Test
    void indirectWithoutTheFeature() throws Exception {
        try (RingFixture plain = new RingFixture(QSIZE, 0)) {
            long table = plain.buffer(16);
            plain.writeDescAt(table, table, 16, 0, 0);
            plain.writeDesc(0, table, 16, DESC_F_INDIRECT, 0);
            plain.makeAvailable(0, 0, 1, QSIZE);
            assertThatThrownBy(() -> plain.device.pop(new DescriptorChain()))
                    .isInstanceOfSatisfying(VirtqueueException.class,
                            e -> assertThat(e.error()).isEqualTo(new RingError.IndirectNotNegotiated(0)));
        }
    }

    @Test
    @io.jvirtio.core.spec.Conformance("split-dev-6")
    void directDescriptorsFollowedByAnIndirectOneAreValid() throws Exception {
        // §2.7.5.3.2: the device MUST handle zero or more direct descriptors followed by one indirect,
        // and MUST ignore the WRITE flag of the descriptor that points to the table.
        long table = f.buffer(32);
        f.writeDescAt(table, buf + 100, 10, DESC_F_NEXT, 1);
        f.writeDescAt(table + 16, buf + 200, 20, DESC_F_WRITE, 0);
        f.writeDesc(0, buf, 5, DESC_F_NEXT, 1);
        f.writeDesc(1, table, 32, DESC_F_INDIRECT | DESC_F_WRITE, 0);
        f.makeAvailable(0, 0, 1, QSIZE);
        DescriptorChain chain = new DescriptorChain();
        assertThat(f.device.pop(chain)).isTrue();
        assertThat(chain.count()).isEqualTo(3);
        assertThat(chain.readableCount()).isEqualTo(2);
        assertThat(chain.address(1)).isEqualTo(buf + 100);
        assertThat(chain.isWritable(2)).isTrue();
        assertThat(chain.writableBytes()).isEqualTo(20);
    }

    @Test
    void chainLongerThanFourGiB() throws Exception {
        // Sparse memfd: 3 GiB of address space costs nothing until touched.
        long big = 3L << 30;
        try (GuestMemory mem = GuestMemory.memfd(0, big)) {
            RingAddresses ring = SplitLayout.modern(QSIZE).at(0);
            DeviceQueue q = DeviceQueue.create(mem, 5, QSIZE, ring, 0, QueueState.INITIAL);
            for (int i = 0; i < 2; i++) {
                long at = 16L * i;
                mem.writeU64(at, 0x1000);
                mem.writeU32(at + 8, (int) 0x9000_0000L);
                mem.writeU16(at + 12, (short) (i == 0 ? DESC_F_NEXT : 0));
                mem.writeU16(at + 14, (short) 1);
            }
            mem.writeU16(ring.availRing() + 2, (short) 1);
            assertThatThrownBy(() -> q.pop(new DescriptorChain()))
                    .isInstanceOfSatisfying(VirtqueueException.class, e -> {
                        assertThat(e.error()).isEqualTo(new RingError.ChainTooLong(0, 0x1_2000_0000L));
                        assertThat(e.queueIndex()).isEqualTo(5);
                        assertThat(e.getMessage()).contains("virtqueue 5", "2^32");
                    });
        }
    }

    @Test
    void ringPartsMustBeInsideMemoryAndAligned() {
        RingAddresses good = f.driver.addresses();
        assertThatThrownBy(() -> DeviceQueue.create(f.memory, 1, QSIZE,
                new RingAddresses(good.descTable() + 8, good.availRing(), good.usedRing()), 0, QueueState.INITIAL))
                .isInstanceOfSatisfying(VirtqueueException.class, e -> assertThat(e.error())
                        .isEqualTo(new RingError.RingMisaligned("descriptor table", good.descTable() + 8, 16)));
        assertThatThrownBy(() -> DeviceQueue.create(f.memory, 1, QSIZE,
                new RingAddresses(good.descTable(), good.availRing() + 1, good.usedRing()), 0, QueueState.INITIAL))
                .isInstanceOfSatisfying(VirtqueueException.class,
                        e -> assertThat(e.error()).isInstanceOf(RingError.RingMisaligned.class));
        assertThatThrownBy(() -> DeviceQueue.create(f.memory, 1, QSIZE,
                new RingAddresses(good.descTable(), good.availRing(), BASE + RingFixture.SIZE - 16), 0, QueueState.INITIAL))
                .isInstanceOfSatisfying(VirtqueueException.class,
                        e -> assertThat(e.error()).isInstanceOf(RingError.RingOutsideMemory.class));
    }
}
