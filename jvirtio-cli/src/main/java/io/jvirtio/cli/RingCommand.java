package io.jvirtio.cli;

import java.io.PrintStream;
import java.util.List;
import java.util.Set;

/** {@code jvirtio ring}: a driver and a device thread moving verified buffers through one split ring. */
final class RingCommand implements Command {
    @Override
    public String name() {
        return "ring";
    }

    @Override
    public String summary() {
        return "move verified buffers between a driver thread and a device thread over a split ring";
    }

    @Override
    public String usage() {
        return """
                Usage: jvirtio ring [options]

                A driver thread and a device thread share one split virtqueue (VIRTIO 1.2 §2.7) in
                memfd-backed guest memory. The driver sends numbered requests (header + payload + reply
                buffer); the device validates each descriptor chain, checksums the payload and writes the
                checksum back; the driver verifies every reply. Each side sleeps until notified.

                Options:
                  --buffers N        buffers to move (default 2000000; K/M suffixes allowed)
                  --queue-size N     ring entries, a power of two up to 32768 (default 256)
                  --payload BYTES    device-readable bytes per buffer, 16..65536 (default 64)
                  --batch N          buffers added between kicks (default 32)
                  --[no-]event-idx   negotiate VIRTIO_F_EVENT_IDX (default on)
                  --[no-]indirect    negotiate VIRTIO_F_INDIRECT_DESC (default on)
                  -h, --help         this text

                Example:
                  jvirtio ring --buffers 1M --queue-size 1024 --no-event-idx
                """;
    }

    @Override
    public int run(List<String> args, PrintStream out, PrintStream err) throws Exception {
        Options o = new Options(args, Set.of("--buffers", "--queue-size", "--payload", "--batch"),
                Set.of("--event-idx", "--indirect"));
        if (o.help()) {
            out.print(usage());
            return 0;
        }
        long queueSize = o.number("--queue-size", 256, 1, 32768);
        if (Long.bitCount(queueSize) != 1) {
            throw new UsageException("--queue-size " + queueSize + " is not a power of two");
        }
        RingDemo.Config config = new RingDemo.Config(
                o.number("--buffers", 2_000_000, 1, Long.MAX_VALUE / 65536),
                (int) queueSize,
                (int) o.number("--payload", 64, 16, 65536),
                o.flag("--event-idx", true),
                o.flag("--indirect", true),
                (int) o.number("--batch", 32, 1, 32768));
        out.printf("jvirtio ring: %,d buffers of %d bytes, queue size %d, EVENT_IDX %s, INDIRECT_DESC %s, batch %d%n",
                config.buffers(), config.payload(), config.queueSize(), onOff(config.eventIdx()),
                onOff(config.indirect()), config.batch());
        long t0 = System.nanoTime();
        RingDemo.Result r = new RingDemo(config).run(done -> {
            double s = (System.nanoTime() - t0) / 1e9;
            err.printf("\r  %,d / %,d buffers  %.2f M/s   ", done, config.buffers(), done / s / 1e6);
        });
        err.println();
        double secs = r.nanos() / 1e9;
        out.println("  ring: " + r.ringDescription());
        out.printf("  %-28s %,d (all replies verified: %s)%n", "buffers", r.buffers(),
                r.verified() == r.buffers() ? "yes" : "NO");
        out.printf("  %-28s %,d out, %,d in%n", "bytes", r.bytesOut(), r.bytesIn());
        out.printf("  %-28s %.3f s%n", "elapsed", secs);
        out.printf("  %-28s %.2f M buffers/s, %.1f MB/s payload%n", "rate", r.buffers() / secs / 1e6,
                r.bytesOut() / secs / 1e6);
        out.printf("  %-28s %,d sent, %,d suppressed%n", "driver → device kicks", r.kicks(), r.kicksSuppressed());
        out.printf("  %-28s %,d sent, %,d suppressed%n", "device → driver interrupts", r.interrupts(),
                r.interruptsSuppressed());
        return r.verified() == r.buffers() ? 0 : 1;
    }

    private static String onOff(boolean b) {
        return b ? "on" : "off";
    }
}
