/*
 * Unit tests for api_error: filling the error, and the exact JSON shape of
 * docs/api.md: {"error": {"status", "code", ["field",] "message"[, "index"]}},
 * "field" only when set and "index" only for a batch item.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <string.h>

#include "api_error.h"

/* Writes e and checks the exact text; returns the parsed "error" object's
 * document (caller decrefs). */
static json_t *expect_written(const struct api_error *e, const char *expected)
{
    struct jsonw w;
    json_error_t jerr;

    jsonw_init(&w);
    api_error_write(e, &w);
    if (strcmp(w.buf, expected) != 0)
        fail_msg("expected %s\n got     %s", expected, w.buf);
    json_t *doc = json_loadb(w.buf, w.len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc)
        fail_msg("not valid JSON: %s (%s)", w.buf, jerr.text);
    jsonw_free(&w);
    /* Exactly one key at the top. */
    assert_int_equal(json_object_size(doc), 1);
    assert_true(json_is_object(json_object_get(doc, "error")));
    return doc;
}

static void test_clear(void **state)
{
    struct api_error e;
    (void)state;

    memset(&e, 0x5a, sizeof(e));
    api_error_clear(&e);
    assert_int_equal(e.status, 0);
    assert_null(e.code);
    assert_string_equal(e.field, "");
    assert_string_equal(e.message, "");
    assert_int_equal(e.index, -1);
}

static void test_set(void **state)
{
    struct api_error e;
    (void)state;

    api_error_clear(&e);
    assert_int_equal(
        api_error_set(&e, 422, "invalid_field", "amount", "%s must be %d", "amount", 7), -1);
    assert_int_equal(e.status, 422);
    assert_string_equal(e.code, "invalid_field");
    assert_string_equal(e.field, "amount");
    assert_string_equal(e.message, "amount must be 7");
    assert_int_equal(e.index, -1);

    /* A later set replaces everything, the field and index included. */
    e.index = 3;
    assert_int_equal(api_error_set(&e, 404, "not_found", NULL, "no such user"), -1);
    assert_int_equal(e.status, 404);
    assert_string_equal(e.code, "not_found");
    assert_string_equal(e.field, "");
    assert_string_equal(e.message, "no such user");
    assert_int_equal(e.index, -1);
}

static void test_set_truncates(void **state)
{
    struct api_error e;
    char long_field[200], long_message[1000];
    (void)state;

    memset(long_field, 'f', sizeof(long_field) - 1);
    long_field[sizeof(long_field) - 1] = '\0';
    memset(long_message, 'm', sizeof(long_message) - 1);
    long_message[sizeof(long_message) - 1] = '\0';

    api_error_set(&e, 422, "unknown_field", long_field, "%s", long_message);
    assert_int_equal(strlen(e.field), API_ERROR_FIELD_MAX - 1);
    assert_int_equal(strlen(e.message), API_ERROR_MESSAGE_MAX - 1);
    assert_int_equal(strncmp(e.field, long_field, API_ERROR_FIELD_MAX - 1), 0);
}

static void test_write_with_field(void **state)
{
    struct api_error e;
    (void)state;

    api_error_set(&e, 422, "invalid_field", "amount",
                  "amount must be a positive number with at most 2 decimal places");
    json_t *doc = expect_written(
        &e,
        "{\"error\":{\"status\":422,\"code\":\"invalid_field\",\"field\":\"amount\","
        "\"message\":\"amount must be a positive number with at most 2 decimal places\"}}");
    json_t *err = json_object_get(doc, "error");
    assert_int_equal(json_object_size(err), 4);
    assert_true(json_is_integer(json_object_get(err, "status")));
    assert_int_equal(json_integer_value(json_object_get(err, "status")), 422);
    assert_string_equal(json_string_value(json_object_get(err, "code")), "invalid_field");
    assert_string_equal(json_string_value(json_object_get(err, "field")), "amount");
    assert_null(json_object_get(err, "index"));
    json_decref(doc);
}

