/*
 * Unit tests for eventlog's query rules (docs/api.md 8.3): only "after"
 * (integer >= 0, default 0) and "limit" (1..1000, default 100), each at
 * most once, never empty; anything else 400 invalid_query with the
 * wording of the other lists.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "eventlog.h"
#include "util.h"

static int parse(const struct query_param *params, size_t count, struct eventlog_query *q,
                 struct api_error *err)
{
    api_error_clear(err);
    return eventlog_parse_query(params, count, q, err);
}

/* Expects the parameters to be refused with exactly this message. */
static void expect_bad(const struct query_param *params, size_t count, const char *message)
{
    struct eventlog_query q;
    struct api_error err;

    assert_int_equal(parse(params, count, &q, &err), -1);
    assert_int_equal(err.status, 400);
    assert_string_equal(err.code, "invalid_query");
    assert_string_equal(err.field, "");
    assert_string_equal(err.message, message);
}

static void expect_bad1(const char *key, const char *value, const char *message)
{
    struct query_param p = {key, value};
    expect_bad(&p, 1, message);
}

static void test_defaults(void **state)
{
    struct eventlog_query q;
    struct api_error err;
    (void)state;

    assert_int_equal(parse(NULL, 0, &q, &err), 0);
    assert_int_equal(q.after, 0);
    assert_int_equal(q.limit, 100);
}

static void test_valid_values(void **state)
{
    struct query_param p[] = {{"limit", "1000"}, {"after", "9223372036854775807"}};
    struct eventlog_query q;
    struct api_error err;
    (void)state;

    assert_int_equal(parse(p, ARRAY_LEN(p), &q, &err), 0);
    assert_int_equal(q.limit, 1000);
    assert_true(q.after == INT64_MAX);

    struct query_param edges[] = {{"after", "0"}, {"limit", "1"}};
    assert_int_equal(parse(edges, ARRAY_LEN(edges), &q, &err), 0);
    assert_int_equal(q.after, 0);
    assert_int_equal(q.limit, 1);
}

static void test_bad_after(void **state)
{
    (void)state;
    const char *bad[] = {"-1", "01", "+1", "1.0", "1e3", "x", " 1", "9223372036854775808"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        expect_bad1("after", bad[i], "after must be an integer of 0 or more");
    expect_bad1("after", "", "after must not be empty");
    expect_bad1("after", NULL, "after must not be empty");
}

static void test_bad_limit(void **state)
{
    (void)state;
    const char *bad[] = {"0", "1001", "-5", "05", "x", "99999999999999999999"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        expect_bad1("limit", bad[i], "limit must be an integer from 1 to 1000");
    expect_bad1("limit", "", "limit must not be empty");
}

static void test_repeated_and_unknown(void **state)
{
    (void)state;
    struct query_param twice[] = {{"after", "1"}, {"after", "1"}};
    expect_bad(twice, ARRAY_LEN(twice), "after is given more than once");
    struct query_param limits[] = {{"limit", "5"}, {"after", "2"}, {"limit", "5"}};
    expect_bad(limits, ARRAY_LEN(limits), "limit is given more than once");
    /* The log has one order and pages by position: no offset, no order_by. */
    const char *unknown[] = {"offset", "order_by", "Limit", "position", ""};
    for (size_t i = 0; i < ARRAY_LEN(unknown); i++)
        expect_bad1(unknown[i], "1", "unknown query parameter; allowed: after, limit");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_valid_values),
        cmocka_unit_test(test_bad_after),
        cmocka_unit_test(test_bad_limit),
        cmocka_unit_test(test_repeated_and_unknown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
