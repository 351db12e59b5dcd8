/*
 * Unit tests for field: the field rules of docs/api.md (required and optional
 * strings counted in code points, blank strings, null, strict types, ids,
 * money, times, emails, enums, unknown fields) and the white-space helpers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract/contract.h"
#include "field.h"
#include "util.h"

/* A string literal with its length, so that embedded bytes are kept. */
#define LIT(s) (s), (sizeof(s) - 1)

static json_t *obj_of(const char *json)
{
    json_error_t jerr;
    json_t *obj = json_loads(json, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!obj)
        fail_msg("test JSON does not parse: %s (%s)", json, jerr.text);
    return obj;
}

static void expect_error(const struct api_error *err, const char *code, const char *field)
{
    assert_int_equal(err->status, 422);
    assert_non_null(err->code);
    assert_string_equal(err->code, code);
    assert_string_equal(err->field, field ? field : "");
    assert_int_equal(err->index, -1);
    assert_true(err->message[0] != '\0');
}

static void expect_no_error(const struct api_error *err)
{
    assert_int_equal(err->status, 0);
    assert_null(err->code);
    assert_string_equal(err->field, "");
}

/* --- strings --------------------------------------------------------- */

/* Runs field_string on field "s" of json; returns rc, *out as given. */
static int string_of(const char *json, int required, size_t max, const char **out,
                     struct api_error *err, json_t **obj)
{
    *obj = obj_of(json);
    api_error_clear(err);
    *out = "sentinel";
    return field_string(*obj, "s", required, max, out, err);
}

static void expect_str(const char *json, int required, size_t max, const char *expected)
{
    struct api_error err;
    const char *out;
    json_t *obj;

    if (string_of(json, required, max, &out, &err, &obj) != 0)
        fail_msg("%s (required %d, max %zu) rejected: %s %s", json, required, max,
                 err.code ? err.code : "?", err.message);
    expect_no_error(&err);
    if (expected) {
        assert_non_null(out);
        assert_string_equal(out, expected);
        /* Borrowed from the object, not copied. */
        assert_ptr_equal(out, json_string_value(json_object_get(obj, "s")));
    } else {
        assert_null(out);
    }
    json_decref(obj);
}

static void expect_str_error(const char *json, int required, size_t max, const char *code)
{
    struct api_error err;
    const char *out;
    json_t *obj;

    if (string_of(json, required, max, &out, &err, &obj) != -1)
        fail_msg("%s (required %d, max %zu) accepted", json, required, max);
    expect_error(&err, code, "s");
    assert_null(out);
    json_decref(obj);
}

/* {"s": "<unit repeated n times>"} */
static char *repeated(const char *unit, size_t n)
{
    size_t u = strlen(unit);
    char *s = xmalloc(u * n + 16);
    size_t k = (size_t)sprintf(s, "{\"s\":\"");
    for (size_t i = 0; i < n; i++, k += u)
        memcpy(s + k, unit, u);
    strcpy(s + k, "\"}");
    return s;
}

static void test_required_string(void **state)
{
    (void)state;
    expect_str("{\"s\":\"Alice\"}", 1, 200, "Alice");
    expect_str("{\"s\":\"x\"}", 1, 1, "x");
    /* Stored as given: surrounding spaces are kept. */
    expect_str("{\"s\":\"  Alice \"}", 1, 200, "  Alice ");
    expect_str("{\"s\":\"\\u00e9\"}", 1, 200, "\xc3\xa9");
}

static void test_required_string_missing(void **state)
{
    struct api_error err;
    const char *out;
    json_t *obj;
    (void)state;

    expect_str_error("{}", 1, 200, "missing_field");
    expect_str_error("{\"other\":\"x\"}", 1, 200, "missing_field");
    expect_str_error("{\"s\":null}", 1, 200, "missing_field");

    assert_int_equal(string_of("{\"s\":null}", 1, 200, &out, &err, &obj), -1);
    assert_string_equal(err.message, "s is required");
    json_decref(obj);
}

