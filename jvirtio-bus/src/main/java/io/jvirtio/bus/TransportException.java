package io.jvirtio.bus;

/** A transport could not do what the bus or a driver asked (bad capability, no queue, refused vector). */
public final class TransportException extends Exception {
    public TransportException(String message) {
        super(message);
    }

    public TransportException(String message, Throwable cause) {
        super(message, cause);
    }
}
