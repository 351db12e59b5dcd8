/*
 * idempotency: the Idempotency-Key header of a create (docs/api.md
 * "Idempotent creates", after the IETF idempotency-key draft).
 *
 * A POST may carry a key (1..IDEMPOTENCY_KEY_MAX printable ASCII bytes).
 * The first request with it is processed as usual; a 201 answer (status,
 * body and headers such as Location) is stored with the key and a
 * fingerprint of the request (SHA-256 over method, path and the body's
 * bytes) in the same transaction as the create, so the key exists exactly
 * when the created rows do. Later requests with the key get that answer
 * again (same fingerprint), 422 idempotency_key_mismatch (another one), or
 * 409 idempotency_key_in_use while a replica sharing the database has the
 * key in an open transaction. Answers other than 201 are not stored.
 *
 * Keys belong to one service (a column of the key) and live at least the
 * configured TTL; an expired key counts as absent, and expired rows are
 * deleted in small batches by idempotency_sweep().
 *
 * The functions taking a db run on the group-commit thread inside the
 * request's savepoint (groupcommit.h); a struct idempotency_answer owns
 * its body: free it with idempotency_answer_free().
 */
#ifndef LIB_IDEMPOTENCY_H
#define LIB_IDEMPOTENCY_H

#include <stddef.h>

#include "api_error.h"
#include "db.h"
#include "http.h"

#define IDEMPOTENCY_KEY_MAX 255
#define IDEMPOTENCY_FINGERPRINT_HEX 64 /* SHA-256 in hex */
#define IDEMPOTENCY_HEADERS_MAX 6      /* headers a stored answer keeps */
#define IDEMPOTENCY_HEADER_NAME_MAX 32
#define IDEMPOTENCY_HEADER_VALUE_MAX 256
#define IDEMPOTENCY_RETRY_AFTER "1" /* seconds, on 409 idempotency_key_in_use */

/* Migration SQL creating the key table, for a service's list. */
extern const char idempotency_schema_sqlite[];
extern const char idempotency_schema_postgres[];

/* What a request says about itself; present is 0 without a key. */
struct idempotency_request {
    int present;
    char key[IDEMPOTENCY_KEY_MAX + 1];
    char fingerprint[IDEMPOTENCY_FINGERPRINT_HEX + 1];
};

struct idempotency_header {
    char name[IDEMPOTENCY_HEADER_NAME_MAX];
    char value[IDEMPOTENCY_HEADER_VALUE_MAX];
};

/* A whole answer, as stored and as replayed. body is owned (may be NULL
 * with body_len 0). */
struct idempotency_answer {
    int status;
    char *body;
    size_t body_len;
    struct idempotency_header headers[IDEMPOTENCY_HEADERS_MAX];
    int header_count;
};

/* Reads the request's Idempotency-Key and, when there is one, computes
 * the fingerprint. Returns 0 (out->present says whether there was a key)
 * or -1 with err set to 400 invalid_header: an empty, too long, repeated
 * or not printable-ASCII key. Runs on the HTTP worker. */
int idempotency_read(const http_request *req, struct idempotency_request *out,
                     struct api_error *err);

/* Adds a header to an answer (copied; ignored past IDEMPOTENCY_HEADERS_MAX
 * or when it does not fit, which no header we write does). */
void idempotency_answer_add_header(struct idempotency_answer *a, const char *name,
                                   const char *value);
void idempotency_answer_free(struct idempotency_answer *a);

/* Before the create, in its savepoint: claims req's key for service. On
 * DB_OK, *replayed says whether the key already holds an answer for this
 * fingerprint, then copied into *answer (nothing is to be created). Else
 * a negative db_result with err set: 409 idempotency_key_in_use (another
 * transaction holds the key), 422 idempotency_key_mismatch, or 5xx. A key
 * older than ttl_s seconds is deleted and counts as new. */
int idempotency_claim(db *conn, const char *service, int ttl_s,
                      const struct idempotency_request *req, int *replayed,
                      struct idempotency_answer *answer, struct api_error *err);

/* After the create, in the same savepoint: stores the answer under req's
 * key. Returns DB_OK, or a negative db_result with err set. */
int idempotency_store(db *conn, const char *service, const struct idempotency_request *req,
                      const struct idempotency_answer *answer, struct api_error *err);

/* Deletes at most max keys of service older than ttl_s seconds, in the
 * caller's transaction; returns how many, or a negative db_result. On
 * PostgreSQL rows another transaction holds are skipped, not waited for. */
int idempotency_sweep(db *conn, const char *service, int ttl_s, int max);

#endif