static void test_required_string_blank(void **state)
{
    struct api_error err;
    const char *out;
    json_t *obj;
    (void)state;

    expect_str_error("{\"s\":\"\"}", 1, 200, "invalid_field");
    expect_str_error("{\"s\":\" \"}", 1, 200, "invalid_field");
    expect_str_error("{\"s\":\"   \"}", 1, 200, "invalid_field");
    expect_str_error("{\"s\":\"\\t\\n\\r\\f\\u000b\"}", 1, 200, "invalid_field");
    expect_str_error("{\"s\":\"\\u00a0\"}", 1, 200, "invalid_field");  /* NBSP */
    expect_str_error("{\"s\":\"\xc2\xa0\"}", 1, 200, "invalid_field"); /* raw NBSP */
    expect_str_error("{\"s\":\"\\u3000\"}", 1, 200, "invalid_field");  /* ideographic */
    expect_str_error("{\"s\":\"\xe3\x80\x80\xe3\x80\x80\"}", 1, 200, "invalid_field");
    expect_str_error("{\"s\":\"\\u0085\"}", 1, 200, "invalid_field"); /* NEL */
    expect_str_error("{\"s\":\"\\u1680\"}", 1, 200, "invalid_field");
    expect_str_error("{\"s\":\"\\u2000\\u200a\"}", 1, 200, "invalid_field");
    expect_str_error("{\"s\":\"\\u200b\"}", 1, 200, "invalid_field"); /* ZWSP */
    expect_str_error("{\"s\":\"\\u2028\\u2029\"}", 1, 200, "invalid_field");
    expect_str_error("{\"s\":\"\\u202f\\u205f\"}", 1, 200, "invalid_field");
    expect_str_error("{\"s\":\"\\ufeff\"}", 1, 200, "invalid_field"); /* BOM */
    expect_str_error("{\"s\":\" \\u00a0\\t\\u3000 \"}", 1, 200, "invalid_field");

    assert_int_equal(string_of("{\"s\":\"\\u00a0\"}", 1, 200, &out, &err, &obj), -1);
    assert_string_equal(err.message, "s must not be empty");
    json_decref(obj);

    /* One visible character among blanks is enough. */
    expect_str("{\"s\":\"\\u3000a\\u00a0\"}", 1, 200,
               "\xe3\x80\x80"
               "a\xc2\xa0");
    expect_str("{\"s\":\" .\"}", 1, 200, " .");
    /* Characters next to the white-space ranges are not white space. */
    expect_str("{\"s\":\"\\u200c\"}", 1, 200, "\xe2\x80\x8c");
    expect_str("{\"s\":\"\\u1fff\"}", 1, 200, "\xe1\xbf\xbf");
    expect_str("{\"s\":\"\\u3001\"}", 1, 200, "\xe3\x80\x81");
}

static void test_string_length_counts_code_points(void **state)
{
    (void)state;
    struct {
        const char *unit; /* one code point of 1 to 4 bytes */
    } units[] = {{"a"}, {"\xc3\xa9"}, {"\xe6\x97\xa5"}, {"\xf0\x9f\x98\x80"}};

    for (size_t u = 0; u < ARRAY_LEN(units); u++) {
        for (int required = 0; required <= 1; required++) {
            char *at_max = repeated(units[u].unit, 200);
            char *over = repeated(units[u].unit, 201);
            struct api_error err;
            const char *out;
            json_t *obj;

            assert_int_equal(string_of(at_max, required, 200, &out, &err, &obj), 0);
            assert_int_equal(strlen(out), 200 * strlen(units[u].unit));
            json_decref(obj);

            expect_str_error(over, required, 200, "invalid_field");
            assert_int_equal(string_of(over, required, 200, &out, &err, &obj), -1);
            assert_string_equal(err.message, "s must be at most 200 characters");
            json_decref(obj);

            free(at_max);
            free(over);
        }
    }
    /* Mixed widths: 3 code points, 10 bytes. */
    expect_str("{\"s\":\"a\xc3\xa9\xf0\x9f\x98\x80\xe6\x97\xa5\"}", 1, 4,
               "a\xc3\xa9\xf0\x9f\x98\x80\xe6\x97\xa5");
    expect_str_error("{\"s\":\"a\xc3\xa9\xf0\x9f\x98\x80\xe6\x97\xa5\"}", 1, 3, "invalid_field");
}

