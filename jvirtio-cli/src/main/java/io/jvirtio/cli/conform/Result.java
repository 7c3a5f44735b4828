package io.jvirtio.cli.conform;

/** What one check found: PASS, FAIL or SKIP (not applicable to what the back-end offers), and why. */
public record Result(String id, Status status, String detail) {
    public enum Status { PASS, FAIL, SKIP }

    static Result pass(String id, String detail) {
        return new Result(id, Status.PASS, detail);
    }

    static Result fail(String id, String detail) {
        return new Result(id, Status.FAIL, detail);
    }

    static Result skip(String id, String detail) {
        return new Result(id, Status.SKIP, detail);
    }
}
