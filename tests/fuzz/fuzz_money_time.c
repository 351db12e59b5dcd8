/*
 * fuzz_money_time: the money and time parsers and formatters (money.h,
 * timeutil.h), each input used twice:
 *
 *  - its first 8 bytes as numbers: a double for money_from_double; a
 *    count of cents and a count of milliseconds whose text form must read
 *    back to the same value (format then parse);
 *  - the whole input as text: as a JSON number for money_from_json, and
 *    as an RFC 3339 time for timeutil_parse_rfc3339.
 *
 * Parsed text is compared with references written here independently: the
 * exact decimal value of a number literal (which must be accepted when it
 * is a whole number of cents in range, and rejected when it plainly is
 * not), and the C library's timegm() for the calendar.
 */
#include <time.h>

#include "fuzz.h"
#include "money.h"
#include "timeutil.h"

#define CENTS_PER_UNIT 100
/* Up to this many significant digits a decimal that is not a whole number
 * of cents lies more than one ulp away from every one that is, so the
 * double it becomes cannot pass for one. */
#define EXACT_DIGITS 15
/* Digits of MONEY_MAX_CENTS (100000000000). */
#define MAX_CENTS_DIGITS 12

static int64_t min_ms(void)
{
    return timeutil_month_start(1970, 1);
}

static int64_t end_ms(void)
{
    return timeutil_month_start(10000, 1);
}

/* ---- money ---- */

/* "-12.34" back to -1234, by hand; the shape must be exactly that. */
static int64_t read_formatted_cents(const char *s, size_t len)
{
    size_t i = 0;
    int negative = 0;
    uint64_t units = 0;

    if (s[0] == '-') {
        negative = 1;
        i++;
    }
    FUZZ_CHECK(len >= i + 4 && s[len - 3] == '.');
    FUZZ_CHECK(s[i] != '0' || i + 1 == len - 3); /* no leading zero */
    for (; i < len - 3; i++) {
        FUZZ_CHECK(s[i] >= '0' && s[i] <= '9');
        units = units * 10 + (uint64_t)(s[i] - '0');
    }
    FUZZ_CHECK(s[len - 2] >= '0' && s[len - 2] <= '9' && s[len - 1] >= '0' && s[len - 1] <= '9');
    uint64_t magnitude =
        units * CENTS_PER_UNIT + (uint64_t)(s[len - 2] - '0') * 10 + (uint64_t)(s[len - 1] - '0');
    FUZZ_CHECK(!negative || magnitude > 0);
    return negative ? (int64_t)(0 - magnitude) : (int64_t)magnitude;
}

/* Any cents format and read back; those in range also through JSON and
 * money_from_json, as a client reads an answer and sends it again. */
static void check_cents_roundtrip(int64_t cents)
{
    char text[MONEY_TEXT_MAX];
    size_t n = money_format(cents, text);

    FUZZ_CHECK(n > 0 && n < MONEY_TEXT_MAX && strlen(text) == n);
    FUZZ_CHECK(read_formatted_cents(text, n) == cents);
    if (cents < 1 || cents > MONEY_MAX_CENTS)
        return;

    json_error_t jerr;
    int64_t back = 0;
    json_t *v = json_loadb(text, n, JSON_DECODE_ANY, &jerr);
    FUZZ_CHECK(v != NULL);
    FUZZ_CHECK(money_from_json(v, &back) == MONEY_OK);
    FUZZ_CHECK(back == cents);
    json_decref(v);
}

static void check_double(double value)
{
    int64_t cents = -1;

    if (money_from_double(value, &cents) == MONEY_OK) {
        FUZZ_CHECK(cents >= 1 && cents <= MONEY_MAX_CENTS);
        FUZZ_CHECK((double)cents / CENTS_PER_UNIT == value);
        check_cents_roundtrip(cents);
    }
}

/* Every whole number of cents in range, as the double a JSON parser
 * makes of its decimal text, is accepted as exactly that many cents. */
static void check_every_cent(uint64_t bits)
{
    int64_t n = (int64_t)(bits % (uint64_t)(MONEY_MAX_CENTS + 2 * CENTS_PER_UNIT)) - CENTS_PER_UNIT;
    int64_t cents = -1;
    int rc = money_from_double((double)n / CENTS_PER_UNIT, &cents);

    if (n >= 1 && n <= MONEY_MAX_CENTS)
        FUZZ_CHECK(rc == MONEY_OK && cents == n);
    else
        FUZZ_CHECK(rc != MONEY_OK);
}

enum literal { NOT_A_LITERAL, WHOLE_CENTS, NOT_WHOLE_CENTS, UNKNOWN };

/*
 * The exact value of a JSON number literal (the whole text, nothing
 * around it) in cents: WHOLE_CENTS with *cents when it is a whole number
 * of them with at most MAX_CENTS_DIGITS digits (*too_big otherwise),
 * NOT_WHOLE_CENTS when it has a nonzero digit beyond the cents and at most
 * EXACT_DIGITS significant digits, UNKNOWN when it is too long to tell.
 */