static void test_optional_string(void **state)
{
    (void)state;
    expect_str("{}", 0, 200, NULL);
    expect_str("{\"s\":null}", 0, 200, NULL);
    expect_str("{\"s\":\"\"}", 0, 200, "");
    expect_str("{\"s\":\" \"}", 0, 200, " ");
    expect_str("{\"s\":\"Apt 4\"}", 0, 200, "Apt 4");
    expect_str("{\"s\":\"\"}", 0, 0, "");
    expect_str_error("{\"s\":\"x\"}", 0, 0, "invalid_field");
}

static void test_string_wrong_types(void **state)
{
    static const char *const values[] = {"1",  "0",       "1.5", "true",         "false",
                                         "[]", "[\"a\"]", "{}",  "{\"a\":\"b\"}"};
    char json[64];
    (void)state;

    for (size_t i = 0; i < ARRAY_LEN(values); i++) {
        snprintf(json, sizeof(json), "{\"s\":%s}", values[i]);
        expect_str_error(json, 1, 200, "invalid_field");
        expect_str_error(json, 0, 200, "invalid_field");
    }

    struct api_error err;
    const char *out;
    json_t *obj;
    assert_int_equal(string_of("{\"s\":7}", 1, 200, &out, &err, &obj), -1);
    assert_string_equal(err.message, "s must be a string");
    json_decref(obj);

    /* "\u0000" is valid JSON, but would cut the stored C string short. */
    expect_str_error("{\"s\":\"x\\u0000y\"}", 1, 200, "invalid_field");
    expect_str_error("{\"s\":\"\\u0000\"}", 0, 200, "invalid_field");
    assert_int_equal(string_of("{\"s\":\"a\\u0000\"}", 0, 200, &out, &err, &obj), -1);
    assert_string_equal(err.message, "s must not contain NUL characters");
    json_decref(obj);
}

/* --- ids ------------------------------------------------------------- */

static int id_of(const char *json, int required, int64_t *out, int *present, struct api_error *err)
{
    json_t *obj = obj_of(json);
    api_error_clear(err);
    *out = -42;
    if (present)
        *present = -42;
    int rc = field_id(obj, "user_id", required, out, present, err);
    json_decref(obj);
    return rc;
}

static void expect_id(const char *json, int required, int64_t expected)
{
    struct api_error err;
    int64_t out;
    int present;

    if (id_of(json, required, &out, &present, &err) != 0)
        fail_msg("%s rejected: %s", json, err.message);
    expect_no_error(&err);
    assert_int_equal(out, expected);
    assert_int_equal(present, 1);
    /* present may be NULL for a required field. */
    assert_int_equal(id_of(json, required, &out, NULL, &err), 0);
    assert_int_equal(out, expected);
}

static void expect_id_error(const char *json, int required, const char *code)
{
    struct api_error err;
    int64_t out;
    int present;

    if (id_of(json, required, &out, &present, &err) != -1)
        fail_msg("%s (required %d) accepted as %lld", json, required, (long long)out);
    expect_error(&err, code, "user_id");
    assert_int_equal(out, 0);
    assert_int_equal(present, 0);
}

static void test_id_accepts_positive_integers(void **state)
{
    (void)state;
    expect_id("{\"user_id\":1}", 1, 1);
    expect_id("{\"user_id\":7}", 1, 7);
    expect_id("{\"user_id\":7}", 0, 7);
    expect_id("{\"user_id\":9223372036854775807}", 1, INT64_MAX);
}

