/*
 * Unit tests for ctoken: consistency tokens round-trip, use only URL-safe
 * characters, spell each set of seqs one way, and refuse anything a writer
 * holding the same key did not issue.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctoken.h"

#define KEY "test-key"

static void assert_url_safe(const char *t)
{
    for (const char *p = t; *p; p++)
        if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~", *p))
            fail_msg("character '%c' in token %s", *p, t);
}

static void test_round_trip_runs(void **state)
{
    (void)state;
    int64_t seqs[] = {7, 3, 4, 5, 10, 11, 20};
    char *t = ctoken_encode("order-service", seqs, 7, KEY);
    struct ctoken tok;

    assert_non_null(t);
    assert_url_safe(t);
    assert_int_equal(strncmp(t, "1.order-service.3-5_7_10-11_20.", 31), 0);
    assert_int_equal(ctoken_decode(t, KEY, &tok), 0);
    assert_string_equal(tok.source, "order-service");
    assert_int_equal(tok.run_count, 4);
    assert_int_equal(tok.runs[0].first, 3);
    assert_int_equal(tok.runs[0].last, 5);
    assert_int_equal(tok.runs[1].first, 7);
    assert_int_equal(tok.runs[1].last, 7);
    assert_int_equal(tok.runs[3].first, 20);
    ctoken_free(&tok);
    free(t);
}

static void test_batch_is_one_run(void **state)
{
    (void)state;
    int64_t seqs[1000];
    struct ctoken tok;

    for (int i = 0; i < 1000; i++)
        seqs[i] = 5000 + i;
    char *t = ctoken_encode("user-service", seqs, 1000, NULL);
    assert_non_null(t);
    assert_true(strlen(t) < 64);
    assert_int_equal(ctoken_decode(t, NULL, &tok), 0);
    assert_int_equal(tok.run_count, 1);
    assert_int_equal(tok.runs[0].first, 5000);
    assert_int_equal(tok.runs[0].last, 5999);
    ctoken_free(&tok);
    /* Another key did not issue it. */
    assert_int_equal(ctoken_decode(t, KEY, &tok), -1);
    free(t);
}

static void test_refuses_bad_input_to_encode(void **state)
{
    (void)state;
    int64_t zero[] = {0}, dup[] = {4, 4}, ok[] = {1};
    assert_null(ctoken_encode("order-service", zero, 1, KEY));
    assert_null(ctoken_encode("order-service", dup, 2, KEY));
    assert_null(ctoken_encode("Order.Service", ok, 1, KEY));
    assert_null(ctoken_encode("", ok, 1, KEY));
    assert_null(ctoken_encode("order-service", ok, 0, KEY));
}

static void expect_refused(const char *text)
{
    struct ctoken tok;
    if (ctoken_decode(text, KEY, &tok) != -1)
        fail_msg("accepted %s", text);
    assert_null(tok.runs);
}

static void test_refuses_edits(void **state)
{
    (void)state;
    int64_t seqs[] = {41, 42};
    char *t = ctoken_encode("order-service", seqs, 2, KEY);
    size_t len = strlen(t);
    char buf[256];

    /* Every single-character change of an issued token is refused. */
    for (size_t i = 0; i < len; i++) {
        for (const char *c = "0123456789-._~Az"; *c; c++) {
            if (t[i] == *c)
                continue;
            memcpy(buf, t, len + 1);
            buf[i] = *c;
            expect_refused(buf);
        }
    }
    memcpy(buf, t, len - 1);
    buf[len - 1] = '\0';
    expect_refused(buf);
    snprintf(buf, sizeof(buf), "%sA", t);
    expect_refused(buf);
    free(t);
}

static void test_refuses_malformed(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "1",
        "1.",
        "1..",
        "1...",
        "1.a.1.",
        "2.order-service.1.AAAAAAAAAAAAAAAAAAAAAA",
        "1.order-service.01.AAAAAAAAAAAAAAAAAAAAAA",
        "1.order-service.1-1.AAAAAAAAAAAAAAAAAAAAAA",
        "1.order-service.2_1.AAAAAAAAAAAAAAAAAAAAAA",
        "1.order-service.1_2.AAAAAAAAAAAAAAAAAAAAAA",
        "1.order-service._1.AAAAAAAAAAAAAAAAAAAAAA",
        "1.order-service.1.AAAA",
        "1.order-service.99999999999999999999.AAAAAAAAAAAAAAAAAAAAAA",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_refused(bad[i]);
    expect_refused(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_runs),
        cmocka_unit_test(test_batch_is_one_run),
        cmocka_unit_test(test_refuses_bad_input_to_encode),
        cmocka_unit_test(test_refuses_edits),
        cmocka_unit_test(test_refuses_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
