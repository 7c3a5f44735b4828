package io.jvirtio.vhostuser;

import jdk.jfr.Category;
import jdk.jfr.Description;
import jdk.jfr.Event;
import jdk.jfr.Label;
import jdk.jfr.Name;

/**
 * JDK Flight Recorder events of the vhost-user back-end, so that {@code jcmd PID JFR.start} explains a
 * back-end that misbehaves: sessions (a duration event from connection to end, with why it ended), rings
 * the device found broken, dirty logging switched on and off (live migration).
 */
final class Events {
    private Events() {
    }

    @Name("io.jvirtio.vhostuser.Session")
    @Label("vhost-user Session")
    @Category({"jvirtio", "vhost-user"})
    @Description("A front-end connection, from accept (or connect) to its end")
    static final class Session extends Event {
        @Label("Session")
        String name;
        @Label("End Reason")
        String endReason;
        @Label("Messages")
        long messages;
    }

    @Name("io.jvirtio.vhostuser.RingError")
    @Label("vhost-user Ring Error")
    @Category({"jvirtio", "vhost-user"})
    @Description("The device found a ring unusable (DEVICE_NEEDS_RESET; the front-end's err eventfd is signalled)")
    static final class RingError extends Event {
        @Label("Session")
        String session;
        @Label("Reason")
        String reason;
    }

    @Name("io.jvirtio.vhostuser.DirtyLog")
    @Label("vhost-user Dirty Logging")
    @Category({"jvirtio", "vhost-user"})
    @Description("Dirty-page logging for live migration switched on or off (VHOST_F_LOG_ALL)")
    static final class DirtyLog extends Event {
        @Label("Session")
        String session;
        @Label("Logging")
        boolean on;
    }
}
