package io.jvirtio.core.spec;

import java.lang.annotation.Documented;
import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * Marks a test as the one that fails when the named normative statements are broken. The ids are those
 * of the normative checklist ({@code docs/conformance.md}); a build test checks that every id there is
 * either tested (named by at least one annotated test) or marked not applicable with a reason.
 */
@Documented
@Retention(RetentionPolicy.RUNTIME)
@Target({ElementType.METHOD, ElementType.TYPE})
public @interface Conformance {
    /** Checklist ids, such as {@code "pci-drv-4"}. */
    String[] value();
}
