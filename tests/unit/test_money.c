/*
 * Unit tests for money: the decimal rule of docs/api.md on JSON numbers as
 * jansson parses them, and the text written back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "money.h"

/* Parses json the way a request body is parsed, then applies the rule. */
static int money_of(const char *json, int64_t *cents)
{
    json_error_t error;
    json_t *value = json_loads(json, JSON_DECODE_ANY, &error);
    assert_non_null(value);
    int rc = money_from_json(value, cents);
    json_decref(value);
    return rc;
}

static void expect_cents(const char *json, int64_t expected)
{
    int64_t cents = -42;
    int rc = money_of(json, &cents);
    if (rc != MONEY_OK)
        fail_msg("%s: expected %lld cents, got error %d", json, (long long)expected, rc);
    assert_int_equal(cents, expected);
}

static void expect_error(const char *json, int expected)
{
    int64_t cents = -42;
    int rc = money_of(json, &cents);
    if (rc != expected)
        fail_msg("%s: expected error %d, got %d", json, expected, rc);
    assert_int_equal(cents, -42); /* untouched on failure */
}

static void test_accepts_decimal_amounts(void **state)
{
    (void)state;
    expect_cents("0.1", 10);
    expect_cents("0.01", 1);
    expect_cents("19.99", 1999);
    expect_cents("1.10", 110);
    expect_cents("0.29", 29); /* 0.29 * 100 is 28.999999999999996 */
    expect_cents("50.0", 5000);
    expect_cents("123456.78", 12345678);
    expect_cents("999999999.99", 99999999999);
    expect_cents("1000000000.00", MONEY_MAX_CENTS);
}

static void test_accepts_integers_and_exponents(void **state)
{
    (void)state;
    json_t *v = json_loads("1e2", JSON_DECODE_ANY, NULL);
    assert_true(json_is_real(v)); /* so the next line exercises the real path */
    json_decref(v);

    expect_cents("1e2", 10000);
    expect_cents("5e1", 5000);
    expect_cents("1E-2", 1);
    expect_cents("50", 5000);
    expect_cents("1", 100);
    expect_cents("1000000000", MONEY_MAX_CENTS);
}

static void test_rejects_out_of_range(void **state)
{
    (void)state;
    expect_error("0", MONEY_OUT_OF_RANGE);
    expect_error("0.0", MONEY_OUT_OF_RANGE);
    expect_error("-0.0", MONEY_OUT_OF_RANGE);
    expect_error("-1", MONEY_OUT_OF_RANGE);
    expect_error("-0.01", MONEY_OUT_OF_RANGE);
    expect_error("1000000001", MONEY_OUT_OF_RANGE);
    expect_error("1000000000.01", MONEY_OUT_OF_RANGE);
    expect_error("1e10", MONEY_OUT_OF_RANGE);
    expect_error("1e300", MONEY_OUT_OF_RANGE);
    /* Would overflow if it were multiplied by 100 before the range check
     * (UBSan reports that). */
    expect_error("9223372036854775807", MONEY_OUT_OF_RANGE);
    expect_error("92233720368547759", MONEY_OUT_OF_RANGE);
    expect_error("-9223372036854775808", MONEY_OUT_OF_RANGE);
}

static void test_rejects_fractions_of_cents(void **state)
{
    (void)state;
    expect_error("0.001", MONEY_TOO_PRECISE);
    expect_error("0.005", MONEY_TOO_PRECISE);
    expect_error("1.005", MONEY_TOO_PRECISE);
    expect_error("19.999", MONEY_TOO_PRECISE);
    expect_error("1e-300", MONEY_TOO_PRECISE);
    expect_error("999999999.999", MONEY_TOO_PRECISE);
}

