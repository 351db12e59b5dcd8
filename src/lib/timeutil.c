/*
 * timeutil: RFC 3339 <-> milliseconds since the epoch, in plain integer
 * arithmetic on the proleptic Gregorian calendar.
 *
 * timegm() and strptime() are avoided on purpose: they depend on the
 * locale and TZ, accept forms RFC 3339 does not (leap seconds, one-digit
 * fields), and normalise Feb 30 into March instead of rejecting it.
 */
#include "timeutil.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>

#include "util.h"

#define MS_PER_SECOND INT64_C(1000)
#define MS_PER_MINUTE (60 * MS_PER_SECOND)
#define MS_PER_HOUR (60 * MS_PER_MINUTE)
#define MS_PER_DAY (24 * MS_PER_HOUR)
#define MIN_YEAR 1970
#define MAX_YEAR 9999
#define MAX_FOUR_DIGIT_YEAR 9999 /* years printed without printf */
#define DAYS_PER_400_YEARS INT64_C(146097)
/* days_from_civil(1970, 1, 1) before the epoch shift below is applied. */
#define EPOCH_SHIFT_DAYS INT64_C(719468)
/* "YYYY-MM-DDTHH:MM:SS" */
#define DATE_TIME_LEN 19

/* C's / and % truncate toward zero; calendar math before 1970 needs floor. */
static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0)))
        q--;
    return q;
}

static bool is_leap(int64_t year)
{
    return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
}

static int days_in_month(int64_t year, int month)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month == 2 && is_leap(year))
        return 29;
    return days[month - 1];
}

/*
 * Days since 1970-01-01 of a valid date. The year is counted from March so
 * that the leap day falls at the end of it: then the days before a month
 * do not depend on the year, and (153 * m + 2) / 5 gives them for months
 * numbered from March = 0 (31, 30, 31, 30, 31 repeating).
 */
static int64_t days_from_civil(int64_t year, int month, int day)
{
    int64_t y = month <= 2 ? year - 1 : year;
    int64_t m = month <= 2 ? month + 9 : month - 3;
    int64_t leap_days = floor_div(y, 4) - floor_div(y, 100) + floor_div(y, 400);
    int64_t days_before_month = (153 * m + 2) / 5;
    return 365 * y + leap_days + days_before_month + (day - 1) - EPOCH_SHIFT_DAYS;
}

/* Inverse of days_from_civil. An estimate from the mean year length is at
 * most one year off, and the loops correct it. */
static void civil_from_days(int64_t days, int64_t *year, int *month, int *day)
{
    int64_t y = MIN_YEAR + floor_div(days * 400, DAYS_PER_400_YEARS);
    while (days_from_civil(y, 1, 1) > days)
        y--;
    while (days_from_civil(y + 1, 1, 1) <= days)
        y++;

    int64_t rest = days - days_from_civil(y, 1, 1);
    int m = 1;
    while (m < 12 && rest >= days_in_month(y, m)) {
        rest -= days_in_month(y, m);
        m++;
    }
    *year = y;
    *month = m;
    *day = (int)rest + 1;
}

/* Exactly n ASCII digits (isdigit() would depend on the locale). */
static bool read_digits(const char *p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return true;
}

int timeutil_parse_rfc3339(const char *text, size_t len, int64_t *ms)
{
    int year, month, day, hour, minute, second;
    int64_t frac_ms = 0;
    int64_t offset_ms = 0;
    size_t i;

    if (!text || len < DATE_TIME_LEN)
        return -1;
    if (!read_digits(text, 4, &year) || text[4] != '-' || !read_digits(text + 5, 2, &month) ||
        text[7] != '-' || !read_digits(text + 8, 2, &day) || (text[10] != 'T' && text[10] != 't') ||
        !read_digits(text + 11, 2, &hour) || text[13] != ':' ||
        !read_digits(text + 14, 2, &minute) || text[16] != ':' ||
        !read_digits(text + 17, 2, &second))
        return -1;
    /* second <= 59: a leap second has no place in a count of ms. */
    if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) || hour > 23 ||
        minute > 59 || second > 59)
        return -1;

    i = DATE_TIME_LEN;
    if (i < len && text[i] == '.') {
        size_t first = ++i;
        int scale = 100;
        /* Any number of digits; only the first three count (truncation,
         * so "59.9999" never rolls over into the next second). */
        while (i < len && text[i] >= '0' && text[i] <= '9') {
            frac_ms += (text[i] - '0') * scale;
            scale /= 10;
            i++;
        }
        if (i == first)
            return -1;
    }

    if (i >= len)
        return -1;
    if (text[i] == 'Z' || text[i] == 'z') {
        i++;
    } else if (text[i] == '+' || text[i] == '-') {
        int oh, om;
        if (len - i < 6 || !read_digits(text + i + 1, 2, &oh) || text[i + 3] != ':' ||
            !read_digits(text + i + 4, 2, &om) || oh > 23 || om > 59)
            return -1;
        /* Local time = UTC + offset, so UTC = local - offset. */
        offset_ms = oh * MS_PER_HOUR + om * MS_PER_MINUTE;
        if (text[i] == '-')
            offset_ms = -offset_ms;
        i += 6;
    } else {
        return -1;
    }
    if (i != len)
        return -1;

    int64_t result = days_from_civil(year, month, day) * MS_PER_DAY + hour * MS_PER_HOUR +
                     minute * MS_PER_MINUTE + second * MS_PER_SECOND + frac_ms - offset_ms;
    /* The year range is about the instant, so it is checked in UTC:
     * 1970-01-01T00:30:00+01:00 is still 1969. */
    if (result < timeutil_month_start(MIN_YEAR, 1) ||
        result >= timeutil_month_start(MAX_YEAR + 1, 1))
        return -1;
    *ms = result;
    return 0;
}

