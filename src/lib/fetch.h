/*
 * fetch: a small HTTP GET client (libcurl) for a service that reads
 * another service's admin routes, such as the invoice service reading
 * the writers' event logs to rebuild its model (docs/rebuild.md).
 *
 * One request at a time per call, no retries (the caller decides), a
 * bounded time per request, and a cancel flag checked while it waits, so
 * that a service shutting down does not wait for a slow peer. The bearer
 * token is sent in the Authorization header and appears in no error text.
 */
#ifndef LIB_FETCH_H
#define LIB_FETCH_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* Bounds of one request: connecting, and the whole exchange. */
#define FETCH_CONNECT_TIMEOUT_S 10
#define FETCH_TIMEOUT_S 60
/* An answer larger than this is refused (a page of 1000 events of the
 * writers' logs is far below it). */
#define FETCH_BODY_MAX (64L * 1024 * 1024)
#define FETCH_URL_MAX 2048
/* Room for fetch_get's error text. */
#define FETCH_ERROR_MAX UTIL_ERR_MAX

/* libcurl is not linked but loaded at the first fetch_get (or here),
 * from any thread, once: a process that never fetches does not carry it.
 * fetch_global_init loads it now, for a caller that wants to fail early:
 * returns 0, or -1 with the reason (the library missing) in err. */
int fetch_global_init(char *err, size_t errlen);
/* Once, after every use (the process is ending); nothing if never loaded. */
void fetch_global_cleanup(void);

/* What one GET gave: the status and the body (malloc()ed, NUL-terminated,
 * the caller's to free), or a transport error in err. */
struct fetch_answer {
    long status; /* 0 when no HTTP answer came */
    char *body;
    size_t len;
};

/* GETs url, with "Authorization: Bearer <bearer>" when bearer is not
 * NULL. Returns 0 when an HTTP answer came (whatever its status), -1
 * with err filled when none did (cannot connect, timeout, cancelled via
 * *cancel becoming non-zero, too large). out->body is NULL on -1. */
int fetch_get(const char *url, const char *bearer, const atomic_int *cancel,
              struct fetch_answer *out, char *err, size_t errlen);
void fetch_answer_free(struct fetch_answer *a);

/* Writes base (an http:// or https:// URL, trailing '/' ignored) + path
 * + "?after=A&limit=L" into out. Returns 0, or -1 when base is not an
 * http(s) URL or the result does not fit. */
int fetch_page_url(char *out, size_t outlen, const char *base, const char *path, int64_t after,
                   int limit);

#endif
