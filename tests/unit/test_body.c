/*
 * Unit tests for body: what docs/api.md calls malformed (empty, not JSON, not
 * UTF-8, too deep, duplicate keys), numbers out of range reported on their
 * top-level field, and the split of a create body into its items.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "body.h"
#include "util.h"

/* A string literal with its length, so that embedded bytes are kept. */
#define LIT(s) (s), (sizeof(s) - 1)

static int parse(const char *text, size_t len, json_t **doc, struct api_error *err)
{
    api_error_clear(err);
    *doc = (json_t *)(uintptr_t)1; /* must be reset to NULL on failure */
    return body_parse(text, len, doc, err);
}

static void expect_error_fields(const struct api_error *err, int status, const char *code,
                                const char *field, long index)
{
    assert_int_equal(err->status, status);
    assert_non_null(err->code);
    assert_string_equal(err->code, code);
    assert_string_equal(err->field, field ? field : "");
    assert_int_equal(err->index, index);
    assert_true(err->message[0] != '\0');
}

/* Expects body_parse to fail with exactly this error. */
static void expect_rejected(const char *text, size_t len, int status, const char *code,
                            const char *field, long index)
{
    struct api_error err;
    json_t *doc;

    int rc = parse(text, len, &doc, &err);
    if (rc != -1)
        fail_msg("accepted: %.*s", (int)(len > 80 ? 80 : len), text);
    assert_null(doc);
    expect_error_fields(&err, status, code, field, index);
}

static void expect_malformed(const char *text, size_t len)
{
    expect_rejected(text, len, 400, "malformed_json", NULL, -1);
}

/* Expects body_parse to succeed; returns the document (caller decrefs). */
static json_t *expect_parsed(const char *text, size_t len)
{
    struct api_error err;
    json_t *doc;

    int rc = parse(text, len, &doc, &err);
    if (rc != 0)
        fail_msg("rejected (%d %s: %s): %.*s", err.status, err.code ? err.code : "?", err.message,
                 (int)(len > 80 ? 80 : len), text);
    assert_non_null(doc);
    assert_int_equal(err.status, 0);
    return doc;
}

/* n nested arrays around an empty innermost one: depth n. */
static char *nested_arrays(size_t n, int closed, size_t *len)
{
    char *s = xmalloc(2 * n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        s[k++] = '[';
    if (closed)
        for (size_t i = 0; i < n; i++)
            s[k++] = ']';
    s[k] = '\0';
    *len = k;
    return s;
}

/* {"a":{"a":...{"a":1}...}} with n objects: depth n. */
static char *nested_objects(size_t n, size_t *len)
{
    char *s = xmalloc(6 * n + 2);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(s + k, i + 1 < n ? "{\"a\":" : "{\"a\":1", i + 1 < n ? 5 : 6);
        k += i + 1 < n ? 5 : 6;
    }
    for (size_t i = 0; i < n; i++)
        s[k++] = '}';
    s[k] = '\0';
    *len = k;
    return s;
}

static void test_empty_body(void **state)
{
    struct api_error err;
    json_t *doc;
    (void)state;

    expect_malformed("", 0);
    assert_int_equal(parse("", 0, &doc, &err), -1);
    assert_string_equal(err.message, "request body is empty");
    /* A NULL buffer of length 0 is what an absent body looks like. */
    expect_malformed(NULL, 0);
    expect_malformed(LIT(" "));
    expect_malformed(LIT("\r\n\t "));
}

static void test_not_json(void **state)
{
    (void)state;
    expect_malformed(LIT("{"));
    expect_malformed(LIT("}"));
    expect_malformed(LIT("abc"));
    expect_malformed(LIT("{\"a\":1,}"));
    expect_malformed(LIT("[1,2,]"));
    expect_malformed(LIT("{'a':1}"));
    expect_malformed(LIT("{\"a\":1} {\"b\":2}"));
    expect_malformed(LIT("{\"a\":NaN}"));
    expect_malformed(LIT("{\"a\":01}"));
    expect_malformed(LIT("{\"a\":\"tab\there\"}"));
    expect_malformed(LIT("{\"a\":1}\0"));
    expect_malformed(LIT("\0{\"a\":1}"));
}

