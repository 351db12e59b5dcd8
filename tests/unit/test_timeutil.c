/*
 * Unit tests for timeutil: the RFC 3339 rules of docs/api.md, and the calendar
 * arithmetic checked day by day against an independent walk of the
 * calendar over the whole accepted range.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "timeutil.h"

#define MS_PER_DAY INT64_C(86400000)

static int parse(const char *text, int64_t *ms)
{
    return timeutil_parse_rfc3339(text, strlen(text), ms);
}

/* Parses input and expects it to name the instant written as utc. */
static void expect_utc(const char *input, const char *utc)
{
    int64_t ms = -1;
    char buf[TIMEUTIL_TEXT_MAX];

    if (parse(input, &ms) != 0)
        fail_msg("rejected: \"%s\"", input);
    timeutil_format_rfc3339(ms, buf);
    if (strcmp(buf, utc) != 0)
        fail_msg("\"%s\": expected %s, got %s", input, utc, buf);
}

static void expect_ms(const char *input, int64_t expected)
{
    int64_t ms = -1;
    if (parse(input, &ms) != 0)
        fail_msg("rejected: \"%s\"", input);
    assert_int_equal(ms, expected);
}

static void expect_rejected(const char *input)
{
    int64_t ms = -42;
    if (parse(input, &ms) != -1)
        fail_msg("accepted: \"%s\"", input);
    assert_int_equal(ms, -42);
}

static void test_utc_forms(void **state)
{
    (void)state;
    expect_ms("1970-01-01T00:00:00Z", 0);
    expect_ms("2025-04-03T10:15:00Z", INT64_C(1743675300000));
    expect_ms("2038-01-19T03:14:08Z", INT64_C(2147483648000));
    expect_ms("2000-02-29T12:34:56.789Z", INT64_C(951827696789));
    expect_utc("2025-04-03T10:15:00Z", "2025-04-03T10:15:00.000Z");
    expect_utc("2025-04-03t10:15:00z", "2025-04-03T10:15:00.000Z");
    expect_utc("2025-04-03t10:15:00Z", "2025-04-03T10:15:00.000Z");
    expect_utc("2025-04-03T10:15:00z", "2025-04-03T10:15:00.000Z");
    expect_utc("2025-04-03T10:15:00+00:00", "2025-04-03T10:15:00.000Z");
    expect_utc("2025-04-03T10:15:00-00:00", "2025-04-03T10:15:00.000Z");
}

static void test_offsets(void **state)
{
    (void)state;
    expect_utc("2025-04-03T10:15:00+05:30", "2025-04-03T04:45:00.000Z");
    expect_utc("2025-04-03T10:15:00-08:00", "2025-04-03T18:15:00.000Z");
    /* Offsets that move the date, month and year. */
    expect_utc("2025-04-03T02:00:00+05:30", "2025-04-02T20:30:00.000Z");
    expect_utc("2025-04-03T20:00:00-08:00", "2025-04-04T04:00:00.000Z");
    expect_utc("2025-03-31T20:00:00-08:00", "2025-04-01T04:00:00.000Z");
    expect_utc("2025-01-01T02:00:00+05:30", "2024-12-31T20:30:00.000Z");
    expect_utc("2024-12-31T23:00:00-01:00", "2025-01-01T00:00:00.000Z");
    expect_utc("2024-02-28T23:30:00-01:00", "2024-02-29T00:30:00.000Z");
    expect_utc("2023-02-28T23:30:00-01:00", "2023-03-01T00:30:00.000Z");
    /* The extremes of the allowed offsets. */
    expect_utc("2025-04-03T00:00:00+23:59", "2025-04-02T00:01:00.000Z");
    expect_utc("2025-04-03T00:00:00-23:59", "2025-04-03T23:59:00.000Z");
    expect_rejected("2025-04-03T10:15:00+24:00");
    expect_rejected("2025-04-03T10:15:00+05:60");
    expect_rejected("2025-04-03T10:15:00+0530");
    expect_rejected("2025-04-03T10:15:00+5:30");
    expect_rejected("2025-04-03T10:15:00+05");
    expect_rejected("2025-04-03T10:15:00+05:3");
    expect_rejected("2025-04-03T10:15:00 +05:30");
    expect_rejected("2025-04-03T10:15:00+05:30:00");
}

