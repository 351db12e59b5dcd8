#include "idempotency.h"

#include <nettle/sha2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "service.h"
#include "util.h"

#define HEADER_NAME "Idempotency-Key"
#define METRIC_SWEPT "idempotency_keys_swept_total"

/* The key is (service, idem_key); created_at (ms since the epoch) decides
 * expiry against the TTL configured now, so a changed TTL applies to keys
 * stored before. headers holds "Name: value\n" lines. */
#define IDEMPOTENCY_SCHEMA(INT64)                                                                  \
    "CREATE TABLE idempotency_keys (\n"                                                            \
    "    service TEXT NOT NULL,\n"                                                                 \
    "    idem_key TEXT NOT NULL,\n"                                                                \
    "    fingerprint TEXT NOT NULL,\n"                                                             \
    "    status INTEGER NOT NULL,\n"                                                               \
    "    headers TEXT NOT NULL,\n"                                                                 \
    "    body TEXT NOT NULL,\n"                                                                    \
    "    created_at " INT64                                                                        \
    " NOT NULL,\n"                                                                                 \
    "    PRIMARY KEY (service, idem_key)\n"                                                        \
    ");\n"                                                                                         \
    "CREATE INDEX idempotency_keys_age ON idempotency_keys (service, created_at);\n"

const char idempotency_schema_sqlite[] = IDEMPOTENCY_SCHEMA("INTEGER");
const char idempotency_schema_postgres[] = IDEMPOTENCY_SCHEMA("BIGINT");

/* Replicas sharing a PostgreSQL database: a transaction-level advisory
 * lock per key (two-key form, 64 bits of a hash of service and key), held
 * from the claim until the create commits or rolls back. A replica that
 * cannot take it at once answers 409 instead of waiting for the other
 * transaction. In one process the group commit is the only writer and
 * takes requests one at a time, so a duplicate there simply finds the
 * first one's row (the lock is re-entrant within a transaction). */
static const char sql_lock[] = "SELECT pg_try_advisory_xact_lock($1, $2)";
static const char sql_find[] =
    "SELECT fingerprint, status, headers, body, created_at FROM idempotency_keys"
    " WHERE service = $1 AND idem_key = $2";
static const char sql_forget[] =
    "DELETE FROM idempotency_keys WHERE service = $1 AND idem_key = $2";
static const char sql_store[] =
    "INSERT INTO idempotency_keys (service, idem_key, fingerprint, status, headers, body,"
    " created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
/* Bounded, oldest first; PostgreSQL skips rows a create is replacing. */
static const char sql_sweep_sqlite[] =
    "DELETE FROM idempotency_keys WHERE rowid IN (SELECT rowid FROM idempotency_keys"
    " WHERE service = $1 AND created_at <= $2 ORDER BY created_at LIMIT $3) RETURNING 1";
static const char sql_sweep_postgres[] =
    "DELETE FROM idempotency_keys WHERE (service, idem_key) IN (SELECT service, idem_key"
    " FROM idempotency_keys WHERE service = $1 AND created_at <= $2 ORDER BY created_at"
    " LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING 1";

/* ------------------------------------------------------------ request */

static void to_hex(const uint8_t *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 0xf];
    }
    out[2 * n] = '\0';
}

/* Method and path cannot hold a newline, so the separators keep the three
 * parts apart. */
static void fingerprint(const http_request *req, char *out)
{
    struct sha256_ctx ctx;
    uint8_t digest[SHA256_DIGEST_SIZE];
    const char *method = http_method(req), *path = http_path(req);
    size_t body_len;
    const char *body = http_raw_body(req, &body_len);

    sha256_init(&ctx);
    sha256_update(&ctx, strlen(method), (const uint8_t *)method);
    sha256_update(&ctx, 1, (const uint8_t *)"\n");
    sha256_update(&ctx, strlen(path), (const uint8_t *)path);
    sha256_update(&ctx, 1, (const uint8_t *)"\n");
    sha256_update(&ctx, body_len, (const uint8_t *)body);
    sha256_digest(&ctx, sizeof(digest), digest);
    to_hex(digest, sizeof(digest), out);
}

int idempotency_read(const http_request *req, struct idempotency_request *out,
                     struct api_error *err)
{
    const char *value;
    size_t len;
    int count = http_header(req, HEADER_NAME, &value, &len);