static void test_id_rejects_everything_else(void **state)
{
    static const char *const values[] = {
        "0",    "-1",    "-9223372036854775808",
        "7.0",  "7.5",   "7e0",
        "1e2",  "\"7\"", "\"\"",
        "true", "false", "[]",
        "[7]",  "{}",    "{\"id\":7}",
    };
    char json[64];
    struct api_error err;
    int64_t out;
    int present;
    (void)state;

    for (size_t i = 0; i < ARRAY_LEN(values); i++) {
        snprintf(json, sizeof(json), "{\"user_id\":%s}", values[i]);
        expect_id_error(json, 1, "invalid_field");
        expect_id_error(json, 0, "invalid_field");
    }
    assert_int_equal(id_of("{\"user_id\":\"7\"}", 1, &out, &present, &err), -1);
    assert_string_equal(err.message, "user_id must be a positive integer");
}

static void test_id_missing_and_absent(void **state)
{
    struct api_error err;
    int64_t out;
    int present;
    (void)state;

    expect_id_error("{}", 1, "missing_field");
    expect_id_error("{\"user_id\":null}", 1, "missing_field");
    expect_id_error("{\"userid\":1}", 1, "missing_field");

    /* Optional: absent and null are the same, and not an error. */
    assert_int_equal(id_of("{}", 0, &out, &present, &err), 0);
    assert_int_equal(present, 0);
    assert_int_equal(out, 0);
    expect_no_error(&err);
    assert_int_equal(id_of("{\"user_id\":null}", 0, &out, &present, &err), 0);
    assert_int_equal(present, 0);
    assert_int_equal(out, 0);
    expect_no_error(&err);
}

/* --- money ----------------------------------------------------------- */

static int money_of(const char *json, int64_t *cents, struct api_error *err)
{
    json_t *obj = obj_of(json);
    api_error_clear(err);
    *cents = -42;
    int rc = field_money(obj, "amount", cents, err);
    json_decref(obj);
    return rc;
}

static void expect_cents(const char *value, int64_t expected)
{
    char json[80];
    struct api_error err;
    int64_t cents;

    snprintf(json, sizeof(json), "{\"amount\":%s}", value);
    if (money_of(json, &cents, &err) != 0)
        fail_msg("%s rejected: %s", value, err.message);
    expect_no_error(&err);
    assert_int_equal(cents, expected);
}

static void expect_money_error(const char *value, const char *code)
{
    char json[80];
    struct api_error err;
    int64_t cents;

    if (value)
        snprintf(json, sizeof(json), "{\"amount\":%s}", value);
    else
        snprintf(json, sizeof(json), "{\"total\":1}");
    if (money_of(json, &cents, &err) != -1)
        fail_msg("%s accepted as %lld cents", json, (long long)cents);
    expect_error(&err, code, "amount");
}

static void test_money_accepted(void **state)
{
    (void)state;
    expect_cents("50", 5000);
    expect_cents("50.00", 5000);
    expect_cents("50.0", 5000);
    expect_cents("5e1", 5000);
    expect_cents("19.99", 1999);
    expect_cents("1.10", 110);
    expect_cents("0.01", 1);
    expect_cents("0.29", 29);
    expect_cents("1000000000", INT64_C(100000000000));
    expect_cents("1000000000.00", INT64_C(100000000000));
    expect_cents("999999999.99", INT64_C(99999999999));
}

static void test_money_rejected(void **state)
{
    struct api_error err;
    int64_t cents;
    (void)state;

    expect_money_error(NULL, "missing_field");
    expect_money_error("null", "missing_field");
    expect_money_error("0.001", "invalid_field");
    expect_money_error("1.005", "invalid_field");
    expect_money_error("0", "invalid_field");
    expect_money_error("0.0", "invalid_field");
    expect_money_error("-1", "invalid_field");
    expect_money_error("-0.01", "invalid_field");
    expect_money_error("1000000000.01", "invalid_field");
    expect_money_error("1000000001", "invalid_field");
    expect_money_error("9223372036854775807", "invalid_field");
    expect_money_error("\"50\"", "invalid_field");
    expect_money_error("\"50.00\"", "invalid_field");
    expect_money_error("true", "invalid_field");
    expect_money_error("[50]", "invalid_field");
    expect_money_error("{}", "invalid_field");

    assert_int_equal(money_of("{\"amount\":0.001}", &cents, &err), -1);
    /* The wording of docs/api.md's example, then the upper bound. */
    const char *prefix = "amount must be a positive number with at most 2 decimal places";
    assert_int_equal(strncmp(err.message, prefix, strlen(prefix)), 0);
    assert_non_null(strstr(err.message, "1000000000"));
}

