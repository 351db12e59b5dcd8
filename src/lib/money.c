/*
 * money: exact amounts as integer cents (see money.h for the rule).
 *
 * Integers are whole currency units and are range-checked before they are
 * scaled, so no multiplication can overflow. Doubles are checked for range
 * first, which bounds value * 100 well inside what llround() handles.
 */
#include "money.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>

#include "util.h"

#define CENTS_PER_UNIT 100

int money_from_json(const json_t *value, int64_t *cents)
{
    if (json_is_integer(value)) {
        json_int_t units = json_integer_value(value);
        if (units <= 0 || units > MONEY_MAX_CENTS / CENTS_PER_UNIT)
            return MONEY_OUT_OF_RANGE;
        *cents = (int64_t)units * CENTS_PER_UNIT;
        return MONEY_OK;
    }
    /* jansson gives every number with a fraction or an exponent (1e2,
     * 5e1, 50.0) as a real; those follow the decimal rule. */
    if (json_is_real(value))
        return money_from_double(json_real_value(value), cents);
    return MONEY_NOT_A_NUMBER;
}

int money_from_double(double value, int64_t *cents)
{
    const double max_units = (double)(MONEY_MAX_CENTS / CENTS_PER_UNIT);

    /* Written so that NaN fails the test too (every comparison is false). */
    if (!isfinite(value) || !(value > 0.0) || value > max_units)
        return MONEY_OUT_OF_RANGE;

    long long n = llround(value * CENTS_PER_UNIT);

    /* The division is correctly rounded, so this holds exactly when value
     * is the double nearest to n cents: 19.99 passes although its binary
     * value is 19.989999..., while 0.001 or 1.005 cannot. */
    if ((double)n / (double)CENTS_PER_UNIT != value)
        return MONEY_TOO_PRECISE;
    /* A tiny positive value rounds to 0 cents and fails above; this only
     * guards the invariant should the range test ever change. */
    if (n <= 0 || n > MONEY_MAX_CENTS)
        return MONEY_OUT_OF_RANGE;
    *cents = (int64_t)n;
    return MONEY_OK;
}

size_t money_format(int64_t cents, char buf[MONEY_TEXT_MAX])
{
    /* The magnitude goes through uint64_t so INT64_MIN needs no special
     * case (negating it as int64_t would overflow). */
    uint64_t magnitude = cents < 0 ? (uint64_t)0 - (uint64_t)cents : (uint64_t)cents;
    size_t n = 0;

    if (cents < 0)
        buf[n++] = '-';
    n += util_format_u64(magnitude / CENTS_PER_UNIT, buf + n);
    buf[n++] = '.';
    util_put_digits(buf + n, (unsigned)(magnitude % CENTS_PER_UNIT), 2);
    n += 2;
    buf[n] = '\0';
    return n;
}