static void test_not_json_message_does_not_echo_input(void **state)
{
    struct api_error err;
    json_t *doc;
    (void)state;

    assert_int_equal(parse(LIT("{\"secret_text\": oops}"), &doc, &err), -1);
    assert_string_equal(err.code, "malformed_json");
    assert_null(strstr(err.message, "secret_text"));
    assert_null(strstr(err.message, "oops"));
    assert_non_null(strstr(err.message, "line 1"));
}

static void test_invalid_utf8(void **state)
{
    struct api_error err;
    json_t *doc;
    (void)state;

    expect_malformed(LIT("{\"name\":\"\xff\"}"));
    expect_malformed(LIT("{\"name\":\"caf\xc3\"}"));          /* truncated sequence */
    expect_malformed(LIT("{\"name\":\"\xc0\xaf\"}"));         /* overlong '/' */
    expect_malformed(LIT("{\"name\":\"\xed\xa0\x80\"}"));     /* UTF-16 surrogate */
    expect_malformed(LIT("{\"name\":\"\xf4\x90\x80\x80\"}")); /* above U+10FFFF */
    expect_malformed(LIT("{\"n\xe9\":\"x\"}"));               /* Latin-1 in a key */

    assert_int_equal(parse(LIT("{\"name\":\"\xff\"}"), &doc, &err), -1);
    assert_non_null(strstr(err.message, "UTF-8"));

    /* Valid multi-byte text is fine. */
    json_t *ok = expect_parsed(LIT("{\"name\":\"caf\xc3\xa9 \xe3\x80\x80 \xf0\x9f\x98\x80\"}"));
    assert_string_equal(json_string_value(json_object_get(ok, "name")),
                        "caf\xc3\xa9 \xe3\x80\x80 \xf0\x9f\x98\x80");
    json_decref(ok);
}

static void test_depth_count(void **state)
{
    (void)state;
    assert_int_equal(body_depth(LIT("1"), 64), 0);
    assert_int_equal(body_depth(LIT("\"[{\""), 64), 0);
    assert_int_equal(body_depth(LIT("[]"), 64), 1);
    assert_int_equal(body_depth(LIT("{}"), 64), 1);
    assert_int_equal(body_depth(LIT("[[],[]]"), 64), 2);
    assert_int_equal(body_depth(LIT("{\"a\":[1,{\"b\":[]}],\"c\":{}}"), 64), 4);
    assert_int_equal(body_depth(LIT("[[]][[[]]]"), 64), 3);
    /* Brackets in strings, also after escaped quotes and backslashes. */
    assert_int_equal(body_depth(LIT("{\"a\":\"[[[{{{\"}"), 64), 1);
    assert_int_equal(body_depth(LIT("{\"a\":\"\\\"[[[\"}"), 64), 1);
    assert_int_equal(body_depth(LIT("{\"a\\\\\":[\"\\\\\",[]]}"), 64), 3);
    /* Stops counting once past the limit. */
    assert_int_equal(body_depth(LIT("[[[[[[]]]]]]"), 3), 4);
}

static void test_nesting_64_accepted(void **state)
{
    size_t len;
    (void)state;

    char *arrays = nested_arrays(BODY_MAX_DEPTH, 1, &len);
    assert_int_equal(body_depth(arrays, len, BODY_MAX_DEPTH), 64);
    json_t *doc = expect_parsed(arrays, len);
    json_decref(doc);
    free(arrays);

    char *objects = nested_objects(BODY_MAX_DEPTH, &len);
    assert_int_equal(body_depth(objects, len, BODY_MAX_DEPTH), 64);
    doc = expect_parsed(objects, len);
    json_decref(doc);
    free(objects);
}

