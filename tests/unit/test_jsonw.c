/*
 * Unit tests for jsonw: the exact text written (commas, escapes, money,
 * times, raw values), buffer ownership (steal, reset), and every output
 * parsed back with jansson to prove it is valid JSON.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"
#include "util.h"

/* Parses the writer's output strictly; the caller decrefs. */
static json_t *parse_back(const char *buf, size_t len)
{
    json_error_t jerr;
    json_t *doc = json_loadb(buf, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (!doc)
        fail_msg("output is not valid JSON (%s at %d): %s", jerr.text, jerr.position, buf);
    return doc;
}

/* Checks the exact text and that it parses; returns the parsed value. */
static json_t *expect_output(const struct jsonw *w, const char *expected)
{
    assert_non_null(w->buf);
    if (strcmp(w->buf, expected) != 0)
        fail_msg("expected %s\n got     %s", expected, w->buf);
    assert_int_equal(w->len, strlen(expected));
    assert_int_equal(w->depth, 0);
    return parse_back(w->buf, w->len);
}

static void expect_output_only(const struct jsonw *w, const char *expected)
{
    json_decref(expect_output(w, expected));
}

static void test_empty_containers(void **state)
{
    struct jsonw w;
    (void)state;

    jsonw_init(&w);
    assert_string_equal(w.buf, "");
    assert_int_equal(w.len, 0);
    jsonw_object_begin(&w);
    jsonw_object_end(&w);
    expect_output_only(&w, "{}");
    jsonw_reset(&w);
    jsonw_array_begin(&w);
    jsonw_array_end(&w);
    expect_output_only(&w, "[]");
    jsonw_free(&w);
    assert_null(w.buf);
}

static void test_flat_object(void **state)
{
    struct jsonw w;
    (void)state;

    jsonw_init(&w);
    jsonw_object_begin(&w);
    jsonw_key(&w, "id");
    jsonw_int(&w, 1);
    jsonw_key(&w, "name");
    jsonw_string(&w, "Alice");
    jsonw_key(&w, "address2");
    jsonw_string_or_null(&w, NULL);
    jsonw_key(&w, "city");
    jsonw_string_or_null(&w, "Cityville");
    jsonw_key(&w, "ok");
    jsonw_bool(&w, 1);
    jsonw_key(&w, "closed");
    jsonw_bool(&w, 0);
    jsonw_key(&w, "none");
    jsonw_null(&w);
    jsonw_object_end(&w);
    json_t *doc = expect_output(&w,
                                "{\"id\":1,\"name\":\"Alice\",\"address2\":null,"
                                "\"city\":\"Cityville\",\"ok\":true,\"closed\":false,"
                                "\"none\":null}");
    assert_int_equal(json_object_size(doc), 7);
    assert_true(json_is_null(json_object_get(doc, "address2")));
    assert_true(json_is_true(json_object_get(doc, "ok")));
    json_decref(doc);
    jsonw_free(&w);
}

static void test_commas_in_nested_values(void **state)
{
    struct jsonw w;
    (void)state;

    jsonw_init(&w);
    jsonw_object_begin(&w);
    jsonw_key(&w, "a");
    jsonw_array_begin(&w);
    jsonw_int(&w, 1);
    jsonw_int(&w, 2);
    jsonw_object_begin(&w);
    jsonw_key(&w, "b");
    jsonw_array_begin(&w);
    jsonw_array_end(&w);
    jsonw_key(&w, "c");
    jsonw_object_begin(&w);
    jsonw_object_end(&w);
    jsonw_key(&w, "d");
    jsonw_array_begin(&w);
    jsonw_array_begin(&w);
    jsonw_int(&w, 3);
    jsonw_array_end(&w);
    jsonw_array_begin(&w);
    jsonw_array_end(&w);
    jsonw_int(&w, 4);
    jsonw_array_end(&w);
    jsonw_object_end(&w);
    jsonw_int(&w, 5);
    jsonw_array_end(&w);
    jsonw_key(&w, "e");
    jsonw_object_begin(&w);
    jsonw_key(&w, "f");
    jsonw_null(&w);
    jsonw_object_end(&w);
    jsonw_key(&w, "g");
    jsonw_int(&w, 6);
    jsonw_object_end(&w);
    expect_output_only(&w,
                       "{\"a\":[1,2,{\"b\":[],\"c\":{},\"d\":[[3],[],4]},5],"
                       "\"e\":{\"f\":null},\"g\":6}");
    jsonw_free(&w);
}

static void test_array_of_objects(void **state)
{
    struct jsonw w;
    (void)state;

    jsonw_init(&w);
    jsonw_array_begin(&w);
    for (int i = 1; i <= 3; i++) {
        jsonw_object_begin(&w);
        jsonw_key(&w, "id");
        jsonw_int(&w, i);
        jsonw_key(&w, "tags");
        jsonw_array_begin(&w);
        for (int k = 0; k < i; k++)
            jsonw_string(&w, "t");
        jsonw_array_end(&w);
        jsonw_object_end(&w);
    }
    jsonw_array_end(&w);
    json_t *doc = expect_output(&w,
                                "[{\"id\":1,\"tags\":[\"t\"]},{\"id\":2,\"tags\":[\"t\",\"t\"]},"
                                "{\"id\":3,\"tags\":[\"t\",\"t\",\"t\"]}]");
    assert_int_equal(json_array_size(doc), 3);
    json_decref(doc);
    jsonw_free(&w);
}

static void test_deep_nesting_up_to_max(void **state)
{
    struct jsonw w;
    char expected[JSONW_MAX_DEPTH * 8 + 8];
    size_t k = 0;
    (void)state;

    /* [1,[1,[1,...[1,2]...],3],3] with JSONW_MAX_DEPTH levels. */
    jsonw_init(&w);
    for (int d = 0; d < JSONW_MAX_DEPTH; d++) {
        jsonw_array_begin(&w);
        jsonw_int(&w, 1);
        k += (size_t)sprintf(expected + k, "[1,");
    }
    jsonw_int(&w, 2);
    k += (size_t)sprintf(expected + k, "2");
    for (int d = 0; d < JSONW_MAX_DEPTH; d++) {
        jsonw_array_end(&w);
        k += (size_t)sprintf(expected + k, "]");
        if (d + 1 < JSONW_MAX_DEPTH) {
            jsonw_int(&w, 3);
            k += (size_t)sprintf(expected + k, ",3");
        }
    }
    expect_output_only(&w, expected);
    jsonw_free(&w);
}

static void test_escaping(void **state)
{
    struct jsonw w;
    (void)state;

    jsonw_init(&w);
    jsonw_array_begin(&w);
    jsonw_string(&w, "say \"hi\"");
    jsonw_string(&w, "C:\\path\\");
    jsonw_string(&w, "a\nb\rc\td\be\ff");
    jsonw_string(&w, "\x01\x02\x1f");
    jsonw_string(&w, "/ and \x7f stay");
    jsonw_string(&w, "");
    jsonw_array_end(&w);
    json_t *doc = expect_output(&w,
                                "[\"say \\\"hi\\\"\",\"C:\\\\path\\\\\","
                                "\"a\\nb\\rc\\td\\be\\ff\",\"\\u0001\\u0002\\u001f\","
                                "\"/ and \x7f stay\",\"\"]");
    /* Parsed back, every string is what was written. */
    assert_string_equal(json_string_value(json_array_get(doc, 0)), "say \"hi\"");
    assert_string_equal(json_string_value(json_array_get(doc, 1)), "C:\\path\\");
    assert_string_equal(json_string_value(json_array_get(doc, 2)), "a\nb\rc\td\be\ff");
    assert_string_equal(json_string_value(json_array_get(doc, 3)), "\x01\x02\x1f");
    json_decref(doc);
    jsonw_free(&w);
}

static void test_every_control_character(void **state)
{
    struct jsonw w;
    char in[2] = {0, 0};
    (void)state;

    for (int c = 1; c < 0x20; c++) {
        char expected[16];
        const char *named = c == '\n'   ? "\\n"
                            : c == '\r' ? "\\r"
                            : c == '\t' ? "\\t"
                            : c == '\b' ? "\\b"
                            : c == '\f' ? "\\f"
                                        : NULL;
        if (named)
            snprintf(expected, sizeof(expected), "\"%s\"", named);
        else
            snprintf(expected, sizeof(expected), "\"\\u00%02x\"", c);
        in[0] = (char)c;
        jsonw_init(&w);
        jsonw_string(&w, in);
        json_t *doc = expect_output(&w, expected);
        assert_int_equal(json_string_length(doc), 1);
        assert_int_equal(json_string_value(doc)[0], c);
        json_decref(doc);
        jsonw_free(&w);
    }

    /* NUL inside a counted string. */
    jsonw_init(&w);
    jsonw_string_len(&w, "a\0b", 3);
    json_error_t jerr;
    assert_string_equal(w.buf, "\"a\\u0000b\"");
    assert_int_equal(w.len, 10);
    json_t *doc = json_loadb(w.buf, w.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    assert_non_null(doc);
    assert_int_equal(json_string_length(doc), 3);
    assert_memory_equal(json_string_value(doc), "a\0b", 3);
    json_decref(doc);
    jsonw_free(&w);
}

static void test_keys_are_escaped(void **state)
{
    struct jsonw w;
    (void)state;

    jsonw_init(&w);
    jsonw_object_begin(&w);
    jsonw_key(&w, "a\"b");
    jsonw_int(&w, 1);
    jsonw_key(&w, "c\\d\n");
    jsonw_int(&w, 2);
    jsonw_object_end(&w);
    json_t *doc = expect_output(&w, "{\"a\\\"b\":1,\"c\\\\d\\n\":2}");
    assert_int_equal(json_integer_value(json_object_get(doc, "a\"b")), 1);
    assert_int_equal(json_integer_value(json_object_get(doc, "c\\d\n")), 2);
    json_decref(doc);
    jsonw_free(&w);
}

static void test_utf8_passthrough(void **state)
{
    struct jsonw w;
    const char *text = "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \xe3\x80\x80";
    char expected[64];
    (void)state;

    jsonw_init(&w);
    jsonw_object_begin(&w);
    jsonw_key(&w, "n\xc3\xa4me");
    jsonw_string(&w, text);
    jsonw_object_end(&w);
    snprintf(expected, sizeof(expected), "{\"n\xc3\xa4me\":\"%s\"}", text);
    json_t *doc = expect_output(&w, expected);
    assert_string_equal(json_string_value(json_object_get(doc, "n\xc3\xa4me")), text);
    json_decref(doc);
    jsonw_free(&w);
}

static void test_integers(void **state)
{
    struct jsonw w;
    (void)state;

    jsonw_init(&w);
    jsonw_array_begin(&w);
    jsonw_int(&w, 0);
    jsonw_int(&w, -1);
    jsonw_int(&w, INT64_MAX);
    jsonw_int(&w, INT64_MIN);
    jsonw_array_end(&w);
    json_t *doc = expect_output(&w, "[0,-1,9223372036854775807,-9223372036854775808]");
    assert_int_equal(json_integer_value(json_array_get(doc, 2)), INT64_MAX);
    assert_int_equal(json_integer_value(json_array_get(doc, 3)), INT64_MIN);
    json_decref(doc);
    jsonw_free(&w);
}

static void test_money(void **state)
{
    struct jsonw w;
    (void)state;

    static const struct {
        int64_t cents;
        const char *text;
        double value;
    } cases[] = {
        {5000, "50.00", 50.0},
        {5, "0.05", 0.05},
        {10, "0.10", 0.10},
        {1999, "19.99", 19.99},
        {INT64_C(100000000000), "1000000000.00", 1e9},
        {0, "0.00", 0.0},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char expected[64];
        jsonw_init(&w);
        jsonw_object_begin(&w);
        jsonw_key(&w, "amount");
        jsonw_money(&w, cases[i].cents);
        jsonw_key(&w, "n");
        jsonw_int(&w, 1);
        jsonw_object_end(&w);
        snprintf(expected, sizeof(expected), "{\"amount\":%s,\"n\":1}", cases[i].text);
        json_t *doc = expect_output(&w, expected);
        json_t *amount = json_object_get(doc, "amount");
        assert_true(json_is_real(amount));
        assert_true(json_real_value(amount) == cases[i].value);
        json_decref(doc);
        jsonw_free(&w);
    }

    /* Money in an array gets its commas too. */
    jsonw_init(&w);
    jsonw_array_begin(&w);
    jsonw_money(&w, 1);
    jsonw_money(&w, 250);
    jsonw_array_end(&w);
    expect_output_only(&w, "[0.01,2.50]");
    jsonw_free(&w);
}

static void test_time(void **state)
{
    struct jsonw w;
    (void)state;

    jsonw_init(&w);
    jsonw_object_begin(&w);
    jsonw_key(&w, "epoch");
    jsonw_time(&w, 0);
    jsonw_key(&w, "created_at");
    jsonw_time(&w, INT64_C(1743675300123));
    jsonw_key(&w, "last");
    jsonw_time(&w, INT64_C(253402300799999));
    jsonw_object_end(&w);
    json_t *doc = expect_output(&w,
                                "{\"epoch\":\"1970-01-01T00:00:00.000Z\","
                                "\"created_at\":\"2025-04-03T10:15:00.123Z\","
                                "\"last\":\"9999-12-31T23:59:59.999Z\"}");
    assert_true(json_is_string(json_object_get(doc, "created_at")));
    json_decref(doc);
    jsonw_free(&w);
}

static void test_raw(void **state)
{
    struct jsonw w;
    const char *raw = "{\"x\":[1,2],\"y\":\"z\"}";
    (void)state;

    jsonw_init(&w);
    jsonw_array_begin(&w);
    jsonw_raw(&w, raw, strlen(raw));
    jsonw_raw(&w, "7", 1);
    jsonw_object_begin(&w);
    jsonw_key(&w, "r");
    jsonw_raw(&w, raw, strlen(raw));
    jsonw_key(&w, "s");
    jsonw_raw(&w, "[]xyz", 2); /* only len bytes */
    jsonw_object_end(&w);
    jsonw_array_end(&w);
    json_t *doc = expect_output(&w,
                                "[{\"x\":[1,2],\"y\":\"z\"},7,"
                                "{\"r\":{\"x\":[1,2],\"y\":\"z\"},\"s\":[]}]");
    assert_int_equal(json_array_size(doc), 3);
    json_decref(doc);
    jsonw_free(&w);
}

static void test_top_level_scalars(void **state)
{
    struct jsonw w;
    (void)state;

    jsonw_init(&w);
    jsonw_string(&w, "x");
    expect_output_only(&w, "\"x\"");
    jsonw_reset(&w);
    jsonw_int(&w, 42);
    expect_output_only(&w, "42");
    jsonw_reset(&w);
    jsonw_null(&w);
    expect_output_only(&w, "null");
    jsonw_free(&w);
}

static void test_growth(void **state)
{
    struct jsonw w;
    (void)state;

    /* Far beyond the initial buffer: 20,000 objects. */
    jsonw_init(&w);
    jsonw_array_begin(&w);
    for (int i = 0; i < 20000; i++) {
        jsonw_object_begin(&w);
        jsonw_key(&w, "i");
        jsonw_int(&w, i);
        jsonw_key(&w, "s");
        jsonw_string(&w, "\"quoted\" \\ text");
        jsonw_object_end(&w);
    }
    jsonw_array_end(&w);
    assert_int_equal(strlen(w.buf), w.len);
    assert_true(w.cap > w.len);
    json_t *doc = parse_back(w.buf, w.len);
    assert_int_equal(json_array_size(doc), 20000);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(doc, 19999), "i")), 19999);
    assert_string_equal(json_string_value(json_object_get(json_array_get(doc, 7), "s")),
                        "\"quoted\" \\ text");
    json_decref(doc);
    jsonw_free(&w);

    /* One long string. */
    size_t n = 100000;
    char *big = xmalloc(n + 1);
    memset(big, '"', n);
    big[n] = '\0';
    jsonw_init(&w);
    jsonw_string(&w, big);
    assert_int_equal(w.len, 2 * n + 2);
    doc = parse_back(w.buf, w.len);
    assert_int_equal(json_string_length(doc), n);
    json_decref(doc);
    jsonw_free(&w);
    free(big);
}

