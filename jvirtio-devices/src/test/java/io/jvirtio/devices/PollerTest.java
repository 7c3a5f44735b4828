package io.jvirtio.devices;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The {@link Poller}'s producers: one leaves only once the poller is out of it (what it reads from can then be
 * closed — a TAP's descriptor, whose number the kernel would give the next file opened), and one that arms a wake-up
 * before the poller sleeps has it woken.
 */
@Timeout(30)
class PollerTest {
    Poller poller;

    @AfterEach
    void tearDown() {
        if (poller != null) {
            poller.close();
        }
    }

    @Test
    void aProducerRemovedInTheMiddleOfItsRoundIsLeftOnlyOnceTheRoundEnds() throws Exception {
        poller = new Poller("poller-test", TimeUnit.SECONDS.toNanos(30));
        AtomicBoolean inside = new AtomicBoolean();
        AtomicBoolean release = new AtomicBoolean();
        AtomicInteger callsAfterRemoval = new AtomicInteger();
        AtomicBoolean removed = new AtomicBoolean();
        Poller.Producer p = () -> {
            if (removed.get()) {
                callsAfterRemoval.incrementAndGet();
            }
            inside.set(true);
            while (!release.get()) {
                Thread.onSpinWait(); // a round that takes its time: a read, a copy
            }
            inside.set(false);
            return true;
        };
        poller.addProducer(p);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (!inside.get() && System.nanoTime() < deadline) {
            Thread.onSpinWait();
        }
        assertThat(inside.get()).as("the poller runs the producer").isTrue();
        AtomicBoolean insideAtReturn = new AtomicBoolean(true);
        Thread remover = Thread.ofPlatform().start(() -> {
            poller.removeProducer(p);
            insideAtReturn.set(inside.get());
            removed.set(true);
        });
        remover.join(300); // removeProducer waits for the round; without the wait it returns at once
        release.set(true);
        remover.join();
        assertThat(insideAtReturn.get()).as("the poller inside the producer when removeProducer returned").isFalse();
        Thread.sleep(20);
        assertThat(callsAfterRemoval.get()).as("rounds of the producer after its removal").isZero();
    }

    @Test
    void aProducersArmedWakeUpEndsThePollersSleep() throws Exception {
        poller = new Poller("poller-test", TimeUnit.MICROSECONDS.toNanos(50));
        AtomicBoolean work = new AtomicBoolean();
        AtomicInteger rounds = new AtomicInteger();
        AtomicInteger armed = new AtomicInteger();
        poller.addProducer(new Poller.Producer() {
            @Override
            public boolean produce() {
                rounds.incrementAndGet();
                return work.getAndSet(false);
            }

            @Override
            public boolean arm() {
                armed.incrementAndGet();
                return false;
            }
        });
        Thread t = pollerThread();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        // asleep with the producer armed (it may have been asleep already, before the producer came, and been woken)
        while ((t.getState() != Thread.State.WAITING || armed.get() == 0) && System.nanoTime() < deadline) {
            Thread.sleep(1);
        }
        assertThat(t.getState()).as("the poller, idle, sleeps").isEqualTo(Thread.State.WAITING);
        assertThat(armed.get()).as("the producer was asked to arm before the poller slept").isPositive();
        int before = rounds.get();
        Thread.sleep(50);
        assertThat(rounds.get()).as("rounds while asleep").isEqualTo(before);
        work.set(true);
        poller.wake(); // what the producer's waker does when its work comes
        deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (work.get() && System.nanoTime() < deadline) {
            Thread.sleep(1);
        }
        assertThat(work.get()).as("the work, taken in the round the wake-up started").isFalse();
    }

    private static Thread pollerThread() {
        return Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().equals("poller-test"))
                .findFirst().orElseThrow();
    }
}
