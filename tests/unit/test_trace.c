/*
 * Unit tests for trace: traceparent headers are read as W3C Trace Context
 * version 00 says (lower-case hex, no all-zero ids, version ff refused,
 * later versions read by their prefix), child spans keep the trace and
 * change the span, and what is formatted parses back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "trace.h"

#define GOOD "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static void test_reads_a_valid_header(void **state)
{
    (void)state;
    struct trace_context t;

    assert_int_equal(trace_parse(GOOD, &t), 0);
    assert_string_equal(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(t.span_id, "00f067aa0ba902b7");
    assert_int_equal(t.flags, 1);
    assert_int_equal(trace_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &t), 0);
    assert_int_equal(t.flags, 0);
    /* A later version: the version-00 fields, and whatever follows a "-". */
    assert_int_equal(
        trace_parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-not", &t), 0);
    assert_string_equal(t.span_id, "00f067aa0ba902b7");
}

static void test_refuses_invalid_headers(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "00",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  /* upper case */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  /* zero trace */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  /* zero span */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  /* version ff */
        "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",  /* misplaced - */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", /* 00 is 55 long */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", /* no - after */
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
    };
    struct trace_context t;

    memset(&t, 'x', sizeof(t));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (trace_parse(bad[i], &t) == 0)
            fail_msg("accepted \"%s\"", bad[i]);
    }
    assert_int_equal(trace_parse(NULL, &t), -1);
    assert_int_equal(t.trace_id[0], 'x'); /* untouched */
}

static void test_child_keeps_the_trace_and_makes_a_new_span(void **state)
{
    (void)state;
    struct trace_context parent, child, again;
    char text[TRACE_PARENT_LEN + 1];

    assert_int_equal(trace_parse(GOOD, &parent), 0);
    trace_child(&parent, &child);
    assert_string_equal(child.trace_id, parent.trace_id);
    assert_string_not_equal(child.span_id, parent.span_id);
    assert_int_equal(child.flags, parent.flags);
    trace_format(&child, text, sizeof(text));
    assert_int_equal(strlen(text), TRACE_PARENT_LEN);
    assert_int_equal(trace_parse(text, &again), 0);
    assert_string_equal(again.trace_id, child.trace_id);
    assert_string_equal(again.span_id, child.span_id);
    /* In place, as the HTTP layer does it. */
    trace_child(&parent, &parent);
    assert_string_equal(parent.trace_id, child.trace_id);
    assert_string_not_equal(parent.span_id, child.span_id);
}

static void test_new_traces_are_valid_and_distinct(void **state)
{
    (void)state;
    struct trace_context a, b, back;
    char text[TRACE_PARENT_LEN + 1];

    trace_start(&a);
    trace_start(&b);
    assert_string_not_equal(a.trace_id, b.trace_id);
    trace_format(&a, text, sizeof(text));
    assert_int_equal(trace_parse(text, &back), 0);
    assert_string_equal(back.trace_id, a.trace_id);
    assert_int_equal(back.flags, 1); /* sampled */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_a_valid_header),
        cmocka_unit_test(test_refuses_invalid_headers),
        cmocka_unit_test(test_child_keeps_the_trace_and_makes_a_new_span),
        cmocka_unit_test(test_new_traces_are_valid_and_distinct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
