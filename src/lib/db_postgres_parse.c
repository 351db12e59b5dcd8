/*
 * db_postgres_parse.c: the PostgreSQL backend's URL and SQL text handling
 * (see db_postgres_parse.h). Kept apart from db_postgres.c because none
 * of it talks to the server: it is string handling with rules of its own
 * (our URL options, PostgreSQL's lexical rules for literals, quoted names,
 * comments and dollar quotes).
 */
#include "db_postgres_parse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "db_internal.h"
#include "util.h"

#define DEFAULT_SCHEMA "demo"
/* Like SQLite's busy timeout: a lock wait longer than this becomes
 * DB_BUSY (SQLSTATE 55P03) rather than a hung request. */
#define DEFAULT_LOCK_TIMEOUT_MS 5000
#define MAX_LOCK_TIMEOUT_MS 600000
/* Bounds a connection attempt to an unreachable host (seconds); added to
 * the URL unless it sets connect_timeout itself. */
#define DEFAULT_CONNECT_TIMEOUT_S "10"

/* ---- database URLs ------------------------------------------------------ */

/* A plain identifier: safe to quote into SQL and to use as a literal. */
static int valid_schema(const char *s, size_t len)
{
    if (len == 0 || len > PG_SCHEMA_NAME_MAX || (s[0] >= '0' && s[0] <= '9'))
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return 0;
    }
    return 1;
}

void pg_url_free(struct pg_url *u)
{
    free(u->conninfo);
    free(u->password);
}

/* The password between "user:" and "@" of the authority, if any. */
static char *url_password(const char *url)
{
    const char *auth = strstr(url, "://");
    const char *end, *at = NULL, *colon;

    if (!auth)
        return NULL;
    auth += 3;
    end = auth + strcspn(auth, "/?");
    for (const char *p = auth; p < end; p++)
        if (*p == '@')
            at = p;
    if (!at)
        return NULL;
    colon = memchr(auth, ':', (size_t)(at - auth));
    if (!colon || colon + 1 == at)
        return NULL;
    return xstrndup(colon + 1, (size_t)(at - colon - 1));
}

void pg_scrub(char *msg, const char *password)
{
    size_t plen = password ? strlen(password) : 0;
    char *hit = msg;

    if (plen == 0)
        return;
    while ((hit = strstr(hit, password)) != NULL) {
        memset(hit, '*', plen);
        hit += plen;
    }
}

int pg_parse_url(const char *url, struct pg_url *u, char *err, size_t errlen)
{
    const char *query = strchr(url, '?');
    size_t base = query ? (size_t)(query - url) : strlen(url);
    size_t cap = strlen(url) + sizeof("?connect_timeout=") + sizeof(DEFAULT_CONNECT_TIMEOUT_S) + 1;
    char *out = xmalloc(cap);
    size_t used = base;
    int has_timeout = 0;

    memcpy(out, url, base);
    out[used] = '\0';
    util_strlcpy(u->schema, DEFAULT_SCHEMA, sizeof(u->schema));
    u->lock_timeout_ms = DEFAULT_LOCK_TIMEOUT_MS;
    for (const char *p = query ? query + 1 : ""; *p;) {
        size_t len = strcspn(p, "&");
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t)(eq - p) : len;
        const char *val = eq ? eq + 1 : p + len;
        size_t vlen = (size_t)(p + len - val);

        if (klen == 6 && strncmp(p, "schema", 6) == 0) {
            if (!valid_schema(val, vlen)) {
                db_put_err(err, errlen,
                           "PostgreSQL: schema must be 1..%d letters, digits "
                           "or '_', not starting with a digit",
                           PG_SCHEMA_NAME_MAX);
                goto fail;
            }
            memcpy(u->schema, val, vlen);
            u->schema[vlen] = '\0';
        } else if (klen == 12 && strncmp(p, "busy_timeout", 12) == 0) {
            char *stop = NULL;
            errno = 0;
            long v = vlen ? strtol(val, &stop, 10) : -1;
            if (errno || vlen == 0 || stop != val + vlen || v < 0 || v > MAX_LOCK_TIMEOUT_MS) {
                db_put_err(err, errlen,
                           "PostgreSQL: busy_timeout must be 0..%d "
                           "milliseconds",
                           MAX_LOCK_TIMEOUT_MS);
                goto fail;
            }
            u->lock_timeout_ms = v;
        } else if (len > 0) {
            if (klen == 15 && strncmp(p, "connect_timeout", 15) == 0)
                has_timeout = 1;
            out[used++] = strchr(out, '?') ? '&' : '?';
            memcpy(out + used, p, len);
            used += len;
            out[used] = '\0';
        }
        p += len;
        if (*p == '&')
            p++;
    }
    if (!has_timeout)
        snprintf(out + used, cap - used, "%cconnect_timeout=%s", strchr(out, '?') ? '&' : '?',
                 DEFAULT_CONNECT_TIMEOUT_S);
    u->conninfo = out;
    u->password = url_password(url);
    return DB_OK;