static void split_ms(int64_t ms, int64_t *year, int *month, int *day, int64_t *ms_of_day)
{
    int64_t days = floor_div(ms, MS_PER_DAY);
    *ms_of_day = ms - days * MS_PER_DAY;
    civil_from_days(days, year, month, day);
}

size_t timeutil_format_rfc3339(int64_t ms, char buf[TIMEUTIL_TEXT_MAX])
{
    int64_t year, rest;
    int month, day;

    split_ms(ms, &year, &month, &day, &rest);
    if (year >= 0 && year <= MAX_FOUR_DIGIT_YEAR) { /* every real time: no printf */
        char *p = util_put_digits(buf, (unsigned)year, 4);
        *p++ = '-';
        p = util_put_digits(p, (unsigned)month, 2);
        *p++ = '-';
        p = util_put_digits(p, (unsigned)day, 2);
        *p++ = 'T';
        p = util_put_digits(p, (unsigned)(rest / MS_PER_HOUR), 2);
        *p++ = ':';
        p = util_put_digits(p, (unsigned)(rest / MS_PER_MINUTE % 60), 2);
        *p++ = ':';
        p = util_put_digits(p, (unsigned)(rest / MS_PER_SECOND % 60), 2);
        *p++ = '.';
        p = util_put_digits(p, (unsigned)(rest % MS_PER_SECOND), 3);
        *p++ = 'Z';
        *p = '\0';
        return (size_t)(p - buf);
    }
    int n = snprintf(buf, TIMEUTIL_TEXT_MAX, "%04" PRId64 "-%02d-%02dT%02d:%02d:%02d.%03dZ", year,
                     month, day, (int)(rest / MS_PER_HOUR), (int)(rest / MS_PER_MINUTE % 60),
                     (int)(rest / MS_PER_SECOND % 60), (int)(rest % MS_PER_SECOND));
    return n < 0 ? 0 : (size_t)n;
}

size_t timeutil_format_date(int64_t ms, char buf[TIMEUTIL_TEXT_MAX])
{
    int64_t year, rest;
    int month, day;

    split_ms(ms, &year, &month, &day, &rest);
    if (year >= 0 && year <= MAX_FOUR_DIGIT_YEAR) {
        char *p = util_put_digits(buf, (unsigned)year, 4);
        *p++ = '-';
        p = util_put_digits(p, (unsigned)month, 2);
        *p++ = '-';
        p = util_put_digits(p, (unsigned)day, 2);
        *p = '\0';
        return (size_t)(p - buf);
    }
    int n = snprintf(buf, TIMEUTIL_TEXT_MAX, "%04" PRId64 "-%02d-%02d", year, month, day);
    return n < 0 ? 0 : (size_t)n;
}

void timeutil_year_month(int64_t ms, int *year, int *month)
{
    int64_t y, rest;
    int day;

    split_ms(ms, &y, month, &day, &rest);
    *year = (int)y;
}

/* A month outside 1..12 carries into the year, so callers can ask for
 * month + 1 to get the end of a month without special-casing December. */
int64_t timeutil_month_start(int year, int month)
{
    int64_t carry = floor_div((int64_t)month - 1, 12);
    int64_t y = year + carry;
    int m = (int)((int64_t)month - 1 - carry * 12) + 1;
    return days_from_civil(y, m, 1) * MS_PER_DAY;
}
