/*
 * money: exact amounts as integer cents.
 *
 * JSON numbers arrive from jansson as integers or doubles. A double is
 * accepted when it is exactly the double nearest to some whole number of
 * cents (19.99, 1.10, 5e1), so no decimal amount is ever rounded into
 * another; anything finer (0.001) is rejected. Amounts are > 0 and
 * <= MONEY_MAX_CENTS.
 */
#ifndef LIB_MONEY_H
#define LIB_MONEY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define MONEY_MAX_CENTS INT64_C(100000000000) /* 1,000,000,000.00 */
#define MONEY_TEXT_MAX 32                     /* room for any int64 as text */

enum money_result {
    MONEY_OK = 0,
    MONEY_NOT_A_NUMBER = -1, /* not a JSON number (string, bool, ...) */
    MONEY_OUT_OF_RANGE = -2, /* <= 0 or above the maximum, or not finite */
    MONEY_TOO_PRECISE = -3,  /* not a whole number of cents */
};

/* Reads a positive amount from a JSON value (borrowed) into *cents. */
int money_from_json(const json_t *value, int64_t *cents);

/* Same rule for a double that came from a JSON number. */
int money_from_double(double value, int64_t *cents);

/* Writes cents as "50.00", "-0.05", "1000000000.00"; returns the length.
 * buf must hold MONEY_TEXT_MAX bytes. */
size_t money_format(int64_t cents, char buf[MONEY_TEXT_MAX]);

#endif