static void test_steal(void **state)
{
    struct jsonw w;
    size_t len = 0;
    (void)state;

    jsonw_init(&w);
    jsonw_object_begin(&w);
    jsonw_key(&w, "a");
    jsonw_array_begin(&w);
    jsonw_int(&w, 1);
    /* Stolen in the middle of a document: the writer starts afresh. */
    char *first = jsonw_steal(&w, &len);
    assert_string_equal(first, "{\"a\":[1");
    assert_int_equal(len, 7);

    assert_non_null(w.buf);
    assert_ptr_not_equal(w.buf, first);
    assert_string_equal(w.buf, "");
    assert_int_equal(w.len, 0);
    assert_int_equal(w.depth, 0);
    jsonw_array_begin(&w);
    jsonw_int(&w, 2);
    jsonw_int(&w, 3);
    jsonw_array_end(&w);
    expect_output_only(&w, "[2,3]");
    /* The stolen buffer is untouched by later writing. */
    assert_string_equal(first, "{\"a\":[1");
    free(first);

    char *second = jsonw_steal(&w, NULL);
    assert_string_equal(second, "[2,3]");
    free(second);
    jsonw_free(&w);
}

static void test_reset(void **state)
{
    struct jsonw w;
    (void)state;

    jsonw_init(&w);
    jsonw_array_begin(&w);
    jsonw_object_begin(&w);
    jsonw_key(&w, "a");
    jsonw_int(&w, 1);
    /* Reset with two levels open and values written at both. */
    jsonw_reset(&w);
    assert_string_equal(w.buf, "");
    assert_int_equal(w.len, 0);
    assert_int_equal(w.depth, 0);
    jsonw_array_begin(&w);
    jsonw_object_begin(&w);
    jsonw_key(&w, "b");
    jsonw_int(&w, 2);
    jsonw_object_end(&w);
    jsonw_array_end(&w);
    expect_output_only(&w, "[{\"b\":2}]");

    /* A finished document, then reset: no leading comma. */
    jsonw_reset(&w);
    jsonw_array_begin(&w);
    jsonw_int(&w, 1);
    jsonw_array_end(&w);
    expect_output_only(&w, "[1]");
    jsonw_free(&w);
}