static void test_nesting_65_rejected(void **state)
{
    size_t len;
    (void)state;

    char *arrays = nested_arrays(BODY_MAX_DEPTH + 1, 1, &len);
    expect_malformed(arrays, len);
    free(arrays);

    char *objects = nested_objects(BODY_MAX_DEPTH + 1, &len);
    expect_malformed(objects, len);
    free(objects);

    /* Mixed: an object holding 64 arrays is 65 levels. */
    char *inner = nested_arrays(BODY_MAX_DEPTH, 1, &len);
    char *mixed = xmalloc(len + 8);
    int n = snprintf(mixed, len + 8, "{\"a\":%s}", inner);
    expect_malformed(mixed, (size_t)n);
    free(mixed);
    free(inner);

    /* The message says why. */
    struct api_error err;
    json_t *doc;
    objects = nested_objects(BODY_MAX_DEPTH + 1, &len);
    assert_int_equal(parse(objects, len, &doc, &err), -1);
    assert_non_null(strstr(err.message, "64"));
    free(objects);
}

static void test_very_deep_rejected_quickly(void **state)
{
    size_t len;
    (void)state;

    /* 10,000 levels, closed and unclosed, and a million: recursion into
     * the parser would exhaust the stack long before the end. */
    size_t depths[] = {10000, 1000000};
    for (size_t d = 0; d < ARRAY_LEN(depths); d++) {
        for (int closed = 0; closed <= 1; closed++) {
            char *s = nested_arrays(depths[d], closed, &len);
            clock_t start = clock();
            expect_malformed(s, len);
            double seconds = (double)(clock() - start) / CLOCKS_PER_SEC;
            if (seconds > 0.5)
                fail_msg("depth %zu took %.3f s", depths[d], seconds);
            assert_int_equal(body_depth(s, len, BODY_MAX_DEPTH), BODY_MAX_DEPTH + 1);
            free(s);
        }
    }
    char *objects = nested_objects(10000, &len);
    expect_malformed(objects, len);
    free(objects);
}

static void test_brackets_in_strings_do_not_count(void **state)
{
    char text[1024];
    size_t len;
    (void)state;

    /* 200 brackets inside one string value. */
    int n = snprintf(text, sizeof(text), "{\"a\":\"");
    for (int i = 0; i < 100; i++)
        n += snprintf(text + n, sizeof(text) - (size_t)n, "[{");
    n += snprintf(text + n, sizeof(text) - (size_t)n, "\"}");
    json_t *doc = expect_parsed(text, (size_t)n);
    assert_int_equal(json_string_length(json_object_get(doc, "a")), 200);
    json_decref(doc);

    /* An escaped quote does not end the string; the brackets after it are
     * still inside. */
    n = snprintf(text, sizeof(text), "{\"a\":\"\\\"");
    for (int i = 0; i < 100; i++)
        text[n++] = '[';
    n += snprintf(text + n, sizeof(text) - (size_t)n, "\"}");
    doc = expect_parsed(text, (size_t)n);
    json_decref(doc);

    /* 64 real levels plus brackets in a string at the innermost level. */
    char *deep = nested_arrays(BODY_MAX_DEPTH - 1, 0, &len);
    char *s = xmalloc(len + 300);
    memcpy(s, deep, len);
    n = (int)len;
    n += snprintf(s + n, 300, "[\"]]]][[[[{{{{\\\\\"]");
    for (size_t i = 0; i + 1 < BODY_MAX_DEPTH; i++)
        s[n++] = ']';
    doc = expect_parsed(s, (size_t)n);
    json_decref(doc);
    free(s);
    free(deep);
}

