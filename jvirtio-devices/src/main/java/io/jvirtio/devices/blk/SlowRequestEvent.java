package io.jvirtio.devices.blk;

import jdk.jfr.Category;
import jdk.jfr.Description;
import jdk.jfr.Event;
import jdk.jfr.EventType;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.Timespan;

/**
 * A block request that took longer than {@link #THRESHOLD_NANOS} from the ring to its completion (JDK
 * Flight Recorder): what, where, how long, with what result. Only slow requests make one, so a recording
 * costs the fast path a clock read per request and nothing else.
 */
@Name("io.jvirtio.blk.SlowRequest")
@Label("Slow Block Request")
@Category({"jvirtio", "blk"})
@Description("A virtio-blk request slower than -Djvirtio.jfr.slowRequestMs (default 10)")
final class SlowRequestEvent extends Event {
    static final long THRESHOLD_NANOS = Long.getLong("jvirtio.jfr.slowRequestMs", 10) * 1_000_000L;
    /** Asked before an event is made: a slow request allocates nothing unless a recording wants the event. */
    private static final EventType TYPE = EventType.getEventType(SlowRequestEvent.class);

    @Label("Queue")
    int queue;
    @Label("Operation")
    String op;
    @Label("Offset")
    long offset;
    @Label("Length")
    long length;
    @Label("Took")
    @Timespan(Timespan.NANOSECONDS)
    long took;
    @Label("Result")
    int result;

    static void report(int queue, BlockRequest r, long took, int result) {
        if (!TYPE.isEnabled()) {
            return; // no recording, or this event off: on a machine short of CPU many requests are slow
        }
        SlowRequestEvent e = new SlowRequestEvent();
        if (e.shouldCommit()) {
            e.queue = queue;
            e.op = r.op().name();
            e.offset = r.offset();
            e.length = r.length();
            e.took = took;
            e.result = result;
            e.commit();
        }
    }
}