    out->present = 0;
    if (count == 0)
        return 0;
    if (count > 1)
        return api_error_set(err, 400, "invalid_header", NULL, HEADER_NAME " must be sent once");
    if (len == 0 || len > IDEMPOTENCY_KEY_MAX)
        return api_error_set(err, 400, "invalid_header", NULL,
                             HEADER_NAME " must be 1 to %d characters", IDEMPOTENCY_KEY_MAX);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)value[i] < 0x20 || (unsigned char)value[i] > 0x7e)
            return api_error_set(err, 400, "invalid_header", NULL,
                                 HEADER_NAME " must be printable ASCII");
    memcpy(out->key, value, len);
    out->key[len] = '\0';
    fingerprint(req, out->fingerprint);
    out->present = 1;
    return 0;
}

/* ------------------------------------------------------------- answers */

void idempotency_answer_add_header(struct idempotency_answer *a, const char *name,
                                   const char *value)
{
    if (a->header_count == IDEMPOTENCY_HEADERS_MAX || strlen(name) >= IDEMPOTENCY_HEADER_NAME_MAX ||
        strlen(value) >= IDEMPOTENCY_HEADER_VALUE_MAX || strpbrk(name, ":\n") ||
        strchr(value, '\n'))
        return;
    struct idempotency_header *h = &a->headers[a->header_count++];
    util_strlcpy(h->name, name, sizeof(h->name));
    util_strlcpy(h->value, value, sizeof(h->value));
}

void idempotency_answer_free(struct idempotency_answer *a)
{
    free(a->body);
    a->body = NULL;
    a->body_len = 0;
    a->header_count = 0;
}

/* "Name: value\n" per header; the caller frees. */
static char *headers_text(const struct idempotency_answer *a)
{
    size_t cap = 1, used = 0;
    for (int i = 0; i < a->header_count; i++)
        cap += strlen(a->headers[i].name) + strlen(a->headers[i].value) + 3;
    char *text = xmalloc(cap);
    text[0] = '\0';
    for (int i = 0; i < a->header_count; i++)
        used += (size_t)snprintf(text + used, cap - used, "%s: %s\n", a->headers[i].name,
                                 a->headers[i].value);
    return text;
}

static void parse_headers(const char *text, struct idempotency_answer *a)
{
    char name[IDEMPOTENCY_HEADER_NAME_MAX], value[IDEMPOTENCY_HEADER_VALUE_MAX];

    while (text && *text) {
        const char *end = strchr(text, '\n');
        const char *colon = strstr(text, ": ");
        size_t line = end ? (size_t)(end - text) : strlen(text);
        if (colon && colon < text + line) {
            size_t nlen = (size_t)(colon - text), vlen = line - nlen - 2;
            if (nlen < sizeof(name) && vlen < sizeof(value)) {
                memcpy(name, text, nlen);
                name[nlen] = '\0';
                memcpy(value, colon + 2, vlen);
                value[vlen] = '\0';
                idempotency_answer_add_header(a, name, value);
            }
        }
        text += line + (end ? 1 : 0);
    }
}

/* ------------------------------------------------------------ database */

static void lock_keys(const char *service, const char *key, int32_t *k1, int32_t *k2)
{
    struct sha256_ctx ctx;
    uint8_t digest[SHA256_DIGEST_SIZE];
    uint32_t a, b;

    sha256_init(&ctx);
    sha256_update(&ctx, strlen(service) + 1, (const uint8_t *)service); /* with its NUL */
    sha256_update(&ctx, strlen(key), (const uint8_t *)key);
    sha256_digest(&ctx, sizeof(digest), digest);
    memcpy(&a, digest, sizeof(a));
    memcpy(&b, digest + sizeof(a), sizeof(b));
    *k1 = (int32_t)a;
    *k2 = (int32_t)b;
}

static int in_use(struct api_error *err)
{
    api_error_set(err, 409, "idempotency_key_in_use", NULL,
                  "a request with this Idempotency-Key is still being processed; retry later");
    return DB_CONSTRAINT;
}

/* PostgreSQL only: 1 when this transaction holds the key's lock. */
static int try_lock(db *conn, const char *service, const char *key)
{
    int32_t k1, k2;
    db_stmt *st = db_prepare(conn, sql_lock);
    int rc;

    if (!st)
        return DB_ERROR;
    lock_keys(service, key, &k1, &k2);
    db_bind_int64(st, 1, k1);
    db_bind_int64(st, 2, k2);
    rc = db_step(st);
    if (rc == DB_ROW) {
        const char *got = db_col_text(st, 0);
        rc = got && (got[0] == 't' || got[0] == '1');
    } else if (rc == DB_DONE) {
        rc = DB_ERROR;
    }
    db_stmt_reset(st);
    return rc;
}