static void test_fractions(void **state)
{
    (void)state;
    expect_utc("2025-04-03T10:15:00.1Z", "2025-04-03T10:15:00.100Z");
    expect_utc("2025-04-03T10:15:00.12Z", "2025-04-03T10:15:00.120Z");
    expect_utc("2025-04-03T10:15:00.123Z", "2025-04-03T10:15:00.123Z");
    expect_utc("2025-04-03T10:15:00.123456789Z", "2025-04-03T10:15:00.123Z");
    expect_utc("2025-04-03T10:15:00.0009Z", "2025-04-03T10:15:00.000Z");
    expect_utc("2025-04-03T10:15:00.5+01:00", "2025-04-03T09:15:00.500Z");
    /* Truncation, not rounding: never rolls into the next day or year. */
    expect_utc("2024-12-31T23:59:59.9999999Z", "2024-12-31T23:59:59.999Z");
    expect_ms("1970-01-01T00:00:00.001Z", 1);

    char longer[600];
    strcpy(longer, "2025-04-03T10:15:00.");
    size_t n = strlen(longer);
    memset(longer + n, '9', 500);
    strcpy(longer + n + 500, "Z");
    expect_utc(longer, "2025-04-03T10:15:00.999Z");

    expect_rejected("2025-04-03T10:15:00.Z");
    expect_rejected("2025-04-03T10:15:00.");
    expect_rejected("2025-04-03T10:15:00,5Z");
    expect_rejected("2025-04-03T10:15:00.5.5Z");
    expect_rejected("2025-04-03T10:15:00.-5Z");
}

static void test_invalid_fields(void **state)
{
    (void)state;
    expect_rejected("2016-12-31T23:59:60Z"); /* leap second */
    expect_rejected("2025-04-03T10:15:60Z");
    expect_rejected("2025-02-30T00:00:00Z");
    expect_rejected("2025-04-31T00:00:00Z");
    expect_rejected("2025-13-01T00:00:00Z");
    expect_rejected("2025-00-01T00:00:00Z");
    expect_rejected("2025-04-00T00:00:00Z");
    expect_rejected("2025-01-32T00:00:00Z");
    expect_rejected("2025-04-03T24:00:00Z");
    expect_rejected("2025-04-03T10:60:00Z");
    expect_utc("2025-01-31T23:59:59Z", "2025-01-31T23:59:59.000Z");
    expect_utc("2025-04-30T00:00:00Z", "2025-04-30T00:00:00.000Z");
}

static void test_leap_years(void **state)
{
    (void)state;
    expect_utc("2024-02-29T12:00:00Z", "2024-02-29T12:00:00.000Z");
    expect_utc("2000-02-29T12:00:00Z", "2000-02-29T12:00:00.000Z");
    expect_utc("2400-02-29T12:00:00Z", "2400-02-29T12:00:00.000Z");
    expect_rejected("2023-02-29T12:00:00Z");
    expect_rejected("2100-02-29T12:00:00Z");
    expect_rejected("2200-02-29T12:00:00Z");
    expect_rejected("2024-02-30T12:00:00Z");
    expect_utc("2024-12-31T00:00:00Z", "2024-12-31T00:00:00.000Z");
    expect_ms("2024-12-31T00:00:00Z", INT64_C(1735603200000));
}

