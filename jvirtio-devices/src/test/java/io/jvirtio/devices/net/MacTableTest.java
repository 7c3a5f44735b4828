package io.jvirtio.devices.net;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;

/** The switch's address table: learning, moving, forgetting a port's addresses, and its bound. */
class MacTableTest {
    @Test
    void anAddressIsFoundBehindThePortItWasLastSeenOn() {
        MacTable<String> t = new MacTable<>();
        assertThat(t.lookup(1)).isNull();
        t.learn(1, "a");
        t.learn(2, "b");
        assertThat(t.lookup(1)).isEqualTo("a");
        assertThat(t.lookup(2)).isEqualTo("b");
        t.learn(1, "b"); // moved
        assertThat(t.lookup(1)).isEqualTo("b");
        assertThat(t.lookup(3)).isNull();
    }

    @Test
    void aPortLeavingTakesItsAddressesAndOnlyThose() {
        MacTable<String> t = new MacTable<>();
        t.learn(1, "a");
        t.learn(2, "b");
        t.learn(3, "a");
        t.forget("a");
        assertThat(t.lookup(1)).as("unknown again: flooded, not sent to a port that left").isNull();
        assertThat(t.lookup(3)).isNull();
        assertThat(t.lookup(2)).isEqualTo("b");
        t.learn(1, "c");
        assertThat(t.lookup(1)).isEqualTo("c");
    }

    @Test
    void theTableHoldsExactlySizeAddressesAndTheyStillMove() {
        MacTable<Integer> t = new MacTable<>();
        for (int i = 0; i < MacTable.SIZE; i++) {
            t.learn(1000 + i, i);
        }
        assertThat(t.lookup(1000 + MacTable.SIZE - 1)).isEqualTo(MacTable.SIZE - 1);
        t.learn(1, -1);
        assertThat(t.lookup(1)).as("one more: not remembered, flooded").isNull();
        t.learn(1000, 7);
        assertThat(t.lookup(1000)).as("a full table still follows an address that moves").isEqualTo(7);
    }
}
