/*
 * util: allocation wrappers and small helpers used everywhere.
 *
 * The x-allocators abort the process on out-of-memory (as Redis' zmalloc
 * does), so callers never check for NULL. Memory they return is owned by
 * the caller and released with free().
 */
#ifndef LIB_UTIL_H
#define LIB_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* The size of every buffer that holds one error message (for a log line,
 * /readyz or an answer); a longer message is cut, never overflowed. */
#define UTIL_ERR_MAX 512

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Milliseconds since the Unix epoch, wall clock (UTC). */
int64_t util_now_ms(void);
/* Monotonic clock in nanoseconds, for durations and deadlines. */
int64_t util_monotonic_ns(void);

/* A condition variable whose timed waits run on the monotonic clock, so
 * a change of the wall clock neither shortens nor stretches them. */
void util_cond_init_monotonic(pthread_cond_t *cv);
/* pthread_cond_timedwait until deadline_ns (util_monotonic_ns() time) on
 * a cv made by util_cond_init_monotonic(); returns 0 or ETIMEDOUT. */
int util_cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t deadline_ns);

/* Fills out with 2*n hex digits of cryptographically random bytes and a
 * NUL (out holds 2*n+1 bytes). Cheap: bytes come from a per-thread pool
 * refilled by getrandom(2) a few hundred at a time. */
void util_random_hex(char *out, size_t n);

/* Copies at most size-1 bytes and always terminates; returns strlen(src). */
size_t util_strlcpy(char *dst, const char *src, size_t size);

/* Decimal text without printf, for the numbers of every answer (printf's
 * format parsing was a tenth of a list request's CPU). */
#define UTIL_INT_TEXT_MAX 24 /* "-9223372036854775808" + NUL fits */
/* Writes v and a NUL into buf (UTIL_INT_TEXT_MAX bytes); returns the
 * length. */
size_t util_format_u64(uint64_t v, char *buf);
size_t util_format_i64(int64_t v, char *buf);
/* Writes v as exactly width digits, zero-padded, no NUL (v must fit);
 * returns the position after them. */
char *util_put_digits(char *p, unsigned v, int width);

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