static void test_duplicate_keys_rejected(void **state)
{
    (void)state;
    expect_malformed(LIT("{\"a\":1,\"a\":2}"));
    expect_malformed(LIT("{\"a\":1,\"a\":1}"));
    expect_malformed(LIT("{\"x\":{\"a\":1,\"b\":2,\"a\":3}}"));
    expect_malformed(LIT("[{\"a\":1},{\"b\":1,\"b\":null}]"));
    /* The same name in different objects is fine. */
    json_t *doc = expect_parsed(LIT("[{\"a\":1},{\"a\":2,\"b\":{\"a\":3}}]"));
    json_decref(doc);
}

/* "\u0000" in a string value is valid JSON: parsed here, and refused
 * field by field (422) by the validators, which name the field. */
static void test_escaped_nul_in_a_value_parses(void **state)
{
    (void)state;
    json_t *doc = expect_parsed(LIT("{\"a\":\"x\\u0000y\"}"));
    json_t *a = json_object_get(doc, "a");
    assert_int_equal(json_string_length(a), 3);
    json_decref(doc);
}

static void test_integer_beyond_64_bits(void **state)
{
    (void)state;
    json_t *doc = expect_parsed(LIT("{\"user_id\":9223372036854775807}"));
    assert_int_equal(json_integer_value(json_object_get(doc, "user_id")), INT64_MAX);
    json_decref(doc);
    doc = expect_parsed(LIT("{\"user_id\":-9223372036854775808}"));
    assert_int_equal(json_integer_value(json_object_get(doc, "user_id")), INT64_MIN);
    json_decref(doc);

    expect_rejected(LIT("{\"user_id\":9223372036854775808}"), 422, "invalid_field", "user_id", -1);
    expect_rejected(LIT("{\"user_id\":-9223372036854775809}"), 422, "invalid_field", "user_id", -1);
    expect_rejected(LIT("{\"name\":\"a,b:c\",\"user_id\":18446744073709551616,\"x\":1}"), 422,
                    "invalid_field", "user_id", -1);
    expect_rejected(LIT("{ \"user_id\" : 99999999999999999999999999 }"), 422, "invalid_field",
                    "user_id", -1);
    /* Nested: the top-level field that holds it is named. */
    expect_rejected(LIT("{\"a\":1,\"data\":{\"id\":1,\"user_id\":99999999999999999999}}"), 422,
                    "invalid_field", "data", -1);
    expect_rejected(LIT("{\"list\":[1,2,{\"k\":[99999999999999999999]}]}"), 422, "invalid_field",
                    "list", -1);
}

static void test_integer_beyond_64_bits_in_batch(void **state)
{
    (void)state;
    expect_rejected(LIT("[{\"user_id\":99999999999999999999}]"), 422, "invalid_field", "user_id",
                    0);
    expect_rejected(LIT("[{\"user_id\":1,\"amount\":2},{\"user_id\":99999999999999999999}]"), 422,
                    "invalid_field", "user_id", 1);
    /* Commas in strings and nested values do not count as items. */
    expect_rejected(LIT("[{\"d\":\"a,b,[c\"},{\"l\":[1,2,3],\"o\":{\"p\":1,\"q\":2}},"
                        "{\"x\":1,\"amount\":18446744073709551616}]"),
                    422, "invalid_field", "amount", 2);
}

static void test_real_beyond_double(void **state)
{
    (void)state;
    expect_rejected(LIT("{\"amount\":1e400}"), 422, "invalid_field", "amount", -1);
    expect_rejected(LIT("{\"amount\":-1e400}"), 422, "invalid_field", "amount", -1);
    expect_rejected(LIT("{\"user_id\":1,\"amount\":1.5e999,\"description\":\"x\"}"), 422,
                    "invalid_field", "amount", -1);
    expect_rejected(LIT("[{\"amount\":1},{\"amount\":2},{\"amount\":1e400}]"), 422, "invalid_field",
                    "amount", 2);
    /* The largest doubles are in range; a tiny number underflows to zero
     * without an error, and the field's own rule judges it. */
    json_t *doc = expect_parsed(LIT("{\"amount\":1e308}"));
    json_decref(doc);
    doc = expect_parsed(LIT("{\"amount\":1e-400}"));
    assert_true(json_is_real(json_object_get(doc, "amount")));
    json_decref(doc);
}

