package io.jvirtio.core.spec;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Keeps {@code docs/conformance.md} true: every normative statement has a row; a row marked {@code kept}
 * names the tests that fail without it, and exactly the tests that say so with {@link Conformance}; every
 * id a test names has a row; {@code n/a} and {@code open} rows give their reason. The test sources of
 * every module are read as text, so the check needs no module to depend on another.
 */
class ConformanceTableTest {
    static final Pattern ROW = Pattern.compile("^\\| `([a-z]+-[a-z]+-\\d+)` \\| (.*?) \\| (.*?) \\| (.*?) \\|$");
    static final Pattern ANNOTATION = Pattern.compile(
            "@(?:io\\.jvirtio\\.core\\.spec\\.)?Conformance\\(\\s*(\\{[^}]*}|\"[^\"]*\")\\s*\\)");
    static final Pattern METHOD = Pattern.compile("\\bvoid\\s+(\\w+)\\s*\\(");
    static final Pattern ID = Pattern.compile("\"([^\"]+)\"");
    static final Pattern CHECKLIST_ID = Pattern.compile("^- `([a-z]+-[a-z]+-\\d+)`");

    record Row(String id, String rule, String status, Set<String> tests) {
    }

    static Path repository() {
        for (Path p = Path.of("").toAbsolutePath(); p != null; p = p.getParent()) {
            if (Files.exists(p.resolve("docs/conformance.md")) && Files.exists(p.resolve("pom.xml"))) {
                return p;
            }
        }
        throw new AssertionError("docs/conformance.md not found above " + Path.of("").toAbsolutePath());
    }

    static Map<String, Row> table(Path repo) throws IOException {
        Map<String, Row> rows = new TreeMap<>();
        for (String line : Files.readAllLines(repo.resolve("docs/conformance.md"))) {
            Matcher m = ROW.matcher(line);
            if (m.matches()) {
                Set<String> tests = new TreeSet<>();
                Matcher t = Pattern.compile("`([A-Za-z0-9]+#\\w+)`").matcher(m.group(4));
                while (t.find()) {
                    tests.add(t.group(1));
                }
                assertThat(rows.put(m.group(1), new Row(m.group(1), m.group(2), m.group(3).trim(), tests)))
                        .as("row %s appears once", m.group(1)).isNull();
            }
        }
        return rows;
    }

    /** id → "Class#method" of every annotated test in every module. */
    static Map<String, Set<String>> annotated(Path repo) throws IOException {
        Map<String, Set<String>> byId = new TreeMap<>();
        List<Path> sources;
        try (Stream<Path> s = Files.walk(repo, 12)) {
            // tests, and the jcstress tests (which live in that module's main sources)
            sources = s.filter(p -> p.toString().endsWith(".java") && !p.toString().contains("/target/")
                    && (p.toString().contains("/src/test/java/") || p.toString().contains("/jvirtio-jcstress/src/main/java/")))
                    .toList();
        }
        for (Path file : sources) {
            String text = Files.readString(file);
            String cls = file.getFileName().toString().replace(".java", "");
            Matcher a = ANNOTATION.matcher(text);
            while (a.find()) {
                if (cls.equals("ConformanceTableTest")) {
                    continue; // the patterns above, not annotations
                }
                Matcher method = METHOD.matcher(text);
                assertThat(method.find(a.end())).as("%s: @Conformance at %d is on a method", cls, a.start()).isTrue();
                Matcher ids = ID.matcher(a.group(1));
                while (ids.find()) {
                    byId.computeIfAbsent(ids.group(1), k -> new TreeSet<>()).add(cls + "#" + method.group(1));
                }
            }
        }
        return byId;
    }

    @Test
    void everyStatementHasARowAndEveryRowTellsTheTruthAboutItsTests() throws IOException {
        Path repo = repository();
        Map<String, Row> rows = table(repo);
        Map<String, Set<String>> tests = annotated(repo);
        List<String> problems = new ArrayList<>();

        Path checklist = repo.getParent().resolve("shared/spec/normative-checklist.md");
        if (Files.exists(checklist)) {
            for (String line : Files.readAllLines(checklist)) {
                Matcher m = CHECKLIST_ID.matcher(line);
                if (m.find() && !rows.containsKey(m.group(1))) {
                    problems.add(m.group(1) + ": in the checklist, no row in docs/conformance.md");
                }
            }
        }
        for (var e : tests.entrySet()) {
            if (!rows.containsKey(e.getKey())) {
                problems.add(e.getKey() + ": named by " + e.getValue() + " but has no row");
            }
        }
        int kept = 0, notApplicable = 0, open = 0;
        for (Row r : rows.values()) {
            Set<String> named = tests.getOrDefault(r.id(), Set.of());
            if (!r.tests().equals(named)) {
                problems.add(r.id() + ": the row lists " + r.tests() + " but the tests that name it are " + named
                        + " — tests column should read: " + String.join(", ", named.stream().map(t -> "`" + t + "`").toList()));
            }
            if (r.status().equals("kept")) {
                kept++;
                if (named.isEmpty()) {
                    problems.add(r.id() + ": kept, but no test names it");
                }
            } else if (r.status().startsWith("n/a — ") && r.status().length() > 8) {
                notApplicable++;
            } else if (r.status().startsWith("open — ") && r.status().length() > 9) {
                open++;
            } else {
                problems.add(r.id() + ": status must be `kept`, `n/a — reason` or `open — reason`, not '" + r.status() + "'");
            }
        }
        System.out.printf("conformance: %d statements, %d kept and tested, %d not applicable, %d open%n",
                rows.size(), kept, notApplicable, open);
        assertThat(problems).as("docs/conformance.md").isEmpty();
    }
}
