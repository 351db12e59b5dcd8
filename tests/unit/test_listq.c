/*
 * Unit tests for listq: the list query rules of docs/api.md (limit, offset,
 * order_by, filters; everything else 400 invalid_query naming what is
 * allowed) and the ORDER BY text built from the caller's own constants.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "listq.h"
#include "util.h"

static const char *const columns[] = {"id", "user_id", "name", "created_at", NULL};
static const char *const exprs[] = {"id", "user_id", "lower(name)", "created_ms"};
static const char *const statuses[] = {"open", "closed", NULL};

/* Filters of every kind, in this order in struct listq.filters. */
enum { F_USER_ID, F_MONTH, F_YEAR, F_NAME, F_STATUS, F_COUNT };
static const struct listq_filter filters[] = {
    {.name = "user_id", .kind = LISTQ_ID},
    {.name = "month", .kind = LISTQ_INT_RANGE, .min = 1, .max = 12},
    {.name = "year", .kind = LISTQ_INT_RANGE, .min = 1970, .max = 9999},
    {.name = "name", .kind = LISTQ_TEXT},
    {.name = "status", .kind = LISTQ_ENUM, .values = statuses},
};

#define ALLOWED "limit, offset, order_by, user_id, month, year, name, status"

static int parse(const struct query_param *params, size_t count, struct listq *q,
                 struct api_error *err)
{
    api_error_clear(err);
    return listq_parse(params, count, columns, filters, ARRAY_LEN(filters), q, err);
}

/* One parameter key=value (value NULL: the key had no '='). */
static int parse1(const char *key, const char *value, struct listq *q, struct api_error *err)
{
    struct query_param p = {key, value};
    return parse(&p, 1, q, err);
}

static void expect_ok1(const char *key, const char *value, struct listq *q)
{
    struct api_error err;
    if (parse1(key, value, q, &err) != 0)
        fail_msg("%s=%s rejected: %s", key, value ? value : "(none)", err.message);
    assert_int_equal(err.status, 0);
}

static void expect_invalid_query(const struct api_error *err)
{
    assert_int_equal(err->status, 400);
    assert_non_null(err->code);
    assert_string_equal(err->code, "invalid_query");
    assert_string_equal(err->field, "");
    assert_int_equal(err->index, -1);
}

/* Expects key=value alone to be rejected, with this message when given. */
static void expect_bad1(const char *key, const char *value, const char *message)
{
    struct api_error err;
    struct listq q;

    if (parse1(key, value, &q, &err) != -1)
        fail_msg("%s=%s accepted", key, value ? value : "(none)");
    expect_invalid_query(&err);
    if (message && strcmp(err.message, message) != 0)
        fail_msg("%s=%s: expected message \"%s\", got \"%s\"", key, value ? value : "(none)",
                 message, err.message);
}

static void test_defaults(void **state)
{
    struct api_error err;
    struct listq q;
    (void)state;

    memset(&q, 0x5a, sizeof(q));
    assert_int_equal(parse(NULL, 0, &q, &err), 0);
    assert_int_equal(q.limit, LISTQ_DEFAULT_LIMIT);
    assert_int_equal(q.limit, 100);
    assert_int_equal(q.offset, 0);
    assert_int_equal(q.order_index, -1);
    assert_int_equal(q.descending, 0);
    for (int f = 0; f < F_COUNT; f++) {
        assert_int_equal(q.filters[f].present, 0);
        assert_null(q.filters[f].text);
    }
}