static void test_out_of_range_without_a_plain_field(void **state)
{
    (void)state;
    /* A top-level scalar has no field. */
    expect_rejected(LIT("1e400"), 422, "invalid_body", NULL, -1);
    expect_rejected(LIT("99999999999999999999"), 422, "invalid_body", NULL, -1);
    /* An array of arrays: an index but no field. */
    expect_rejected(LIT("[[1],[99999999999999999999]]"), 422, "invalid_body", NULL, 1);
    /* A key that is not plain printable ASCII is not echoed. */
    expect_rejected(LIT("{\"a b\":1e400}"), 422, "invalid_body", NULL, -1);
    expect_rejected(LIT("{\"a\\\"b\":1e400}"), 422, "invalid_body", NULL, -1);
    expect_rejected(LIT("{\"caf\xc3\xa9\":1e400}"), 422, "invalid_body", NULL, -1);
    expect_rejected(LIT("{\"\":1e400}"), 422, "invalid_body", NULL, -1);
    expect_rejected(LIT("{\"a123456789012345678901234567890123456789012345678901234567890123\":"
                        "1e400}"),
                    422, "invalid_body", NULL, -1);
}

static void test_top_level_scalars_parse(void **state)
{
    (void)state;
    json_t *doc = expect_parsed(LIT("42"));
    assert_true(json_is_integer(doc));
    assert_int_equal(json_integer_value(doc), 42);
    json_decref(doc);

    doc = expect_parsed(LIT(" \"text\" "));
    assert_string_equal(json_string_value(doc), "text");
    json_decref(doc);

    doc = expect_parsed(LIT("null"));
    assert_true(json_is_null(doc));
    json_decref(doc);

    doc = expect_parsed(LIT("true"));
    assert_true(json_is_true(doc));
    json_decref(doc);

    doc = expect_parsed(LIT("1.5"));
    assert_true(json_is_real(doc));
    json_decref(doc);
}

/* Parses text (which must be valid) and runs body_items on it. */
static int items_of(const char *text, size_t max_items, size_t *count, int *is_batch,
                    struct api_error *err)
{
    json_error_t jerr;
    json_t *doc = json_loads(text, JSON_DECODE_ANY, &jerr);
    assert_non_null(doc);
    api_error_clear(err);
    *count = 12345;
    *is_batch = -7;
    int rc = body_items(doc, max_items, count, is_batch, err);
    json_decref(doc);
    return rc;
}

static void expect_invalid_body(const char *text, size_t max_items, long index)
{
    struct api_error err;
    size_t count;
    int is_batch;

    if (items_of(text, max_items, &count, &is_batch, &err) != -1)
        fail_msg("accepted as items: %.80s", text);
    expect_error_fields(&err, 422, "invalid_body", NULL, index);
}

static void test_items_object(void **state)
{
    struct api_error err;
    size_t count;
    int is_batch;
    (void)state;

    assert_int_equal(items_of("{\"a\":1}", BODY_MAX_ITEMS, &count, &is_batch, &err), 0);
    assert_int_equal(count, 1);
    assert_int_equal(is_batch, 0);
    assert_int_equal(err.status, 0);

    assert_int_equal(items_of("{}", BODY_MAX_ITEMS, &count, &is_batch, &err), 0);
    assert_int_equal(count, 1);
    assert_int_equal(is_batch, 0);

    json_t *obj = json_pack("{s:i}", "a", 1);
    assert_ptr_equal(body_item(obj, 0), obj);
    json_decref(obj);
}

