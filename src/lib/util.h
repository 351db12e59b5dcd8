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

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