static enum literal literal_cents(const char *s, size_t len, int *negative, int64_t *cents,
                                  int *is_zero)
{
    char digits[64];
    size_t nd = 0, i = 0, frac_digits = 0;
    long exp = 0;
    int exp_negative = 0, seen_exp_digit = 0;

    *negative = 0;
    *is_zero = 0;
    if (i < len && s[i] == '-') {
        *negative = 1;
        i++;
    }
    if (i >= len || s[i] < '0' || s[i] > '9')
        return NOT_A_LITERAL;
    if (s[i] == '0' && i + 1 < len && s[i + 1] >= '0' && s[i + 1] <= '9')
        return NOT_A_LITERAL;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
        if (nd < sizeof(digits))
            digits[nd++] = s[i];
        else
            return UNKNOWN;
    if (i < len && s[i] == '.') {
        size_t first = ++i;
        for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, frac_digits++)
            if (nd < sizeof(digits))
                digits[nd++] = s[i];
            else
                return UNKNOWN;
        if (i == first)
            return NOT_A_LITERAL;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            exp_negative = s[i++] == '-';
        for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
            seen_exp_digit = 1;
            if (exp > 100000)
                return UNKNOWN;
            exp = exp * 10 + (s[i] - '0');
        }
        if (!seen_exp_digit)
            return NOT_A_LITERAL;
    }
    if (i != len)
        return NOT_A_LITERAL;

    /* value = digits x 10^e; drop leading and trailing zeros. */
    long e = (exp_negative ? -exp : exp) - (long)frac_digits;
    size_t start = 0;
    while (start < nd && digits[start] == '0')
        start++;
    if (start == nd) {
        *is_zero = 1;
        return WHOLE_CENTS;
    }
    while (digits[nd - 1] == '0') {
        nd--;
        e++;
    }
    size_t sig = nd - start;
    long k = e + 2; /* cents = significant digits x 10^k */
    if (k < 0)
        return sig <= EXACT_DIGITS ? NOT_WHOLE_CENTS : UNKNOWN;
    if ((long)sig + k > MAX_CENTS_DIGITS) {
        *cents = MONEY_MAX_CENTS + 1; /* too big, whatever it is */
        return sig <= EXACT_DIGITS ? WHOLE_CENTS : UNKNOWN;
    }
    int64_t v = 0;
    for (size_t j = start; j < nd; j++)
        v = v * 10 + (digits[j] - '0');
    for (long j = 0; j < k; j++)
        v *= 10;
    *cents = v;
    return WHOLE_CENTS;
}

static void check_money_text(const char *s, size_t len)
{
    json_error_t jerr;
    json_t *v = json_loadb(s, len, JSON_DECODE_ANY, &jerr);
    int64_t cents = -1, exact = 0;
    int negative, is_zero;

    if (!v)
        return;
    int rc = money_from_json(v, &cents);
    if (!json_is_number(v)) {
        FUZZ_CHECK(rc == MONEY_NOT_A_NUMBER);
        json_decref(v);
        return;
    }
    if (rc == MONEY_OK) {
        FUZZ_CHECK(cents >= 1 && cents <= MONEY_MAX_CENTS);
        if (json_is_integer(v))
            FUZZ_CHECK(json_integer_value(v) * CENTS_PER_UNIT == cents);
        else
            FUZZ_CHECK((double)cents / CENTS_PER_UNIT == json_real_value(v));
        check_cents_roundtrip(cents);
    } else {
        FUZZ_CHECK(rc == MONEY_OUT_OF_RANGE || rc == MONEY_TOO_PRECISE);
    }

    switch (literal_cents(s, len, &negative, &exact, &is_zero)) {
    case WHOLE_CENTS:
        if (negative || is_zero || exact > MONEY_MAX_CENTS) {
            FUZZ_CHECK(rc != MONEY_OK);
        } else {
            if (rc != MONEY_OK || cents != exact)
                fprintf(stderr, "amount %.*s: expected %lld cents, got rc %d, %lld cents\n",
                        (int)len, s, (long long)exact, rc, (long long)cents);
            FUZZ_CHECK(rc == MONEY_OK && cents == exact);
        }
        break;
    case NOT_WHOLE_CENTS:
        FUZZ_CHECK(rc != MONEY_OK);
        break;
    default:
        break;
    }
    json_decref(v);
}

/* ---- time ---- */

static int read_digits(const char *p, int n, int *out)
{
    *out = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        *out = *out * 10 + (p[i] - '0');
    }
    return 1;
}