static char *batch_text(size_t n)
{
    char *s = xmalloc(n * 12 + 3);
    size_t k = 0;
    s[k++] = '[';
    for (size_t i = 0; i < n; i++)
        k += (size_t)sprintf(s + k, "%s{\"i\":%zu}", i ? "," : "", i % 1000);
    s[k++] = ']';
    s[k] = '\0';
    return s;
}

static void test_items_array(void **state)
{
    struct api_error err;
    size_t count;
    int is_batch;
    (void)state;

    assert_int_equal(items_of("[{\"a\":1}]", BODY_MAX_ITEMS, &count, &is_batch, &err), 0);
    assert_int_equal(count, 1);
    assert_int_equal(is_batch, 1);

    assert_int_equal(items_of("[{},{\"b\":2},{\"c\":[]}]", BODY_MAX_ITEMS, &count, &is_batch, &err),
                     0);
    assert_int_equal(count, 3);
    assert_int_equal(is_batch, 1);

    char *text = batch_text(BODY_MAX_ITEMS);
    assert_int_equal(items_of(text, BODY_MAX_ITEMS, &count, &is_batch, &err), 0);
    assert_int_equal(count, 1000);
    assert_int_equal(is_batch, 1);
    free(text);

    json_t *arr = json_pack("[{s:i},{s:i}]", "a", 1, "b", 2);
    assert_int_equal(json_integer_value(json_object_get(body_item(arr, 0), "a")), 1);
    assert_int_equal(json_integer_value(json_object_get(body_item(arr, 1), "b")), 2);
    assert_null(body_item(arr, 2));
    json_decref(arr);
}

static void test_items_count_out_of_range(void **state)
{
    (void)state;
    expect_invalid_body("[]", BODY_MAX_ITEMS, -1);
    char *text = batch_text(BODY_MAX_ITEMS + 1);
    expect_invalid_body(text, BODY_MAX_ITEMS, -1);
    free(text);
    /* The cap is the caller's. */
    expect_invalid_body("[{},{},{}]", 2, -1);
}

static void test_items_not_objects(void **state)
{
    (void)state;
    expect_invalid_body("[1]", BODY_MAX_ITEMS, 0);
    expect_invalid_body("[{},{},\"x\",{}]", BODY_MAX_ITEMS, 2);
    expect_invalid_body("[{},null]", BODY_MAX_ITEMS, 1);
    expect_invalid_body("[[{}]]", BODY_MAX_ITEMS, 0);
    expect_invalid_body("[{},{},{},{},[]]", BODY_MAX_ITEMS, 4);
    /* Not an object nor an array: no index. */
    expect_invalid_body("42", BODY_MAX_ITEMS, -1);
    expect_invalid_body("\"x\"", BODY_MAX_ITEMS, -1);
    expect_invalid_body("null", BODY_MAX_ITEMS, -1);
    expect_invalid_body("true", BODY_MAX_ITEMS, -1);
    expect_invalid_body("1.5", BODY_MAX_ITEMS, -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_body),
        cmocka_unit_test(test_not_json),
        cmocka_unit_test(test_not_json_message_does_not_echo_input),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_depth_count),
        cmocka_unit_test(test_nesting_64_accepted),
        cmocka_unit_test(test_nesting_65_rejected),
        cmocka_unit_test(test_very_deep_rejected_quickly),
        cmocka_unit_test(test_brackets_in_strings_do_not_count),
        cmocka_unit_test(test_duplicate_keys_rejected),
        cmocka_unit_test(test_escaped_nul_in_a_value_parses),
        cmocka_unit_test(test_integer_beyond_64_bits),
        cmocka_unit_test(test_integer_beyond_64_bits_in_batch),
        cmocka_unit_test(test_real_beyond_double),
        cmocka_unit_test(test_out_of_range_without_a_plain_field),
        cmocka_unit_test(test_top_level_scalars_parse),
        cmocka_unit_test(test_items_object),
        cmocka_unit_test(test_items_array),
        cmocka_unit_test(test_items_count_out_of_range),
        cmocka_unit_test(test_items_not_objects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
