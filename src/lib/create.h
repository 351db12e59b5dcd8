/*
 * create: the shape every create endpoint shares (docs/api.md "Creating").
 *
 * The body is one object or an array of 1..1000 objects. Every item is
 * validated before anything is written; then the group-commit thread
 * inserts every item and appends one event per item to the outbox inside
 * one savepoint of a shared transaction, so the whole batch and its events
 * commit together or not at all, and are durable before the client hears
 * 201 with the created object (and Location) or the array of them.
 * Errors about an item carry its "index" when the body was an array.
 *
 * With an Idempotency-Key (idempotency.h) the key is claimed first in the
 * same savepoint: a key already used answers with its stored 201 (marked
 * Idempotent-Replayed: true) and writes nothing; otherwise the 201, with
 * every header it carries, is stored with the key before the savepoint
 * ends, so key, rows and events commit together.
 *
 * A service describes each create in a struct create_spec; its POST route
 * carries that table as its data (http.h) and has create_handle as its
 * handler, which writes through the group commit and wakes the outbox
 * relay of the service (struct service, service.h).
 */
#ifndef LIB_CREATE_H
#define LIB_CREATE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "api_error.h"
#include "db.h"
#include "http.h"
#include "jsonw.h"
#include "rows.h"

struct create_spec {
    size_t item_size; /* the service's parsed-item struct */
    /* Validates one JSON object into *item (strings borrowed from obj). */
    int (*parse)(json_t *obj, void *item, struct api_error *err);
    /* Inserts one item inside the open transaction and writes the created
     * object to out; returns DB_OK, or fills err and returns an error.
     * Runs on the group-commit thread. */
    int (*insert)(db *conn, const void *item, struct jsonw *out, int64_t *id,
                  struct api_error *err);
    const char *event_type;      /* also the routing key */
    const char *location_prefix; /* "/system-api/users/" */
};

/* POST on a collection whose route's data is its struct create_spec. */
void create_handle(http_request *req, void *app);
typedef struct create_spec create_handle_data; /* route data (route.h) */

/* create_handle's validation: spec->parse on each of the count items of
 * body (as body_items split it) into items, count * spec->item_size
 * bytes the caller owns. Returns 0, or -1 with err filled for the first
 * bad item (its index set when the body is a batch). Not static so that
 * the fuzz harnesses (tests/fuzz/fuzz_create.h) run this very code. */
int create_parse_all(json_t *body, const struct create_spec *spec, size_t count, int is_batch,
                     char *items, struct api_error *err);

/* For insert callbacks: steps a bound "INSERT ... RETURNING" statement,
 * writes the created row with write and sets *id from its column 0.
 * Returns DB_OK or the error, with err filled except for DB_DUPLICATE,
 * whose meaning (409 for a duplicate email) only the caller knows. Any
 * other violation (DB_CONSTRAINT: a check, NOT NULL, a foreign key) is
 * a fault of ours that validation should have caught, so it is a 500,
 * as is a failed bind. */
int create_returning(db *conn, db_stmt *st, rows_writer write, struct jsonw *out, int64_t *id,
                     struct api_error *err);

#endif