/* The buffer stops at JSONW_MAX_BYTES: the write that would pass it
 * fails the writer, which stays failed (empty, deaf to writes) until a
 * reset. */
static void test_cap(void **state)
{
    enum { CHUNK = 1024 * 1024 };
    const size_t max_writes = JSONW_MAX_BYTES / CHUNK + 2;
    char *chunk = xmalloc(CHUNK);
    struct jsonw w;
    size_t writes = 0, before = 0;
    (void)state;

    memset(chunk, 'a', CHUNK);
    jsonw_init(&w);
    assert_int_equal(jsonw_failed(&w), 0);
    jsonw_array_begin(&w);
    while (!jsonw_failed(&w) && writes < max_writes) {
        before = w.len;
        jsonw_string_len(&w, chunk, CHUNK);
        writes++;
        assert_true(w.cap <= JSONW_MAX_BYTES);
    }
    assert_int_equal(jsonw_failed(&w), 1);
    /* It failed on the write that did not fit, not before. */
    assert_true(before + CHUNK + 3 > JSONW_MAX_BYTES - 1);
    assert_true(writes >= JSONW_MAX_BYTES / (CHUNK + 3));
    assert_int_equal(w.len, 0);
    assert_string_equal(w.buf, "");

    /* It sticks: a small write changes nothing. */
    jsonw_int(&w, 1);
    jsonw_array_end(&w);
    assert_int_equal(jsonw_failed(&w), 1);
    assert_int_equal(w.len, 0);
    assert_string_equal(w.buf, "");

    /* A reset clears it. */
    jsonw_reset(&w);
    assert_int_equal(jsonw_failed(&w), 0);
    jsonw_array_begin(&w);
    jsonw_int(&w, 1);
    jsonw_array_end(&w);
    expect_output_only(&w, "[1]");

    /* Raw values meet the cap too; a failed writer's output, stolen, is
     * empty. */
    jsonw_reset(&w);
    for (size_t i = 0; i < max_writes && !jsonw_failed(&w); i++)
        jsonw_raw(&w, chunk, CHUNK);
    assert_int_equal(jsonw_failed(&w), 1);
    size_t len = 1;
    char *out = jsonw_steal(&w, &len);
    assert_int_equal(len, 0);
    assert_string_equal(out, "");
    free(out);
    assert_int_equal(jsonw_failed(&w), 0); /* stealing starts afresh */
    jsonw_free(&w);
    free(chunk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_containers),
        cmocka_unit_test(test_flat_object),
        cmocka_unit_test(test_commas_in_nested_values),
        cmocka_unit_test(test_array_of_objects),
        cmocka_unit_test(test_deep_nesting_up_to_max),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_every_control_character),
        cmocka_unit_test(test_keys_are_escaped),
        cmocka_unit_test(test_utf8_passthrough),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_money),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_raw),
        cmocka_unit_test(test_top_level_scalars),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_steal),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