static void test_write_without_field(void **state)
{
    struct api_error e;
    (void)state;

    api_error_set(&e, 400, "malformed_json", NULL, "request body is empty");
    json_t *doc = expect_written(&e,
                                 "{\"error\":{\"status\":400,\"code\":\"malformed_json\","
                                 "\"message\":\"request body is empty\"}}");
    json_t *err = json_object_get(doc, "error");
    assert_int_equal(json_object_size(err), 3);
    assert_null(json_object_get(err, "field"));
    assert_null(json_object_get(err, "index"));
    json_decref(doc);

    /* An empty field name is no field. */
    api_error_set(&e, 503, "unavailable", "", "database unavailable");
    doc = expect_written(&e,
                         "{\"error\":{\"status\":503,\"code\":\"unavailable\","
                         "\"message\":\"database unavailable\"}}");
    json_decref(doc);
}

static void test_write_with_index(void **state)
{
    struct api_error e;
    (void)state;

    api_error_set(&e, 422, "missing_field", "email", "email is required");
    e.index = 2;
    json_t *doc = expect_written(&e,
                                 "{\"error\":{\"status\":422,\"code\":\"missing_field\","
                                 "\"field\":\"email\",\"message\":\"email is required\","
                                 "\"index\":2}}");
    json_t *err = json_object_get(doc, "error");
    assert_int_equal(json_object_size(err), 5);
    assert_true(json_is_integer(json_object_get(err, "index")));
    assert_int_equal(json_integer_value(json_object_get(err, "index")), 2);
    json_decref(doc);

    /* Index 0 is an index; a 409 in a batch carries it with no field. */
    api_error_set(&e, 409, "conflict", NULL, "email already exists");
    e.index = 0;
    doc = expect_written(&e,
                         "{\"error\":{\"status\":409,\"code\":\"conflict\","
                         "\"message\":\"email already exists\",\"index\":0}}");
    json_decref(doc);

    e.index = 999;
    doc = expect_written(&e,
                         "{\"error\":{\"status\":409,\"code\":\"conflict\","
                         "\"message\":\"email already exists\",\"index\":999}}");
    json_decref(doc);

    /* Negative indexes are not written. */
    e.index = -1;
    doc = expect_written(&e,
                         "{\"error\":{\"status\":409,\"code\":\"conflict\","
                         "\"message\":\"email already exists\"}}");
    json_decref(doc);
    e.index = -5;
    doc = expect_written(&e,
                         "{\"error\":{\"status\":409,\"code\":\"conflict\","
                         "\"message\":\"email already exists\"}}");
    json_decref(doc);
}

static void test_write_escapes(void **state)
{
    struct api_error e;
    (void)state;

    api_error_set(&e, 422, "unknown_field", "a\"b", "unknown field %s\\%s", "a\"b", "\n");
    json_t *doc = expect_written(&e,
                                 "{\"error\":{\"status\":422,\"code\":\"unknown_field\","
                                 "\"field\":\"a\\\"b\","
                                 "\"message\":\"unknown field a\\\"b\\\\\\n\"}}");
    json_t *err = json_object_get(doc, "error");
    assert_string_equal(json_string_value(json_object_get(err, "field")), "a\"b");
    assert_string_equal(json_string_value(json_object_get(err, "message")),
                        "unknown field a\"b\\\n");
    json_decref(doc);
}

static void test_write_inside_a_document(void **state)
{
    struct api_error e;
    struct jsonw w;
    json_error_t jerr;
    (void)state;

    /* Written as one value, it gets its comma like any other. */
    api_error_set(&e, 404, "not_found", NULL, "not found");
    jsonw_init(&w);
    jsonw_array_begin(&w);
    jsonw_int(&w, 1);
    api_error_write(&e, &w);
    jsonw_array_end(&w);
    assert_string_equal(w.buf,
                        "[1,{\"error\":{\"status\":404,\"code\":\"not_found\","
                        "\"message\":\"not found\"}}]");
    json_t *doc = json_loadb(w.buf, w.len, 0, &jerr);
    assert_non_null(doc);
    json_decref(doc);
    jsonw_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clear),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_set_truncates),
        cmocka_unit_test(test_write_with_field),
        cmocka_unit_test(test_write_without_field),
        cmocka_unit_test(test_write_with_index),
        cmocka_unit_test(test_write_escapes),
        cmocka_unit_test(test_write_inside_a_document),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
