/*
 * timeutil: RFC 3339 timestamps <-> integer milliseconds since the epoch.
 *
 * Parsing accepts any RFC 3339 date-time ("T"/"t" separator, "Z"/"z" or a
 * +hh:mm / -hh:mm offset, optional fraction of any length, truncated to
 * milliseconds), rejects leap seconds (:60) and impossible dates, and
 * requires the UTC result to lie in years 1970..9999. Formatting always
 * gives UTC with milliseconds: "2025-04-03T10:15:00.000Z".
 */
#ifndef LIB_TIMEUTIL_H
#define LIB_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

#define TIMEUTIL_TEXT_MAX 32 /* "9999-12-31T23:59:59.999Z" + NUL fits */

/* Parses the whole of text (len bytes); returns 0 and sets *ms, or -1. */
int timeutil_parse_rfc3339(const char *text, size_t len, int64_t *ms);

/* Formats ms (>= 0) as RFC 3339 UTC with milliseconds; returns length. */
size_t timeutil_format_rfc3339(int64_t ms, char buf[TIMEUTIL_TEXT_MAX]);

/* Formats the date part only, "2025-04-01". */
size_t timeutil_format_date(int64_t ms, char buf[TIMEUTIL_TEXT_MAX]);

/* Splits ms into the UTC calendar year and month (1..12). */
void timeutil_year_month(int64_t ms, int *year, int *month);

/* Milliseconds at 00:00:00.000 UTC on the first day of year/month. */
int64_t timeutil_month_start(int year, int month);

#endif
