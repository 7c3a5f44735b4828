package io.jvirtio.cli;

/** A command line that cannot be run; the message names the bad value. Exit status 2. */
final class UsageException extends Exception {
    UsageException(String message) {
        super(message);
    }
}