fail:
    free(out);
    return DB_ERROR;
}

/* ---- SQL text ----------------------------------------------------------- */

static int is_ident_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (unsigned char)c >= 0x80;
}

static int is_ident_char(char c)
{
    return is_ident_start(c) || (c >= '0' && c <= '9') || c == '$';
}

/* Length of a dollar-quote tag at p ("$$" or "$name$"), 0 if none. */
static size_t dollar_tag(const char *p)
{
    size_t n = 1;

    if (p[n] != '$' && !is_ident_start(p[n]))
        return 0;
    while (p[n] != '$') {
        if (!is_ident_char(p[n]) || p[n] == '$')
            return 0;
        n++;
    }
    return n + 1;
}

void pg_scan_sql(const char *sql, int *max_param, int *has_token)
{
    const char *p = sql;

    *max_param = 0;
    *has_token = 0;
    while (*p) {
        if (p[0] == '-' && p[1] == '-') {
            p += strcspn(p, "\n");
        } else if (p[0] == '/' && p[1] == '*') {
            int depth = 1;
            for (p += 2; *p && depth > 0; p++) {
                if (p[0] == '/' && p[1] == '*')
                    depth++, p++;
                else if (p[0] == '*' && p[1] == '/')
                    depth--, p++;
            }
        } else if (*p == '\'' || *p == '"') {
            char quote = *p;
            /* E'...' takes backslash escapes. */
            int escapes = quote == '\'' && p > sql && (p[-1] == 'E' || p[-1] == 'e') &&
                          (p - 1 == sql || !is_ident_char(p[-2]));
            *has_token = 1;
            for (p++; *p; p++) {
                if (escapes && *p == '\\' && p[1]) {
                    p++;
                } else if (*p == quote) {
                    if (p[1] != quote)
                        break;
                    p++;
                }
            }
            if (*p)
                p++;
        } else if (*p == '$' && p[1] >= '0' && p[1] <= '9') {
            long n = 0;
            *has_token = 1;
            for (p++; *p >= '0' && *p <= '9'; p++)
                if (n <= PG_MAX_PARAMS)
                    n = n * 10 + (*p - '0');
            if (n > *max_param)
                *max_param = n > PG_MAX_PARAMS ? PG_MAX_PARAMS + 1 : (int)n;
        } else if (*p == '$' && dollar_tag(p) > 0) {
            size_t tag = dollar_tag(p);
            const char *end;
            *has_token = 1;
            for (end = p + tag; *end; end++)
                if (*end == '$' && strncmp(end, p, tag) == 0)
                    break;
            p = *end ? end + tag : end;
        } else if (is_ident_char(*p)) {
            *has_token = 1;
            while (is_ident_char(*p))
                p++;
        } else {
            if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != '\f' && *p != ';')
                *has_token = 1;
            p++;
        }
    }
}
