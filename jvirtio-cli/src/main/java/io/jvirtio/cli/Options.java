package io.jvirtio.cli;

import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A small {@code --name value} / {@code --flag} parser. Unknown options and malformed values are
 * {@link UsageException}s naming the option and the value.
 */
final class Options {
    private final Map<String, String> values = new HashMap<>();
    private final Map<String, List<String>> all = new HashMap<>();
    private final Set<String> flags = new HashSet<>();
    private final boolean help;

    /**
     * @param valued options that take a value
     * @param known  flags (options without a value); {@code --no-X} negates a known flag {@code --X}
     */
    Options(List<String> args, Set<String> valued, Set<String> known) throws UsageException {
        boolean h = false;
        for (int i = 0; i < args.size(); i++) {
            String a = args.get(i);
            if (a.equals("--help") || a.equals("-h")) {
                h = true;
                continue;
            }
            String name = a;
            String value = null;
            int eq = a.indexOf('=');
            if (a.startsWith("--") && eq > 0) {
                name = a.substring(0, eq);
                value = a.substring(eq + 1);
            }
            if (valued.contains(name)) {
                if (value == null) {
                    if (i + 1 >= args.size()) {
                        throw new UsageException("option " + name + " needs a value");
                    }
                    value = args.get(++i);
                }
                values.put(name, value);
                all.computeIfAbsent(name, k -> new java.util.ArrayList<>()).add(value);
            } else if (known.contains(name) && value == null) {
                flags.add(name);
            } else if (name.startsWith("--no-") && known.contains("--" + name.substring(5)) && value == null) {
                flags.remove("--" + name.substring(5));
                values.put(name, "");
            } else {
                throw new UsageException("unknown option '" + a + "'");
            }
        }
        this.help = h;
    }

    boolean help() {
        return help;
    }

    boolean flag(String name, boolean dflt) {
        if (flags.contains(name)) {
            return true;
        }
        if (values.containsKey("--no-" + name.substring(2))) {
            return false;
        }
        return dflt;
    }

    /** Every value given for a repeatable option, in order. */
    List<String> values(String name) {
        return all.getOrDefault(name, List.of());
    }

    /** The raw value of {@code name}, or null. */
    String value(String name) {
        return values.get(name);
    }

    /** An integer in {@code [min, max]}; accepts a K/M suffix (×1024, ×1024²) where sizes are meant. */
    long number(String name, long dflt, long min, long max) throws UsageException {
        String v = values.get(name);
        if (v == null) {
            return dflt;
        }
        long n;
        try {
            String s = v.replace("_", "");
            long mult = 1;
            if (s.endsWith("K") || s.endsWith("k")) {
                mult = 1024;
                s = s.substring(0, s.length() - 1);
            } else if (s.endsWith("M") || s.endsWith("m")) {
                mult = 1024 * 1024;
                s = s.substring(0, s.length() - 1);
            }
            n = Math.multiplyExact(Long.parseLong(s), mult);
        } catch (NumberFormatException | ArithmeticException e) {
            throw new UsageException(name + " '" + v + "' is not a number");
        }
        if (n < min || n > max) {
            throw new UsageException(name + " " + v + " is out of range " + min + ".." + max);
        }
        return n;
    }
}