static void test_year_range_in_utc(void **state)
{
    (void)state;
    expect_rejected("1969-12-31T23:59:59Z");
    expect_rejected("1969-12-31T23:59:59.999Z");
    expect_rejected("1970-01-01T00:30:00+01:00"); /* 1969 in UTC */
    expect_rejected("0000-01-01T00:00:00Z");
    expect_utc("1969-12-31T23:30:00-01:00", "1970-01-01T00:30:00.000Z");
    expect_utc("9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z");
    expect_ms("9999-12-31T23:59:59.999Z", INT64_C(253402300799999));
    expect_utc("9999-12-31T23:59:59.999+00:00", "9999-12-31T23:59:59.999Z");
    expect_rejected("9999-12-31T23:30:00-01:00"); /* 10000 in UTC */
    expect_rejected("9999-12-31T23:00:00-01:00"); /* exactly 10000-01-01 */
    expect_utc("9999-12-31T22:59:59.999-01:00", "9999-12-31T23:59:59.999Z");
    expect_utc("9999-12-31T23:30:00+01:00", "9999-12-31T22:30:00.000Z");
    expect_rejected("10000-01-01T00:00:00Z");
}

static void test_shape(void **state)
{
    (void)state;
    int64_t ms = -42;
    expect_rejected("");
    expect_rejected("2025-04-03");
    expect_rejected("2025-04-03T10:15Z");   /* no seconds */
    expect_rejected("2025-04-03T10:15:00"); /* no offset */
    expect_rejected("2025-04-03 10:15:00Z");
    expect_rejected("2025-04-03_10:15:00Z");
    expect_rejected("2025-4-03T10:15:00Z");
    expect_rejected("2025-04-3T10:15:00Z");
    expect_rejected("25-04-03T10:15:00Z");
    expect_rejected("2025/04/03T10:15:00Z");
    expect_rejected("2025-04-03T10-15-00Z");
    expect_rejected("+2025-04-03T10:15:00Z");
    expect_rejected(" 2025-04-03T10:15:00Z");
    expect_rejected("2025-04-03T10:15:00Z ");
    expect_rejected("2025-04-03T10:15:00Zjunk");
    expect_rejected("2025-04-03T10:15:00ZZ");
    expect_rejected("2025-04-03T10:15:00+05:30Z");
    expect_rejected("2025-04-03T1:15:00Z");
    expect_rejected("2025-04-03T10:15:0Z");
    expect_rejected("2025-0a-03T10:15:00Z");
    expect_rejected("2025-04-03T10:15:00UTC");

    /* Only len bytes are read: a valid prefix is enough, and a NUL inside
     * is just another wrong character. */
    const char *longer = "2025-04-03T10:15:00Zjunk";
    assert_int_equal(timeutil_parse_rfc3339(longer, 20, &ms), 0);
    assert_int_equal(ms, INT64_C(1743675300000));
    assert_int_equal(timeutil_parse_rfc3339(longer, 19, &ms), -1);
    assert_int_equal(timeutil_parse_rfc3339("2025-04-03T10:15:00\0", 20, &ms), -1);
    assert_int_equal(timeutil_parse_rfc3339(NULL, 0, &ms), -1);
}

static void test_format_functions(void **state)
{
    (void)state;
    char buf[TIMEUTIL_TEXT_MAX];
    int year = 0, month = 0;

    assert_int_equal(timeutil_format_rfc3339(0, buf), 24);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    timeutil_format_rfc3339(INT64_C(1743675300123), buf);
    assert_string_equal(buf, "2025-04-03T10:15:00.123Z");
    assert_int_equal(timeutil_format_date(INT64_C(1743675300123), buf), 10);
    assert_string_equal(buf, "2025-04-03");
    timeutil_format_date(INT64_C(253402300799999), buf);
    assert_string_equal(buf, "9999-12-31");

    timeutil_year_month(INT64_C(1743675300123), &year, &month);
    assert_int_equal(year, 2025);
    assert_int_equal(month, 4);
    timeutil_year_month(0, &year, &month);
    assert_int_equal(year, 1970);
    assert_int_equal(month, 1);
    timeutil_year_month(INT64_C(253402300799999), &year, &month);
    assert_int_equal(year, 9999);
    assert_int_equal(month, 12);
}