static void test_limit(void **state)
{
    struct listq q;
    (void)state;

    expect_ok1("limit", "1", &q);
    assert_int_equal(q.limit, 1);
    expect_ok1("limit", "1000", &q);
    assert_int_equal(q.limit, 1000);
    expect_ok1("limit", "37", &q);
    assert_int_equal(q.limit, 37);
    assert_int_equal(q.offset, 0);

    const char *message = "limit must be an integer from 1 to 1000";
    /* "\xd9\xa1" is ARABIC-INDIC DIGIT ONE. */
    static const char *const bad[] = {"0",  "1001", "01",   "001",      "+5",
                                      "-5", "-0",   "5.0",  "1e2",      " 5",
                                      "5 ", "5x",   "0x10", "\xd9\xa1", "99999999999999999999999"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        expect_bad1("limit", bad[i], message);
}

static void test_offset(void **state)
{
    struct listq q;
    (void)state;

    expect_ok1("offset", "0", &q);
    assert_int_equal(q.offset, 0);
    expect_ok1("offset", "250", &q);
    assert_int_equal(q.offset, 250);
    assert_int_equal(q.limit, 100);
    expect_ok1("offset", "9223372036854775807", &q);
    assert_int_equal(q.offset, INT64_MAX);

    const char *message = "offset must be an integer of 0 or more";
    static const char *const bad[] = {
        "-1", "00", "01", "+0", "+1", "1.0", " 1", "a", "9223372036854775808"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        expect_bad1("offset", bad[i], message);
}

static void test_empty_values(void **state)
{
    (void)state;
    static const char *const keys[] = {"limit", "offset", "order_by", "user_id",
                                       "month", "year",   "name",     "status"};
    char message[64];
    for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
        snprintf(message, sizeof(message), "%s must not be empty", keys[i]);
        expect_bad1(keys[i], "", message);
        expect_bad1(keys[i], NULL, message); /* "?limit" without '=' */
    }
}

static void test_repeated_parameters(void **state)
{
    struct api_error err;
    struct listq q;
    (void)state;

    static const struct {
        const char *key, *first, *second;
    } cases[] = {
        {"limit", "10", "10"},     {"limit", "10", "20"}, {"offset", "0", "5"},
        {"order_by", "id", "-id"}, {"user_id", "1", "2"}, {"month", "4", "4"},
        {"year", "2025", "2024"},  {"name", "al", "bo"},  {"status", "open", "closed"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct query_param p[] = {{cases[i].key, cases[i].first}, {cases[i].key, cases[i].second}};
        if (parse(p, 2, &q, &err) != -1)
            fail_msg("%s given twice accepted", cases[i].key);
        expect_invalid_query(&err);
        char message[64];
        snprintf(message, sizeof(message), "%s is given more than once", cases[i].key);
        assert_string_equal(err.message, message);
    }

    /* Repeated, with something else between. */
    struct query_param p[] = {{"limit", "5"}, {"offset", "1"}, {"limit", "5"}};
    assert_int_equal(parse(p, 3, &q, &err), -1);
    assert_string_equal(err.message, "limit is given more than once");
}

static void test_unknown_parameter(void **state)
{
    struct api_error err;
    struct listq q;
    (void)state;

    static const char *const keys[] = {"foo", "LIMIT",  "Limit", "page",      "sort", "order",
                                       "",    "limit ", "user",  "user_id[]", "email"};
    for (size_t i = 0; i < ARRAY_LEN(keys); i++)
        expect_bad1(keys[i], "1", "unknown query parameter; allowed: " ALLOWED);

    /* The message comes even when the unknown one follows valid ones. */
    struct query_param p[] = {{"limit", "5"}, {"status", "open"}, {"bogus", "1"}};
    assert_int_equal(parse(p, 3, &q, &err), -1);
    expect_invalid_query(&err);
    assert_string_equal(err.message, "unknown query parameter; allowed: " ALLOWED);

    /* With no filters only the common three are allowed. */
    static const char *const ids_only[] = {"id", NULL};
    assert_int_equal(listq_parse(p, 3, ids_only, NULL, 0, &q, &err), -1);
    assert_string_equal(err.message, "unknown query parameter; allowed: limit, offset, order_by");
}

static void test_order_by(void **state)
{
    struct listq q;
    (void)state;

    expect_ok1("order_by", "id", &q);
    assert_int_equal(q.order_index, 0);
    assert_int_equal(q.descending, 0);
    expect_ok1("order_by", "-id", &q);
    assert_int_equal(q.order_index, 0);
    assert_int_equal(q.descending, 1);
    expect_ok1("order_by", "name", &q);
    assert_int_equal(q.order_index, 2);
    assert_int_equal(q.descending, 0);
    expect_ok1("order_by", "-created_at", &q);
    assert_int_equal(q.order_index, 3);
    assert_int_equal(q.descending, 1);
    expect_ok1("order_by", "user_id", &q);
    assert_int_equal(q.order_index, 1);

    const char *message =
        "order_by must be one of these columns, optionally prefixed by '-': "
        "id, user_id, name, created_at";
    static const char *const bad[] = {
        "-",        "--id",       "+id",     "ID",          "Name",
        "id desc",  "id DESC",    "id,name", " id",         "id ",
        "-amount",  "email",      "1",       "id;",         "id; DROP TABLE users",
        "name) --", "(select 1)", "id-",     "lower(name)", "created_ms",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        expect_bad1("order_by", bad[i], message);
}

static void test_filter_id(void **state)
{
    struct listq q;
    (void)state;

    expect_ok1("user_id", "7", &q);
    assert_int_equal(q.filters[F_USER_ID].present, 1);
    assert_int_equal(q.filters[F_USER_ID].num, 7);
    assert_string_equal(q.filters[F_USER_ID].text, "7");
    for (int f = 0; f < F_COUNT; f++)
        if (f != F_USER_ID)
            assert_int_equal(q.filters[f].present, 0);
    expect_ok1("user_id", "9223372036854775807", &q);
    assert_int_equal(q.filters[F_USER_ID].num, INT64_MAX);

    const char *message = "user_id must be a positive integer";
    static const char *const bad[] = {
        "0", "-1", "07", "+7", "7.0", "abc", "7a", " 7", "9223372036854775808"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        expect_bad1("user_id", bad[i], message);
}

static void test_filter_int_range(void **state)
{
    struct listq q;
    (void)state;

    expect_ok1("month", "1", &q);
    assert_int_equal(q.filters[F_MONTH].num, 1);
    assert_true(q.filters[F_MONTH].present);
    expect_ok1("month", "12", &q);
    assert_int_equal(q.filters[F_MONTH].num, 12);
    expect_ok1("year", "1970", &q);
    assert_int_equal(q.filters[F_YEAR].num, 1970);
    assert_false(q.filters[F_MONTH].present);
    expect_ok1("year", "9999", &q);
    assert_int_equal(q.filters[F_YEAR].num, 9999);

    static const char *const bad_month[] = {"0", "13", "01", "-1", "4.0", "April", "+4"};
    for (size_t i = 0; i < ARRAY_LEN(bad_month); i++)
        expect_bad1("month", bad_month[i], "month must be an integer from 1 to 12");
    static const char *const bad_year[] = {"1969", "10000", "02025", "-2025", "0"};
    for (size_t i = 0; i < ARRAY_LEN(bad_year); i++)
        expect_bad1("year", bad_year[i], "year must be an integer from 1970 to 9999");
}

static void test_filter_text(void **state)
{
    struct listq q;
    (void)state;

    /* Any non-empty text, taken as is (the caller binds it). */
    static const char *const ok[] = {"al", "a%_b",        "'; DROP TABLE users; --",
                                     " ",  "caf\xc3\xa9", "0"};
    for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
        expect_ok1("name", ok[i], &q);
        assert_int_equal(q.filters[F_NAME].present, 1);
        assert_ptr_equal(q.filters[F_NAME].text, ok[i]);
    }
}

static void test_filter_enum(void **state)
{
    struct listq q;
    (void)state;

    expect_ok1("status", "open", &q);
    assert_int_equal(q.filters[F_STATUS].present, 1);
    assert_string_equal(q.filters[F_STATUS].text, "open");
    expect_ok1("status", "closed", &q);
    assert_string_equal(q.filters[F_STATUS].text, "closed");

    static const char *const bad[] = {"bogus", "OPEN", "open ", "opened", "ope", "1"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        expect_bad1("status", bad[i], "status must be one of: open, closed");
}

static void test_everything_together(void **state)
{
    struct api_error err;
    struct listq q;
    (void)state;

    struct query_param p[] = {
        {"status", "closed"}, {"order_by", "-name"}, {"year", "2025"}, {"limit", "10"},
        {"month", "4"},       {"offset", "20"},      {"name", "Al"},   {"user_id", "3"},
    };
    assert_int_equal(parse(p, ARRAY_LEN(p), &q, &err), 0);
    assert_int_equal(q.limit, 10);
    assert_int_equal(q.offset, 20);
    assert_int_equal(q.order_index, 2);
    assert_int_equal(q.descending, 1);
    assert_int_equal(q.filters[F_USER_ID].num, 3);
    assert_int_equal(q.filters[F_MONTH].num, 4);
    assert_int_equal(q.filters[F_YEAR].num, 2025);
    assert_string_equal(q.filters[F_NAME].text, "Al");
    assert_string_equal(q.filters[F_STATUS].text, "closed");
    for (int f = 0; f < F_COUNT; f++)
        assert_int_equal(q.filters[f].present, 1);

    /* One bad parameter among good ones fails the whole query. */
    p[4].value = "13";
    assert_int_equal(parse(p, ARRAY_LEN(p), &q, &err), -1);
    assert_string_equal(err.message, "month must be an integer from 1 to 12");
}

static void test_order_sql(void **state)
{
    struct listq q;
    char buf[128];
    (void)state;

    expect_ok1("limit", "5", &q);
    listq_order_sql(&q, exprs, "created_ms", buf, sizeof(buf));
    assert_string_equal(buf, "created_ms, id ASC");

    expect_ok1("order_by", "name", &q);
    listq_order_sql(&q, exprs, "created_ms", buf, sizeof(buf));
    assert_string_equal(buf, "lower(name) ASC, id ASC");

    expect_ok1("order_by", "-name", &q);
    listq_order_sql(&q, exprs, "created_ms", buf, sizeof(buf));
    assert_string_equal(buf, "lower(name) DESC, id ASC");

    expect_ok1("order_by", "-id", &q);
    listq_order_sql(&q, exprs, "created_ms", buf, sizeof(buf));
    assert_string_equal(buf, "id DESC, id ASC");

    expect_ok1("order_by", "created_at", &q);
    listq_order_sql(&q, exprs, "created_ms", buf, sizeof(buf));
    assert_string_equal(buf, "created_ms ASC, id ASC");

    /* A small buffer is truncated, never overrun. */
    char small[8];
    memset(small, 'x', sizeof(small));
    listq_order_sql(&q, exprs, "id", small, 6);
    assert_string_equal(small, "creat");
    assert_int_equal(small[6], 'x');
}

static void test_parse_uint(void **state)
{
    int64_t v;
    (void)state;

    static const struct {
        const char *text;
        int64_t value;
    } ok[] = {{"0", 0}, {"1", 1}, {"10", 10}, {"1000", 1000}, {"9223372036854775807", INT64_MAX}};
    for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
        v = -42;
        assert_int_equal(listq_parse_uint(ok[i].text, &v), 0);
        assert_int_equal(v, ok[i].value);
    }

    static const char *const bad[] = {"",
                                      "00",
                                      "01",
                                      "-1",
                                      "+1",
                                      " 1",
                                      "1 ",
                                      "1.0",
                                      "1e3",
                                      "x",
                                      "0x1",
                                      "1_0",
                                      "9223372036854775808",
                                      "18446744073709551616",
                                      "99999999999999999999999"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        v = -42;
        if (listq_parse_uint(bad[i], &v) != -1)
            fail_msg("\"%s\" accepted", bad[i]);
        assert_int_equal(v, -42);
    }
    v = -42;
    assert_int_equal(listq_parse_uint(NULL, &v), -1);
    assert_int_equal(v, -42);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_offset),
        cmocka_unit_test(test_empty_values),
        cmocka_unit_test(test_repeated_parameters),
        cmocka_unit_test(test_unknown_parameter),
        cmocka_unit_test(test_order_by),
        cmocka_unit_test(test_filter_id),
        cmocka_unit_test(test_filter_int_range),
        cmocka_unit_test(test_filter_text),
        cmocka_unit_test(test_filter_enum),
        cmocka_unit_test(test_everything_together),
        cmocka_unit_test(test_order_sql),
        cmocka_unit_test(test_parse_uint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
