/*
 * fuzz: what the libFuzzer harnesses of tests/fuzz share.
 *
 * Each harness is one fuzz_*.c built with clang -fsanitize=fuzzer,address,
 * undefined (scripts/run-fuzz.sh). Besides the sanitizers, a harness checks
 * the promises of docs/api.md on what the code under test returns; a broken
 * promise aborts through FUZZ_CHECK, which libFuzzer reports as a crash
 * and keeps the input.
 *
 * The helpers are static inline, so a harness that uses only some of them
 * still builds warning-free.
 */
#ifndef TESTS_FUZZ_H
#define TESTS_FUZZ_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_error.h"
#include "jsonw.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* jansson seeds its hash from /dev/urandom; a fixed seed makes the order
 * of object keys, and so which bad field is reported, replayable. (Each
 * harness includes this header once, so this is its only definition.) */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    json_object_seed(1);
    return 0;
}

/* A string that is valid UTF-8 (jansson's rule, the same the parser uses). */
static inline int fuzz_is_utf8(const char *s, size_t len)
{
    json_t *v = json_stringn(s, len);
    int ok = v != NULL;
    json_decref(v);
    return ok;
}

/* Written as a JSON string by jsonw, then read back: the same bytes. */
static inline void fuzz_check_string_roundtrip(const char *s, size_t len)
{
    struct jsonw w;
    json_error_t jerr;

    jsonw_init(&w);
    jsonw_string_len(&w, s, len);
    json_t *back = json_loadb(w.buf, w.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    FUZZ_CHECK(back != NULL);
    FUZZ_CHECK(json_is_string(back));
    FUZZ_CHECK(json_string_length(back) == len);
    FUZZ_CHECK(memcmp(json_string_value(back), s, len) == 0);
    json_decref(back);
    jsonw_free(&w);
}

/* An error of docs/api.md's shape: a known status and code, a field name fit
 * to echo (field.c promises "a bounded, printable name"), a message, and
 * an answer that is valid JSON saying the same. */
static inline void fuzz_check_error(const struct api_error *e)
{
    static const char *const codes[] = {"malformed_json", "invalid_body",  "invalid_field",
                                        "missing_field",  "unknown_field", "invalid_query"};
    size_t i, n;
    struct jsonw w;
    json_error_t jerr;

    FUZZ_CHECK(e->status == 400 || e->status == 422);
    FUZZ_CHECK(e->code != NULL);
    for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (strcmp(e->code, codes[i]) == 0)
            break;
    FUZZ_CHECK(i < sizeof(codes) / sizeof(codes[0]));
    FUZZ_CHECK((e->status == 400) ==
               (strcmp(e->code, "malformed_json") == 0 || strcmp(e->code, "invalid_query") == 0));

    n = strnlen(e->field, sizeof(e->field));
    FUZZ_CHECK(n < sizeof(e->field));
    /* Printable ASCII (a space included: "email " is the client's key). */
    for (i = 0; i < n; i++)
        FUZZ_CHECK(e->field[i] >= 0x20 && e->field[i] < 0x7f);
    n = strnlen(e->message, sizeof(e->message));
    FUZZ_CHECK(n > 0 && n < sizeof(e->message));
    FUZZ_CHECK(e->index >= -1);

    jsonw_init(&w);
    api_error_write(e, &w);
    json_t *doc = json_loadb(w.buf, w.len, 0, &jerr);
    if (!doc)
        fprintf(stderr, "error answer is not JSON: %s\n", jerr.text);
    FUZZ_CHECK(doc != NULL);
    json_t *inner = json_object_get(doc, "error");
    FUZZ_CHECK(json_is_object(inner));
    FUZZ_CHECK(json_integer_value(json_object_get(inner, "status")) == e->status);
    FUZZ_CHECK(json_is_string(json_object_get(inner, "message")));
    FUZZ_CHECK(strcmp(json_string_value(json_object_get(inner, "message")), e->message) == 0);
    FUZZ_CHECK((json_object_get(inner, "field") != NULL) == (e->field[0] != '\0'));
    FUZZ_CHECK((json_object_get(inner, "index") != NULL) == (e->index >= 0));
    json_decref(doc);
    jsonw_free(&w);
}

/* A validated string field: NULL only when optional; at most max code
 * points; when required, something other than white space; and it goes
 * back out as JSON unchanged. */
static inline void fuzz_check_field_string(json_t *obj, const char *name, const char *s,
                                           int required, size_t max_chars)
{
    json_t *v = json_object_get(obj, name);

    if (!s) {
        FUZZ_CHECK(!required);
        FUZZ_CHECK(!v || json_is_null(v));
        return;
    }
    FUZZ_CHECK(json_is_string(v) && json_string_value(v) == s);
    size_t len = json_string_length(v);
    size_t chars = 0;
    for (size_t i = 0; i < len; i++)
        chars += ((unsigned char)s[i] & 0xC0) != 0x80;
    FUZZ_CHECK(chars <= max_chars);
    if (required) {
        FUZZ_CHECK(len > 0);
        /* Not all ASCII white space (the full Unicode rule is field.c's). */
        size_t i = 0;
        while (i < len && (s[i] == ' ' || (s[i] >= '\t' && s[i] <= '\r')))
            i++;
        FUZZ_CHECK(i < len);
    }
    FUZZ_CHECK(strlen(s) == len); /* no NUL inside: services bind strlen(s) bytes */
    fuzz_check_string_roundtrip(s, len);
}

#endif