static void test_month_start(void **state)
{
    (void)state;
    int64_t ms = 0;
    assert_int_equal(timeutil_month_start(1970, 1), 0);
    assert_int_equal(parse("2025-04-01T00:00:00Z", &ms), 0);
    assert_int_equal(timeutil_month_start(2025, 4), ms);
    assert_int_equal(parse("2024-03-01T00:00:00Z", &ms), 0);
    assert_int_equal(timeutil_month_start(2024, 3), ms);
    assert_int_equal(timeutil_month_start(2024, 3) - timeutil_month_start(2024, 2),
                     29 * MS_PER_DAY);
    assert_int_equal(timeutil_month_start(2023, 3) - timeutil_month_start(2023, 2),
                     28 * MS_PER_DAY);
    /* Months outside 1..12 carry into the year. */
    assert_int_equal(timeutil_month_start(2024, 13), timeutil_month_start(2025, 1));
    assert_int_equal(timeutil_month_start(2025, 0), timeutil_month_start(2024, 12));
    assert_int_equal(timeutil_month_start(2025, -11), timeutil_month_start(2024, 1));
    assert_int_equal(timeutil_month_start(2023, -11), timeutil_month_start(2022, 1));
    assert_int_equal(timeutil_month_start(2023, 25), timeutil_month_start(2025, 1));
    assert_int_equal(timeutil_month_start(2023, 14), timeutil_month_start(2024, 2));
    assert_int_equal(timeutil_month_start(10000, 1), INT64_C(253402300800000));
}

/*
 * Walks the calendar one day at a time from 1970-01-01 to 9999-12-31 with
 * a plain day counter and the Gregorian rules, and checks that every day
 * formats and splits the same way, and that its timestamps parse back.
 */
static bool walk_is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* "YYYY-MM-DD" by hand: snprintf here would double the test's time. */
static void write_date(char *out, int y, int m, int d)
{
    const int parts[3][2] = {{y, 4}, {m, 2}, {d, 2}};
    char *p = out;
    for (int i = 0; i < 3; i++) {
        if (i > 0)
            *p++ = '-';
        for (int k = parts[i][1] - 1, v = parts[i][0]; k >= 0; k--, v /= 10)
            p[k] = (char)('0' + v % 10);
        p += parts[i][1];
    }
    *p = '\0';
}

static void test_every_day_round_trips(void **state)
{
    (void)state;
    static const int month_days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y = 1970, m = 1, d = 1;
    char expected[TIMEUTIL_TEXT_MAX];
    char got[TIMEUTIL_TEXT_MAX];

    for (int64_t day = 0; y <= 9999; day++) {
        /* A time of day that varies, so it is checked too. */
        int64_t ms = day * MS_PER_DAY + (day * 7919) % MS_PER_DAY;
        int64_t parsed = -1;
        int year, month;

        write_date(expected, y, m, d);
        timeutil_format_date(ms, got);
        if (strcmp(expected, got) != 0)
            fail_msg("day %lld: expected %s, got %s", (long long)day, expected, got);
        timeutil_year_month(ms, &year, &month);
        if (year != y || month != m)
            fail_msg("day %lld: year/month %d-%d", (long long)day, year, month);
        if (d == 1 && timeutil_month_start(y, m) != day * MS_PER_DAY)
            fail_msg("month_start(%d, %d) wrong", y, m);
        /* Sampled (the step is prime, so it meets every month and
         * weekday) to keep the test quick under the sanitizers. */
        if (day % 13 == 0 || d == 1) {
            size_t len = timeutil_format_rfc3339(ms, got);
            if (timeutil_parse_rfc3339(got, len, &parsed) != 0 || parsed != ms)
                fail_msg("%s does not parse back to %lld", got, (long long)ms);
        }

        int dim = month_days[m - 1] + (m == 2 && walk_is_leap(y));
        if (++d > dim) {
            d = 1;
            if (++m > 12) {
                m = 1;
                y++;
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utc_forms),   cmocka_unit_test(test_offsets),
        cmocka_unit_test(test_fractions),   cmocka_unit_test(test_invalid_fields),
        cmocka_unit_test(test_leap_years),  cmocka_unit_test(test_year_range_in_utc),
        cmocka_unit_test(test_shape),       cmocka_unit_test(test_format_functions),
        cmocka_unit_test(test_month_start), cmocka_unit_test(test_every_day_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