static void test_rejects_non_numbers(void **state)
{
    (void)state;
    int64_t cents = -42;
    expect_error("\"7\"", MONEY_NOT_A_NUMBER);
    expect_error("\"50.00\"", MONEY_NOT_A_NUMBER);
    expect_error("true", MONEY_NOT_A_NUMBER);
    expect_error("false", MONEY_NOT_A_NUMBER);
    expect_error("null", MONEY_NOT_A_NUMBER);
    expect_error("[50]", MONEY_NOT_A_NUMBER);
    expect_error("{\"amount\": 50}", MONEY_NOT_A_NUMBER);
    assert_int_equal(money_from_json(NULL, &cents), MONEY_NOT_A_NUMBER);
}

/* JSON cannot spell these, but a double from elsewhere can. */
static void test_rejects_non_finite_doubles(void **state)
{
    (void)state;
    int64_t cents = -42;
    assert_int_equal(money_from_double(NAN, &cents), MONEY_OUT_OF_RANGE);
    assert_int_equal(money_from_double(-NAN, &cents), MONEY_OUT_OF_RANGE);
    assert_int_equal(money_from_double(INFINITY, &cents), MONEY_OUT_OF_RANGE);
    assert_int_equal(money_from_double(-INFINITY, &cents), MONEY_OUT_OF_RANGE);
    assert_int_equal(money_from_double(DBL_MAX, &cents), MONEY_OUT_OF_RANGE);
    assert_int_equal(money_from_double(DBL_TRUE_MIN, &cents), MONEY_TOO_PRECISE);
    assert_int_equal(cents, -42);
}

/*
 * Every whole number of cents must be accepted as the double a client's
 * JSON library would write for it, and its neighbouring doubles must not:
 * that is what keeps totals from drifting. Checked for all amounts up to
 * 10,000.00 and for those just below the maximum, where a double's
 * spacing is largest.
 */
static void check_cents_round_trip(int64_t c)
{
    int64_t got = -1;
    char text[MONEY_TEXT_MAX];
    double d = (double)c / 100.0;

    if (money_from_double(d, &got) != MONEY_OK || got != c)
        fail_msg("%lld cents: got %lld", (long long)c, (long long)got);
    money_format(c, text);
    if (money_from_double(strtod(text, NULL), &got) != MONEY_OK || got != c)
        fail_msg("%s: got %lld", text, (long long)got);
    if (money_from_double(nextafter(d, 0), &got) != MONEY_TOO_PRECISE)
        fail_msg("%lld cents minus one ulp accepted", (long long)c);
    if (c < MONEY_MAX_CENTS && money_from_double(nextafter(d, INFINITY), &got) != MONEY_TOO_PRECISE)
        fail_msg("%lld cents plus one ulp accepted", (long long)c);
}

static void test_every_cent_round_trips(void **state)
{
    (void)state;
    for (int64_t c = 1; c <= 1000000; c++)
        check_cents_round_trip(c);
    for (int64_t c = MONEY_MAX_CENTS - 200000; c <= MONEY_MAX_CENTS; c++)
        check_cents_round_trip(c);
}

static void expect_format(int64_t cents, const char *expected)
{
    char buf[MONEY_TEXT_MAX];
    memset(buf, 'x', sizeof buf);
    size_t n = money_format(cents, buf);
    assert_string_equal(buf, expected);
    assert_int_equal(n, strlen(expected));
}

static void test_format(void **state)
{
    (void)state;
    expect_format(5000, "50.00");
    expect_format(5, "0.05");
    expect_format(10, "0.10");
    expect_format(1999, "19.99");
    expect_format(0, "0.00");
    expect_format(-150, "-1.50");
    expect_format(-5, "-0.05");
    expect_format(MONEY_MAX_CENTS, "1000000000.00");
    expect_format(INT64_MAX, "92233720368547758.07");
    expect_format(INT64_MIN, "-92233720368547758.08");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts_decimal_amounts),
        cmocka_unit_test(test_accepts_integers_and_exponents),
        cmocka_unit_test(test_rejects_out_of_range),
        cmocka_unit_test(test_rejects_fractions_of_cents),
        cmocka_unit_test(test_rejects_non_numbers),
        cmocka_unit_test(test_rejects_non_finite_doubles),
        cmocka_unit_test(test_every_cent_round_trips),
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