/* --- times ----------------------------------------------------------- */

static int time_of(const char *json, int64_t *ms, int *present, struct api_error *err)
{
    json_t *obj = obj_of(json);
    api_error_clear(err);
    *ms = -42;
    *present = -42;
    int rc = field_time(obj, "created_at", ms, present, err);
    json_decref(obj);
    return rc;
}

static void expect_time(const char *value, int64_t expected)
{
    char json[96];
    struct api_error err;
    int64_t ms;
    int present;

    snprintf(json, sizeof(json), "{\"created_at\":%s}", value);
    if (time_of(json, &ms, &present, &err) != 0)
        fail_msg("%s rejected: %s", value, err.message);
    expect_no_error(&err);
    assert_int_equal(present, 1);
    assert_int_equal(ms, expected);
}

static void expect_time_error(const char *value)
{
    char json[96];
    struct api_error err;
    int64_t ms;
    int present;

    snprintf(json, sizeof(json), "{\"created_at\":%s}", value);
    if (time_of(json, &ms, &present, &err) != -1)
        fail_msg("%s accepted as %lld", value, (long long)ms);
    expect_error(&err, "invalid_field", "created_at");
    assert_int_equal(present, 0);
}

static void test_time(void **state)
{
    struct api_error err;
    int64_t ms;
    int present;
    (void)state;

    expect_time("\"2025-04-03T10:15:00Z\"", INT64_C(1743675300000));
    expect_time("\"2025-04-03T10:15:00.000Z\"", INT64_C(1743675300000));
    expect_time("\"2025-04-03t10:15:00.1239z\"", INT64_C(1743675300123));
    expect_time("\"2025-04-03T12:15:00+02:00\"", INT64_C(1743675300000));
    expect_time("\"1970-01-01T00:00:00Z\"", 0);

    /* Absent and null: not present, not an error. */
    assert_int_equal(time_of("{}", &ms, &present, &err), 0);
    assert_int_equal(present, 0);
    expect_no_error(&err);
    assert_int_equal(time_of("{\"created_at\":null}", &ms, &present, &err), 0);
    assert_int_equal(present, 0);
    expect_no_error(&err);

    expect_time_error("\"\"");
    expect_time_error("\"2025-04-03\"");
    expect_time_error("\"2025-04-03 10:15:00Z\"");
    expect_time_error("\"2025-04-03T10:15:00\"");
    expect_time_error("\"2025-02-30T10:15:00Z\"");
    expect_time_error("\"2025-04-03T23:59:60Z\"");
    expect_time_error("\"1969-12-31T23:59:59Z\"");
    expect_time_error("\"1970-01-01T00:30:00+01:00\"");
    expect_time_error("\"10000-01-01T00:00:00Z\"");
    expect_time_error("\"2025-04-03T10:15:00Z \"");
    expect_time_error("1743675300000");
    expect_time_error("true");
    expect_time_error("[\"2025-04-03T10:15:00Z\"]");
}

/* --- emails ---------------------------------------------------------- */

static int email_of(const char *json, const char **out, struct api_error *err)
{
    json_t *obj = obj_of(json);
    api_error_clear(err);
    *out = "sentinel";
    int rc = field_email(obj, "email", 254, out, err);
    json_decref(obj);
    return rc;
}

static void expect_email_error(const char *value, const char *code)
{
    char json[128];
    struct api_error err;
    const char *out;

    snprintf(json, sizeof(json), "{\"email\":%s}", value);
    if (email_of(json, &out, &err) != -1)
        fail_msg("%s accepted", value);
    expect_error(&err, code, "email");
    assert_null(out);
}

