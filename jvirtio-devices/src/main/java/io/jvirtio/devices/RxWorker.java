package io.jvirtio.devices;

import io.jvirtio.core.device.DeviceContext;
import io.jvirtio.core.queue.DescriptorChain;
import io.jvirtio.core.queue.DeviceQueue;
import io.jvirtio.core.queue.Interrupt;
import io.jvirtio.core.queue.VirtqueueException;

/**
 * Serves a device-to-driver queue (net receive, console receive): data arrives from a backend at its own
 * pace, buffers from the driver at its own pace, and this worker joins them. It wakes on either — a queue
 * notification or {@link #wake()} from the backend — and asks for notifications only while data waits
 * for buffers.
 */
public final class RxWorker extends QueueThread {
    /** The data side: what is waiting to be delivered. Called only on the worker thread. */
    public interface Source {
        /** True when there is data to deliver. */
        boolean hasPending();

        /**
         * Writes pending data into {@code chain}'s writable buffers and returns the bytes written, or -1
         * when it staged the used elements itself (a frame over several buffers) or gave the chain back
         * with {@link DeviceQueue#undoPop()}.
         */
        int fill(DescriptorChain chain, DeviceQueue queue) throws VirtqueueException;
    }

    private final Source source;

    public RxWorker(String name, DeviceQueue queue, Interrupt interrupt, Source source,
                    DeviceContext.NeedsReset failure) {
        super(name, queue, interrupt, failure);
        this.source = source;
    }

    @Override
    void serve(DescriptorChain chain) throws VirtqueueException {
        while (running() && source.hasPending()) {
            queue.disableNotifications();
            int n = 0;
            while (running() && source.hasPending() && queue.pop(chain)) {
                int written = source.fill(chain, queue);
                if (written >= 0) {
                    queue.addUsed(chain, written);
                }
                if (++n % BATCH == 0) {
                    flush();
                }
            }
            flush();
            // Data waits but the ring is empty: ask for a kick, and re-check for the race.
            if (source.hasPending() && !queue.enableNotifications()) {
                return;
            }
        }
    }
}
