package io.jvirtio.core.queue.packed;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;

/** The driver's record of the ids in flight in the order made available (IN_ORDER on a packed ring). */
class IdOrderTest {
    @Test
    void idsLeaveOldestFirstAcrossTheEndOfTheirRing() {
        IdOrder o = new IdOrder(4);
        int[] slotsOf = {1, 2, 3, 4};
        for (int round = 0; round < 3; round++) { // the ring of ids wraps: oldest moves 0, 3, 2
            o.add(2);
            o.add(0);
            o.add(3);
            assertThat(o.count()).isEqualTo(3);
            assertThat(o.slotsThrough(2, slotsOf)).as("the batch closed by the oldest alone").isEqualTo(3);
            assertThat(o.slotsThrough(0, slotsOf)).isEqualTo(3 + 1);
            assertThat(o.slotsThrough(3, slotsOf)).as("a batch of all three").isEqualTo(3 + 1 + 4);
            assertThat(o.slotsThrough(1, slotsOf)).as("an id not in flight").isEqualTo(-1);
            assertThat(o.takeOldest()).isEqualTo(2);
            assertThat(o.slotsThrough(2, slotsOf)).as("an id just taken off is no longer in flight").isEqualTo(-1);
            assertThat(o.takeOldest()).isEqualTo(0);
            assertThat(o.takeOldest()).isEqualTo(3);
            assertThat(o.count()).isZero();
            assertThat(o.slotsThrough(3, slotsOf)).as("nothing in flight").isEqualTo(-1);
        }
    }
}