static int forget(db *conn, const char *service, const char *key)
{
    db_stmt *st = db_prepare(conn, sql_forget);
    int rc;

    if (!st)
        return DB_ERROR;
    db_bind_str(st, 1, service);
    db_bind_str(st, 2, key);
    rc = db_step(st);
    db_stmt_reset(st);
    return rc == DB_DONE ? DB_OK : rc;
}

int idempotency_claim(db *conn, const char *service, int ttl_s,
                      const struct idempotency_request *req, int *replayed,
                      struct idempotency_answer *answer, struct api_error *err)
{
    int64_t oldest_live = util_now_ms() - (int64_t)ttl_s * 1000;
    int expired = 0, rc;
    db_stmt *st;

    *replayed = 0;
    if (db_kind(conn) == DB_KIND_POSTGRES) {
        rc = try_lock(conn, service, req->key);
        if (rc == 0)
            return in_use(err);
        if (rc < 0)
            goto fail;
    }
    st = db_prepare(conn, sql_find);
    if (!st) {
        rc = DB_ERROR;
        goto fail;
    }
    db_bind_str(st, 1, service);
    db_bind_str(st, 2, req->key);
    rc = db_step(st);
    if (rc == DB_ROW) {
        if (db_col_int64(st, 4) <= oldest_live) {
            expired = 1;
        } else if (strcmp(db_col_text(st, 0), req->fingerprint) != 0) {
            api_error_set(err, 422, "idempotency_key_mismatch", NULL,
                          "this Idempotency-Key was used for a different request");
            rc = DB_CONSTRAINT;
        } else {
            *replayed = 1;
            answer->status = (int)db_col_int64(st, 1);
            parse_headers(db_col_text(st, 2), answer);
            answer->body_len = db_col_len(st, 3);
            answer->body = xmalloc(answer->body_len + 1);
            memcpy(answer->body, db_col_text(st, 3), answer->body_len);
            answer->body[answer->body_len] = '\0';
        }
    }
    db_stmt_reset(st);
    if (rc == DB_CONSTRAINT)
        return rc;
    if (rc != DB_ROW && rc != DB_DONE)
        goto fail;
    rc = expired ? forget(conn, service, req->key) : DB_OK;
    if (rc != DB_OK)
        goto fail;
    return DB_OK;
fail:
    log_warn(NULL, "idempotency key lookup failed: %s", db_errmsg(conn));
    service_db_error(rc, err);
    return rc;
}

int idempotency_store(db *conn, const char *service, const struct idempotency_request *req,
                      const struct idempotency_answer *answer, struct api_error *err)
{
    char *headers = headers_text(answer);
    db_stmt *st = db_prepare(conn, sql_store);
    int rc = DB_ERROR;

    if (!st)
        goto out;
    db_bind_str(st, 1, service);
    db_bind_str(st, 2, req->key);
    db_bind_str(st, 3, req->fingerprint);
    db_bind_int64(st, 4, answer->status);
    db_bind_str(st, 5, headers);
    db_bind_text(st, 6, answer->body ? answer->body : "", answer->body_len);
    db_bind_int64(st, 7, util_now_ms());
    rc = db_step(st);
    db_stmt_reset(st);
    if (rc == DB_DONE)
        rc = DB_OK;
out:
    free(headers);
    if (rc == DB_CONSTRAINT)
        return in_use(err); /* stored by another transaction since the claim */
    if (rc != DB_OK) {
        log_warn(NULL, "storing an idempotency key failed: %s", db_errmsg(conn));
        service_db_error(rc, err);
    }
    return rc;
}

int idempotency_sweep(db *conn, const char *service, int ttl_s, int max)
{
    const char *sql = db_kind(conn) == DB_KIND_POSTGRES ? sql_sweep_postgres : sql_sweep_sqlite;
    db_stmt *st = db_prepare(conn, sql);
    int rc, deleted = 0;

    if (!st)
        return DB_ERROR;
    db_bind_str(st, 1, service);
    db_bind_int64(st, 2, util_now_ms() - (int64_t)ttl_s * 1000);
    db_bind_int64(st, 3, max);
    while ((rc = db_step(st)) == DB_ROW)
        deleted++;
    db_stmt_reset(st);
    if (rc != DB_DONE)
        return rc;
    if (deleted > 0) {
        metrics_counter_add(METRIC_SWEPT, NULL, deleted);
        log_debug(NULL, "swept %d expired idempotency keys", deleted);
    }
    return deleted;
}
