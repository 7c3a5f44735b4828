package io.jvirtio.devices;

import io.jvirtio.core.queue.DescriptorChain;

/** Serves one descriptor chain of one queue; owned by that queue's worker thread. */
@FunctionalInterface
public interface QueueHandler {
    /** Processes {@code chain} and returns the number of bytes written into its writable buffers. */
    int handle(DescriptorChain chain);
}