static void test_email(void **state)
{
    struct api_error err;
    const char *out;
    (void)state;

    static const char *const good[] = {"a@b", "alice@demo.com", "ALICE@Demo.COM",
                                       "caf\u00e9@d\u00e9mo.fr", "a.b+c@d-e.f"};
    for (size_t i = 0; i < ARRAY_LEN(good); i++) {
        char json[128];
        snprintf(json, sizeof(json), "{\"email\":\"%s\"}", good[i]);
        if (email_of(json, &out, &err) != 0)
            fail_msg("%s rejected: %s", good[i], err.message);
        assert_non_null(out);
        expect_no_error(&err);
    }

    /* The rule of docs/api.md: one @, text on both sides, no spaces. */
    expect_email_error("\"noat\"", "invalid_field");
    expect_email_error("\"@demo.com\"", "invalid_field");
    expect_email_error("\"alice@\"", "invalid_field");
    expect_email_error("\"@\"", "invalid_field");
    expect_email_error("\"a@b@c\"", "invalid_field");
    expect_email_error("\"al ice@demo.com\"", "invalid_field");
    expect_email_error("\"alice@demo.com\\t\"", "invalid_field");
    expect_email_error("\"alice@demo.com\\u00a0\"", "invalid_field");
    expect_email_error("\"alice@demo\\u0001.com\"", "invalid_field");
    assert_int_equal(email_of("{\"email\":\"noat\"}", &out, &err), -1);
    assert_string_equal(err.message, "email must have one @ with text on both sides and no spaces");

    /* field_string's rules come first. */
    expect_email_error("\"\"", "invalid_field");
    expect_email_error("\"  \"", "invalid_field");
    expect_email_error("7", "invalid_field");
    expect_email_error("[\"a@b\"]", "invalid_field");
    expect_email_error("null", "missing_field");
    assert_int_equal(email_of("{}", &out, &err), -1);
    expect_error(&err, "missing_field", "email");
}

/* --- enums ----------------------------------------------------------- */

static const char *const statuses[] = {"open", "closed"};
static const char *const colours[] = {"red", "green", "blue"};

static int enum_of(const char *json, const char *const *values, size_t count, const char **out,
                   struct api_error *err)
{
    json_t *obj = obj_of(json);
    api_error_clear(err);
    *out = "sentinel";
    int rc = field_enum(obj, "status", values, count, out, err);
    json_decref(obj);
    return rc;
}

static void expect_enum_error(const char *value)
{
    char json[64];
    struct api_error err;
    const char *out;

    snprintf(json, sizeof(json), "{\"status\":%s}", value);
    if (enum_of(json, statuses, 2, &out, &err) != -1)
        fail_msg("%s accepted", value);
    expect_error(&err, "invalid_field", "status");
    assert_string_equal(err.message, "status must be \"open\" or \"closed\"");
    assert_null(out);
}

