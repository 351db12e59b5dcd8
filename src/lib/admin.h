/*
 * admin: who may use a service's admin routes (the routes that change
 * state without being part of the business: dead letters, rebuilds, the
 * writers' event logs). It knows nothing of what those routes do; a
 * handler calls admin_authorize() first and returns when it answers 0.
 *
 *   - no token configured: 404 not_found, as for an unknown route, so a
 *     service without a token does not reveal that admin routes exist;
 *   - a missing, malformed or wrong "Authorization: Bearer <token>": 401
 *     unauthorized with "WWW-Authenticate: Bearer" (RFC 6750);
 *   - the presented token is compared in constant time (its length and
 *     contents do not change how long a wrong guess takes, beyond the
 *     length of what the client sent itself) and is never logged.
 *
 * Tokens are 1..ADMIN_TOKEN_MAX visible ASCII characters (no spaces); the
 * configured one comes from --admin-token / ADMIN_TOKEN or from the first
 * line of --admin-token-file / ADMIN_TOKEN_FILE (config.c reads it).
 */
#ifndef LIB_ADMIN_H
#define LIB_ADMIN_H

#include <stddef.h>

#include "http.h"

#define ADMIN_TOKEN_MAX 1024

/* Whether text is an acceptable token (length and characters). */
int admin_token_valid(const char *text, size_t len);

/* Equal in constant time for a given length of presented: 1 or 0. */
int admin_token_equal(const char *expected, const char *presented, size_t presented_len);

/* Returns 1 when the request may go on; otherwise answers it (404 when
 * token is NULL, 401 otherwise) and returns 0. token is the service's
 * configured admin token (borrowed), or NULL when it has none. */
int admin_authorize(http_request *req, const char *token);

#endif
