package io.jvirtio.cli;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The little JSON the control socket speaks: requests are flat objects of strings, numbers and booleans
 * (read into strings); answers are objects, lists, strings, numbers and booleans.
 */
final class Json {
    private Json() {
    }

    /** Parses one flat JSON object; the message says where it went wrong. */
    static Map<String, String> parseFlat(String s) {
        Map<String, String> out = new LinkedHashMap<>();
        int[] at = {skip(s, 0)};
        expect(s, at, '{');
        if (peek(s, at) == '}') {
            at[0]++;
            return out;
        }
        while (true) {
            String key = string(s, at);
            expect(s, at, ':');
            char c = peek(s, at);
            String value;
            if (c == '"') {
                value = string(s, at);
            } else {
                int start = at[0];
                while (at[0] < s.length() && ",} \t\r\n".indexOf(s.charAt(at[0])) < 0) {
                    at[0]++;
                }
                value = s.substring(start, at[0]);
                if (!value.matches("-?[0-9]+(\\.[0-9]+)?|true|false|null")) {
                    throw new IllegalArgumentException("bad value '" + value + "' for \"" + key + "\" at " + start);
                }
            }
            out.put(key, value);
            char n = peek(s, at);
            at[0]++;
            if (n == '}') {
                return out;
            }
            if (n != ',') {
                throw new IllegalArgumentException("expected , or } at " + (at[0] - 1));
            }
        }
    }

    private static int skip(String s, int i) {
        while (i < s.length() && Character.isWhitespace(s.charAt(i))) {
            i++;
        }
        return i;
    }

    private static char peek(String s, int[] at) {
        at[0] = skip(s, at[0]);
        if (at[0] >= s.length()) {
            throw new IllegalArgumentException("unexpected end of request");
        }
        return s.charAt(at[0]);
    }

    private static void expect(String s, int[] at, char c) {
        if (peek(s, at) != c) {
            throw new IllegalArgumentException("expected " + c + " at " + at[0]);
        }
        at[0]++;
    }

    private static String string(String s, int[] at) {
        expect(s, at, '"');
        StringBuilder b = new StringBuilder();
        while (at[0] < s.length()) {
            char c = s.charAt(at[0]++);
            if (c == '"') {
                return b.toString();
            }
            if (c == '\\' && at[0] < s.length()) {
                char e = s.charAt(at[0]++);
                b.append(switch (e) {
                    case 'n' -> '\n';
                    case 't' -> '\t';
                    default -> e;
                });
            } else {
                b.append(c);
            }
        }
        throw new IllegalArgumentException("unterminated string");
    }

    /** Writes maps, lists, strings, numbers and booleans as JSON. */
    static String write(Object v) {
        StringBuilder b = new StringBuilder();
        write(b, v);
        return b.toString();
    }

    private static void write(StringBuilder b, Object v) {
        if (v instanceof Map<?, ?> m) {
            b.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : m.entrySet()) {
                if (!first) {
                    b.append(',');
                }
                first = false;
                write(b, String.valueOf(e.getKey()));
                b.append(':');
                write(b, e.getValue());
            }
            b.append('}');
        } else if (v instanceof List<?> l) {
            b.append('[');
            for (int i = 0; i < l.size(); i++) {
                if (i > 0) {
                    b.append(',');
                }
                write(b, l.get(i));
            }
            b.append(']');
        } else if (v instanceof Number || v instanceof Boolean) {
            b.append(v);
        } else if (v == null) {
            b.append("null");
        } else {
            b.append('"');
            for (char c : v.toString().toCharArray()) {
                switch (c) {
                    case '"' -> b.append("\\\"");
                    case '\\' -> b.append("\\\\");
                    case '\n' -> b.append("\\n");
                    default -> {
                        if (c < 0x20) {
                            b.append(String.format("\\u%04x", (int) c));
                        } else {
                            b.append(c);
                        }
                    }
                }
            }
            b.append('"');
        }
    }
}
