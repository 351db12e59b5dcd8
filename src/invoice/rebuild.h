/*
 * rebuild: filling a fresh invoice model from the writers' event logs
 * while the service keeps serving the old one, then swapping it in
 * (docs/rebuild.md has the design and why it loses and doubles nothing).
 *
 * The fresh model is a shadow of the live tables in the same database
 * (rebuild_customers, rebuild_invoices, rebuild_invoice_lines and its own
 * inbox, rebuild_inbox), written by the same projection code. A rebuild
 * is a row of the table rebuilds, which is also how every consumer (of
 * this process or another replica) learns that one runs: while a row is
 * 'running', each delivery is applied to the live model and to the
 * shadow (projection.c asks rebuild_running() first, inside its batch's
 * transaction).
 *
 *   1. begin: in one transaction, empty the shadow and insert the row
 *      (status running). At most one row is running (a unique index).
 *   2. run: read the user service's log, then the order service's, from
 *      position 0 to their end, applying every event to the shadow (one
 *      transaction per page, deduped by event id).
 *   3. swap: in one transaction that waits for the consumers' batches in
 *      flight and keeps new ones out (they ask for the row first, and the
 *      swap holds it for update), replace the live rows by the shadow's,
 *      keep every invoice's id, merge the shadow's inbox into the live
 *      one, mark the row done and empty the shadow.
 * Any failure marks the row failed with its error and empties the
 * shadow; the live model is untouched.
 *
 * Who runs it: a connection of its own, holding the advisory lock
 * REBUILD_LOCK (db.h) from begin to the end. On PostgreSQL that tells
 * whether a running row still has a runner (another replica's, or the
 * command-line form's): a row that is running while nobody holds the
 * lock was left by a process that died, and is marked failed
 * ("interrupted") by whoever notices (start-up, POST, GET). On SQLite
 * the lock means nothing (one process per file): a service marks the
 * running rows failed at start-up only.
 */
#ifndef INVOICE_REBUILD_H
#define INVOICE_REBUILD_H

#include <stdatomic.h>
#include <stdint.h>

#include "db.h"
#include "event.h"
#include "http.h"
#include "util.h"

struct service;

/* The tables are invoice migration 6 (schema.c). */

/* Events asked of a writer's log per request (the logs' largest page). */
#define REBUILD_PAGE_LIMIT 1000
/* Bounds the pages read of one log: 10^9 events. */
#define REBUILD_MAX_PAGES 1000000
#define REBUILD_ERROR_MAX UTIL_ERR_MAX

/* From a consumer's transaction, before it writes anything: 1 when a
 * rebuild is running (the delivery goes to the shadow too), 0 when not,
 * or a negative db_result. On PostgreSQL the row is locked FOR SHARE
 * until the transaction ends, so a swap waits for this batch, and a
 * batch that comes while a swap holds the row waits, then finds it done
 * and writes the live model only. */
int rebuild_running(db *conn);

/* Applies a decoded event to the shadow model, deduped by its id in
 * rebuild_inbox (source and seq recorded with it when seq > 0). replay:
 * it comes from a writer's log, not from a delivery (a user.created of a
 * log then sets no name a delivery already set). Returns 1 when it
 * changed the shadow, 0 when it was a duplicate, or a negative
 * db_result. In projection.c. */
int projection_apply_shadow(db *conn, const struct event *ev, const char *source, int64_t seq,
                            int replay);

/* Where the writers' logs are, and the token they want (borrowed). */
struct rebuild_sources {
    const char *user_url;  /* e.g. http://127.0.0.1:8081 */
    const char *order_url; /* e.g. http://127.0.0.1:8082 */
    const char *token;     /* NULL: no Authorization header */
};

/* Told at each step of a run: what it does ("reading the user-service
 * log", "swapping", "done", "failed") and the events applied so far. */
typedef void (*rebuild_progress_fn)(int64_t id, const char *phase, int64_t events_applied,
                                    void *ctx);

typedef struct rebuild_job rebuild_job;

enum rebuild_begin_result {
    REBUILD_BEGUN = 0,
    REBUILD_CONFLICT = 1, /* one is running (here or elsewhere) */
    /* otherwise a negative db_result */
};

/* Opens a connection of its own to database_url, takes the lock, marks
 * a running row nobody holds as failed (PostgreSQL only, see above),
 * and commits a new running row. Returns REBUILD_BEGUN with *job (the
 * caller's, for rebuild_run then rebuild_job_free) and *id, or
 * REBUILD_CONFLICT, or a negative db_result with err filled. sources is
 * copied. */
int rebuild_begin(const char *database_url, const struct rebuild_sources *sources,
                  rebuild_job **job, int64_t *id, char *err, size_t errlen);
/* Runs the job to its end; *cancel non-zero stops it (marked failed).
 * progress may be NULL. Returns 0 when the rebuild is done, -1 when it
 * failed (err says why; the row says so too when the database could
 * still be written). */
int rebuild_run(rebuild_job *job, const atomic_int *cancel, rebuild_progress_fn progress, void *ctx,
                char *err, size_t errlen);
/* Closes the job's connection, which releases its lock. */
void rebuild_job_free(rebuild_job *job);

/* Marks failed ("interrupted") every running row that nobody runs, as
 * far as conn can tell (see above: on SQLite, every running row; call
 * it there only when no rebuild can be running). DB_OK or the error. */
int rebuild_recover(db *conn);

/* The service's side: start-up (recovery of an interrupted rebuild)
 * before any thread starts, and stop (a rebuild in progress is
 * cancelled, marked failed, and its thread joined). */
int rebuild_service_start(struct service *s);
void rebuild_service_stop(void);

/* POST /invoice-service/rebuilds and GET /invoice-service/rebuilds/{id}:
 * admin routes (admin.h). 202 with Location and the rebuild; 409
 * conflict while one runs; 200 with the rebuild, 404 for an unknown id. */
void rebuild_handle_create(http_request *req, void *app);
void rebuild_handle_get(http_request *req, void *app);
typedef void rebuild_handle_create_data; /* no route data (route.h) */
typedef void rebuild_handle_get_data;

/* "invoice-service rebuild [flags]" (argv[0] is "rebuild"): the same
 * rebuild from the command line, with a progress line. Returns the exit
 * status (0: done). */
int rebuild_cli(int argc, char **argv);

#endif