static void test_enum(void **state)
{
    struct api_error err;
    const char *out;
    (void)state;

    /* The value returned is the caller's constant, not the input. */
    assert_int_equal(enum_of("{\"status\":\"open\"}", statuses, 2, &out, &err), 0);
    assert_ptr_equal(out, statuses[0]);
    assert_int_equal(enum_of("{\"status\":\"closed\"}", statuses, 2, &out, &err), 0);
    assert_ptr_equal(out, statuses[1]);
    expect_no_error(&err);

    assert_int_equal(enum_of("{}", statuses, 2, &out, &err), 0);
    assert_null(out);
    assert_int_equal(enum_of("{\"status\":null}", statuses, 2, &out, &err), 0);
    assert_null(out);
    expect_no_error(&err);

    expect_enum_error("\"OPEN\"");
    expect_enum_error("\"Open\"");
    expect_enum_error("\"open \"");
    expect_enum_error("\"\"");
    expect_enum_error("\"bogus\"");
    expect_enum_error("\"opened\"");
    expect_enum_error("\"ope\"");
    expect_enum_error("\"open\\u0000\"");
    expect_enum_error("\"open\\u0000x\"");
    expect_enum_error("1");
    expect_enum_error("true");
    expect_enum_error("[\"open\"]");

    /* More than two values: a generic message. */
    assert_int_equal(enum_of("{\"status\":\"green\"}", colours, 3, &out, &err), 0);
    assert_ptr_equal(out, colours[1]);
    assert_int_equal(enum_of("{\"status\":\"pink\"}", colours, 3, &out, &err), -1);
    expect_error(&err, "invalid_field", "status");
    assert_string_equal(err.message, "status has a value that is not allowed");

    /* The shared set of account statuses (src/contract). */
    assert_int_equal(CONTRACT_ACCOUNT_STATUS_COUNT, 2);
    assert_string_equal(contract_account_statuses[0], "open");
    assert_string_equal(contract_account_statuses[1], "closed");
    assert_null(contract_account_statuses[CONTRACT_ACCOUNT_STATUS_COUNT]);
}

/* --- unknown fields -------------------------------------------------- */

static const char *const user_fields[] = {"name", "email"};

static int unknown_of(const char *json, struct api_error *err)
{
    json_t *obj = obj_of(json);
    api_error_clear(err);
    int rc = field_reject_unknown(obj, user_fields, ARRAY_LEN(user_fields), err);
    json_decref(obj);
    return rc;
}

static void test_reject_unknown(void **state)
{
    struct api_error err;
    (void)state;

    assert_int_equal(unknown_of("{}", &err), 0);
    assert_int_equal(unknown_of("{\"name\":\"A\"}", &err), 0);
    assert_int_equal(unknown_of("{\"email\":1,\"name\":null}", &err), 0);
    expect_no_error(&err);

    assert_int_equal(unknown_of("{\"name\":\"A\",\"nmae\":\"B\"}", &err), -1);
    expect_error(&err, "unknown_field", "nmae");
    assert_string_equal(err.message, "unknown field nmae");

    /* Case matters, and so does every byte. */
    assert_int_equal(unknown_of("{\"Name\":\"A\"}", &err), -1);
    expect_error(&err, "unknown_field", "Name");
    assert_int_equal(unknown_of("{\"email \":\"A\"}", &err), -1);
    expect_error(&err, "unknown_field", "email ");
    assert_int_equal(unknown_of("{\"\":1}", &err), -1);
    assert_string_equal(err.code, "unknown_field");
    assert_int_equal(unknown_of("{\"id\":1}", &err), -1);
    expect_error(&err, "unknown_field", "id");

    /* A name of 63 bytes is echoed; 64 bytes or non-ASCII is not. */
    char key[80], json[128];
    memset(key, 'k', 63);
    key[63] = '\0';
    snprintf(json, sizeof(json), "{\"%s\":1}", key);
    assert_int_equal(unknown_of(json, &err), -1);
    expect_error(&err, "unknown_field", key);

    memset(key, 'k', 64);
    key[64] = '\0';
    snprintf(json, sizeof(json), "{\"%s\":1}", key);
    assert_int_equal(unknown_of(json, &err), -1);
    expect_error(&err, "unknown_field", NULL);

    assert_int_equal(unknown_of("{\"n\\u00e4me\":1}", &err), -1);
    expect_error(&err, "unknown_field", NULL);
    assert_null(strstr(err.message, "n\xc3\xa4me"));
}

/* --- white space helpers --------------------------------------------- */

static void test_is_blank(void **state)
{
    (void)state;
    assert_true(field_is_blank(LIT("")));
    assert_true(field_is_blank(LIT(" \t\n\r\v\f")));
    assert_true(field_is_blank(LIT("\xc2\xa0")));
    assert_true(field_is_blank(LIT("\xe3\x80\x80")));
    assert_true(field_is_blank(LIT("\xef\xbb\xbf")));
    assert_false(field_is_blank(LIT("a")));
    assert_false(field_is_blank(LIT(" a ")));
    assert_false(field_is_blank(LIT("\xc3\xa9")));
    assert_false(field_is_blank(LIT("\xf0\x9f\x98\x80")));
    assert_false(field_is_blank(LIT("\xe3\x80\x80x")));
    /* Only len bytes are looked at. */
    assert_true(field_is_blank(" x", 1));
}

