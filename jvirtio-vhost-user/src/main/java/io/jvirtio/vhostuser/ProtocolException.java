package io.jvirtio.vhostuser;

/** A message that breaks the protocol: the connection that sent it is closed, with this as the reason. */
public final class ProtocolException extends Exception {
    public ProtocolException(String message) {
        super(message);
    }

    public ProtocolException(String message, Throwable cause) {
        super(message, cause);
    }
}