/* docs/api.md's RFC 3339 rule, with the C library doing the calendar. */
static int reference_parse_time(const char *s, size_t len, int64_t *ms)
{
    int year, month, day, hour, minute, second, frac = 0, off_h = 0, off_m = 0, sign = 0;
    size_t i = 19;

    if (len < 20 || !read_digits(s, 4, &year) || s[4] != '-' || !read_digits(s + 5, 2, &month) ||
        s[7] != '-' || !read_digits(s + 8, 2, &day) || (s[10] != 'T' && s[10] != 't') ||
        !read_digits(s + 11, 2, &hour) || s[13] != ':' || !read_digits(s + 14, 2, &minute) ||
        s[16] != ':' || !read_digits(s + 17, 2, &second))
        return -1;
    if (s[i] == '.') {
        int n = 0;
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, n++)
            if (n < 3)
                frac = frac * 10 + (s[i] - '0');
        if (n == 0)
            return -1;
        for (; n < 3; n++)
            frac *= 10;
    }
    if (i + 1 == len && (s[i] == 'Z' || s[i] == 'z')) {
        sign = 0;
    } else if (i + 6 == len && (s[i] == '+' || s[i] == '-')) {
        if (!read_digits(s + i + 1, 2, &off_h) || s[i + 3] != ':' ||
            !read_digits(s + i + 4, 2, &off_m) || off_h > 23 || off_m > 59)
            return -1;
        sign = s[i] == '-' ? -1 : 1;
    } else {
        return -1;
    }
    if (month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59)
        return -1;

    struct tm tm = {0}, back;
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = minute;
    tm.tm_sec = second;
    time_t t = timegm(&tm);
    /* timegm moves Feb 30 into March; such a day does not exist. */
    if (!gmtime_r(&t, &back) || back.tm_year != year - 1900 || back.tm_mon != month - 1 ||
        back.tm_mday != day)
        return -1;

    int64_t result = (int64_t)t * 1000 + frac - sign * (int64_t)(off_h * 3600 + off_m * 60) * 1000;
    if (result < 0 || result >= INT64_C(253402300800000)) /* 10000-01-01T00:00:00Z */
        return -1;
    *ms = result;
    return 0;
}

/* Any ms in range formats as "YYYY-MM-DDTHH:MM:SS.mmmZ", parses back to
 * itself, and lies in the month timeutil_year_month names. */
static void check_ms(int64_t ms)
{
    char text[TIMEUTIL_TEXT_MAX], date[TIMEUTIL_TEXT_MAX];
    int64_t back = -1;
    int year, month;

    size_t n = timeutil_format_rfc3339(ms, text);
    FUZZ_CHECK(n == 24 && strlen(text) == n);
    FUZZ_CHECK(timeutil_parse_rfc3339(text, n, &back) == 0);
    FUZZ_CHECK(back == ms);
    FUZZ_CHECK(reference_parse_time(text, n, &back) == 0 && back == ms);

    size_t d = timeutil_format_date(ms, date);
    FUZZ_CHECK(d == 10 && memcmp(date, text, d) == 0);

    timeutil_year_month(ms, &year, &month);
    FUZZ_CHECK(year >= 1970 && year <= 9999 && month >= 1 && month <= 12);
    FUZZ_CHECK(timeutil_month_start(year, month) <= ms);
    FUZZ_CHECK(ms < timeutil_month_start(year, month + 1));
}

static void check_time_text(const char *s, size_t len)
{
    int64_t ms = -1, ref = -1;
    int rc = timeutil_parse_rfc3339(s, len, &ms);
    int ref_rc = reference_parse_time(s, len, &ref);

    if (rc != ref_rc)
        fprintf(stderr, "time %.*s: parse %d, reference %d\n", (int)len, s, rc, ref_rc);
    FUZZ_CHECK(rc == ref_rc);
    if (rc != 0)
        return;
    FUZZ_CHECK(ms == ref);
    FUZZ_CHECK(ms >= min_ms() && ms < end_ms());
    check_ms(ms);

    /* Already in the canonical form: formatting gives it back verbatim. */
    if (len == 24 && s[10] == 'T' && s[19] == '.' && s[23] == 'Z') {
        char text[TIMEUTIL_TEXT_MAX];
        FUZZ_CHECK(timeutil_format_rfc3339(ms, text) == 24 && memcmp(text, s, 24) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= sizeof(uint64_t)) {
        uint64_t bits;
        double d;
        memcpy(&bits, data, sizeof(bits));
        memcpy(&d, data, sizeof(d));

        check_double(d);
        check_every_cent(bits);
        check_cents_roundtrip((int64_t)bits);
        check_cents_roundtrip((int64_t)(bits % (uint64_t)MONEY_MAX_CENTS) + 1);
        check_ms(min_ms() + (int64_t)(bits % (uint64_t)(end_ms() - min_ms())));
    }
    check_money_text((const char *)data, size);
    check_time_text((const char *)data, size);
    return 0;
}