static void test_has_space(void **state)
{
    (void)state;
    assert_false(field_has_space(LIT("")));
    assert_false(field_has_space(LIT("alice@demo.com")));
    assert_false(field_has_space(LIT("j\xc3\xbcrgen@m\xc3\xbcnchen.de")));
    assert_false(field_has_space(LIT("\xf0\x9f\x98\x80@\xe6\x97\xa5.jp")));
    assert_false(field_has_space(LIT("~!#$%&'*+/=?^_`{|}")));

    assert_true(field_has_space(LIT("a b")));
    assert_true(field_has_space(LIT(" ab")));
    assert_true(field_has_space(LIT("ab ")));
    assert_true(field_has_space(LIT("a\tb")));
    assert_true(field_has_space(LIT("a\nb")));
    assert_true(field_has_space(LIT("a\rb")));
    assert_true(
        field_has_space(LIT("a\xc2\xa0"
                            "b"))); /* NBSP */
    assert_true(
        field_has_space(LIT("a\xe3\x80\x80"
                            "b"))); /* ideographic */
    assert_true(
        field_has_space(LIT("a\xe2\x80\x8b"
                            "b"))); /* ZWSP */
    assert_true(
        field_has_space(LIT("a\xef\xbb\xbf"
                            "b"))); /* BOM */
    assert_true(
        field_has_space(LIT("a\xe2\x80\xa8"
                            "b"))); /* line separator */
    assert_true(
        field_has_space(LIT("a\xc2\x85"
                            "b"))); /* NEL */
    /* Control characters. */
    assert_true(
        field_has_space(LIT("a\x01"
                            "b")));
    assert_true(
        field_has_space(LIT("a\x1f"
                            "b")));
    assert_true(
        field_has_space(LIT("a\x7f"
                            "b")));
    assert_true(field_has_space("a\0b", 3));
    /* C1 controls (U+0080..U+009F) are control characters too. */
    assert_true(
        field_has_space(LIT("a\xc2\x80"
                            "b")));
    assert_true(
        field_has_space(LIT("a\xc2\x9f"
                            "b")));
    /* Just outside: U+00A1 is a visible character. */
    assert_false(
        field_has_space(LIT("a\xc2\xa1"
                            "b")));
}

static void test_utf8_length(void **state)
{
    (void)state;
    assert_int_equal(field_utf8_length(LIT("")), 0);
    assert_int_equal(field_utf8_length(LIT("abc")), 3);
    assert_int_equal(field_utf8_length(LIT("\xc3\xa9")), 1);
    assert_int_equal(field_utf8_length(LIT("\xe6\x97\xa5\xe6\x9c\xac")), 2);
    assert_int_equal(field_utf8_length(LIT("\xf0\x9f\x98\x80")), 1);
    assert_int_equal(field_utf8_length(LIT("a\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80z")), 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_required_string),
        cmocka_unit_test(test_required_string_missing),
        cmocka_unit_test(test_required_string_blank),
        cmocka_unit_test(test_string_length_counts_code_points),
        cmocka_unit_test(test_optional_string),
        cmocka_unit_test(test_string_wrong_types),
        cmocka_unit_test(test_id_accepts_positive_integers),
        cmocka_unit_test(test_id_rejects_everything_else),
        cmocka_unit_test(test_id_missing_and_absent),
        cmocka_unit_test(test_money_accepted),
        cmocka_unit_test(test_money_rejected),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_email),
        cmocka_unit_test(test_enum),
        cmocka_unit_test(test_reject_unknown),
        cmocka_unit_test(test_is_blank),
        cmocka_unit_test(test_has_space),
        cmocka_unit_test(test_utf8_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
