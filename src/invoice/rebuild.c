#include "rebuild.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "api_error.h"
#include "config.h"
#include "fetch.h"
#include "invoice_service.h"
#include "jsonw.h"
#include "log.h"
#include "rows.h"
#include "service.h"
#include "util.h"
#include "worker.h"

#define REBUILDS_PATH "/invoice-service/rebuilds/"
/* A transaction of the rebuild that fails on a lock wait (DB_BUSY: a
 * consumer batch or a reader held what it needs past the busy timeout)
 * is tried again this many times before the rebuild fails. */
#define REBUILD_BUSY_TRIES 5
#define INTERRUPTED "interrupted: the process running it stopped before it ended"

/* The advisory lock of the rebuild's runner: FNV-1a of "invoice rebuild",
 * like the writers' relay keys (outbox.c). */
static int64_t rebuild_lock_key(void)
{
    static const char name[] = "invoice rebuild";
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return (int64_t)(h >> 1);
}

struct rebuild_job {
    db *conn; /* holds the lock */
    int64_t id;
    char *user_url, *order_url, *token;
    int64_t events_applied;
};

/* The two logs, read in this order (any order would do: the projection's
 * steps commute). */
struct log_source {
    const char *name; /* for progress and errors */
    const char *path;
};
static const struct log_source log_sources[] = {
    {"user-service", "/system-api/events"},
    {"order-service", "/order-service/events"},
};

static int is_pg(db *conn)
{
    return db_kind(conn) == DB_KIND_POSTGRES;
}

/* Runs a statement that returns no rows. */
static int exec_stmt(db *conn, const char *sql)
{
    db_stmt *st = db_prepare(conn, sql);
    if (!st)
        return DB_ERROR;
    int rc = db_step(st);
    db_stmt_reset(st);
    return rc == DB_DONE || rc == DB_ROW ? DB_OK : rc;
}

static int empty_shadow(db *conn)
{
    int rc = exec_stmt(conn, "DELETE FROM rebuild_invoice_lines");
    if (rc == DB_OK)
        rc = exec_stmt(conn, "DELETE FROM rebuild_invoices");
    if (rc == DB_OK)
        rc = exec_stmt(conn, "DELETE FROM rebuild_customers");
    if (rc == DB_OK)
        rc = exec_stmt(conn, "DELETE FROM rebuild_inbox");
    return rc;
}

int rebuild_running(db *conn)
{
    db_stmt *st =
        db_prepare(conn, is_pg(conn) ? "SELECT id FROM rebuilds WHERE status = 'running'"
                                       " FOR SHARE"
                                     : "SELECT id FROM rebuilds WHERE status = 'running'");
    if (!st)
        return DB_ERROR;
    int rc = db_step(st);
    db_stmt_reset(st);
    return rc == DB_ROW ? 1 : rc == DB_DONE ? 0 : rc;
}

/* Marks the running rows failed with error and empties the shadow, in
 * the open transaction. id 0: every running row. */
static int mark_failed(db *conn, int64_t id, const char *error)
{
    db_stmt *st = db_prepare(conn,
                             "UPDATE rebuilds SET status = 'failed', error = $2,"
                             " finished_at = $3 WHERE status = 'running'"
                             " AND ($1 = 0 OR id = $1)");
    if (!st)
        return DB_ERROR;
    db_bind_int64(st, 1, id);
    db_bind_str(st, 2, error);
    db_bind_int64(st, 3, util_now_ms());
    int rc = db_step(st);
    db_stmt_reset(st);
    if (rc != DB_DONE && rc != DB_ROW)
        return rc;
    return empty_shadow(conn);
}

/* Marks failed the running rows nobody holds the lock of, when conn can
 * take the lock itself (it keeps it only for this). */
static int recover_unlocked(db *conn)
{
    int got = db_try_advisory_lock(conn, rebuild_lock_key());
    if (got <= 0)
        return got; /* 0: somebody runs it */
    int rc = db_begin(conn);
    if (rc == DB_OK)
        rc = mark_failed(conn, 0, INTERRUPTED);
    rc = rc == DB_OK ? db_commit(conn) : (db_rollback(conn), rc);
    db_advisory_unlock(conn, rebuild_lock_key());
    return rc;
}

int rebuild_recover(db *conn)
{
    return recover_unlocked(conn);
}

int rebuild_begin(const char *database_url, const struct rebuild_sources *sources,
                  rebuild_job **out, int64_t *id, char *err, size_t errlen)
{
    rebuild_job *job = NULL;
    db *conn = NULL;
    int rc;

    *out = NULL;
    *id = 0;
    rc = db_open(database_url, &conn, err, errlen);
    if (rc != DB_OK)
        return rc;
    rc = db_try_advisory_lock(conn, rebuild_lock_key());
    if (rc == 0) {
        rc = REBUILD_CONFLICT;
        goto out;
    }
    if (rc < 0)
        goto fail;
    /* Holding the lock, a running row on PostgreSQL has no runner. */
    if (is_pg(conn)) {
        rc = db_begin(conn);
        if (rc == DB_OK)
            rc = mark_failed(conn, 0, INTERRUPTED);
        rc = rc == DB_OK ? db_commit(conn) : (db_rollback(conn), rc);
        if (rc != DB_OK)
            goto fail;
    }
    rc = db_begin(conn);
    if (rc == DB_OK)
        rc = empty_shadow(conn);
    if (rc == DB_OK) {
        db_stmt *st = db_prepare(conn,
                                 "INSERT INTO rebuilds (status, events_applied, started_at)"
                                 " VALUES ('running', 0, $1) RETURNING id");
        if (!st) {
            rc = DB_ERROR;
        } else {
            db_bind_int64(st, 1, util_now_ms());
            rc = db_step(st);
            if (rc == DB_ROW)
                *id = db_col_int64(st, 0);
            db_stmt_reset(st);
            rc = rc == DB_ROW ? DB_OK : rc == DB_DONE ? DB_ERROR : rc;
        }
    }
    if (rc == DB_OK)
        rc = db_commit(conn);
    if (rc == DB_DUPLICATE) {
        db_rollback(conn);
        rc = REBUILD_CONFLICT;
        goto out;
    }
    if (rc != DB_OK) {
        db_rollback(conn);
        goto fail;
    }
    job = xcalloc(1, sizeof(*job));
    job->conn = conn;
    job->id = *id;
    job->user_url = xstrdup(sources->user_url);
    job->order_url = xstrdup(sources->order_url);
    job->token = sources->token ? xstrdup(sources->token) : NULL;
    *out = job;
    return REBUILD_BEGUN;
fail:
    snprintf(err, errlen, "%s", db_errmsg(conn));
out:
    db_close(conn);
    return rc;
}

void rebuild_job_free(rebuild_job *job)
{
    if (!job)
        return;
    db_close(job->conn);
    free(job->user_url);
    free(job->order_url);
    if (job->token) {
        explicit_bzero(job->token, strlen(job->token));
        free(job->token);
    }
    free(job);
}

/* In the open transaction: waits for the consumers' batches that write
 * the shadow and keeps new ones out until the commit (PostgreSQL; on
 * SQLite the transaction already excludes every writer), and checks the
 * row is still running (someone may have marked it failed meanwhile).
 * DB_OK, DB_CONSTRAINT when it is not running, or the error. */
static int hold_row(rebuild_job *job)
{
    db_stmt *st = db_prepare(job->conn, is_pg(job->conn)
                                            ? "SELECT status FROM rebuilds WHERE id = $1 FOR UPDATE"
                                            : "SELECT status FROM rebuilds WHERE id = $1");
    if (!st)
        return DB_ERROR;
    db_bind_int64(st, 1, job->id);
    int rc = db_step(st);
    int running = rc == DB_ROW && strcmp(db_col_text(st, 0), "running") == 0;
    db_stmt_reset(st);
    if (rc != DB_ROW && rc != DB_DONE)
        return rc;
    return running ? DB_OK : DB_CONSTRAINT;
}

/* Stores the progress: the events the shadow holds by id. */
static int note_progress(rebuild_job *job)
{
    db_stmt *st = db_prepare(job->conn, "SELECT count(*) FROM rebuild_inbox");
    if (!st)
        return DB_ERROR;
    int rc = db_step(st);
    if (rc == DB_ROW)
        job->events_applied = db_col_int64(st, 0);
    db_stmt_reset(st);
    if (rc != DB_ROW)
        return rc == DB_DONE ? DB_ERROR : rc;
    st = db_prepare(job->conn, "UPDATE rebuilds SET events_applied = $2 WHERE id = $1");
    if (!st)
        return DB_ERROR;
    db_bind_int64(st, 1, job->id);
    db_bind_int64(st, 2, job->events_applied);
    rc = db_step(st);
    db_stmt_reset(st);
    return rc == DB_DONE || rc == DB_ROW ? DB_OK : rc;
}

/* Applies one page of a log (a JSON array of {"position", "event"}) to
 * the shadow in the open transaction; *last is the highest position.
 * An event that does not decode (no writer logs one) is skipped, as the
 * live consumer would dead-letter it. */
static int apply_page(rebuild_job *job, json_t *items, int64_t *last)
{
    char reason[CONSUMER_REASON_MAX];
    size_t i;
    json_t *item;

    json_array_foreach(items, i, item) {
        json_t *pos = json_object_get(item, "position");
        json_t *body = json_object_get(item, "event");
        if (!json_is_integer(pos) || json_integer_value(pos) <= *last || !json_is_object(body))
            return DB_CONSTRAINT; /* not a log: never applied */
        *last = json_integer_value(pos);
        char *text = json_dumps(body, JSON_COMPACT);
        struct event ev;
        int rc = event_decode(text, strlen(text), NULL, util_now_ms(), &ev, reason, sizeof(reason));
        free(text);
        if (rc != 0) {
            log_warn(NULL, "rebuild %lld: skipping the event at position %lld: %s",
                     (long long)job->id, (long long)*last, reason);
            event_free(&ev);
            continue;
        }
        /* A log names an event by position, not by the seq the tokens
         * use: the seq is noted when the live queue delivers it. */
        rc = projection_apply_shadow(job->conn, &ev, NULL, 0, 1);
        event_free(&ev);
        if (rc < 0)
            return rc;
    }
    return DB_OK;
}

/* One transaction: hold the row, apply the page, note the progress;
 * retried on a lock wait. */
static int commit_page(rebuild_job *job, json_t *items, int64_t *last)
{
    int rc = DB_BUSY;
    int64_t start = *last;

    for (int tries = 0; tries < REBUILD_BUSY_TRIES && rc == DB_BUSY; tries++) {
        *last = start;
        rc = db_begin(job->conn);
        if (rc == DB_OK)
            rc = hold_row(job);
        if (rc == DB_OK)
            rc = apply_page(job, items, last);
        if (rc == DB_OK)
            rc = note_progress(job);
        if (rc == DB_OK)
            rc = db_commit(job->conn);
        if (rc != DB_OK)
            db_rollback(job->conn);
    }
    return rc;
}

/* Reads one log to its end into the shadow. 0, or -1 with err. */
static int read_log(rebuild_job *job, const struct log_source *src, const char *base,
                    const atomic_int *cancel, rebuild_progress_fn progress, void *ctx, char *err,
                    size_t errlen)
{
    char url[FETCH_URL_MAX], ferr[FETCH_ERROR_MAX], phase[64];
    int64_t after = 0;

    snprintf(phase, sizeof(phase), "reading the %s log", src->name);
    for (long page = 0; page < REBUILD_MAX_PAGES; page++) {
        struct fetch_answer a;
        json_error_t jerr;

        if (progress)
            progress(job->id, phase, job->events_applied, ctx);
        if (fetch_page_url(url, sizeof(url), base, src->path, after, REBUILD_PAGE_LIMIT) != 0) {
            snprintf(err, errlen, "the %s URL is not an http:// or https:// URL", src->name);
            return -1;
        }
        if (fetch_get(url, job->token, cancel, &a, ferr, sizeof(ferr)) != 0) {
            snprintf(err, errlen, "cannot read the %s event log: %s", src->name, ferr);
            return -1;
        }
        if (a.status != 200) {
            snprintf(err, errlen, "the %s event log answered HTTP %ld%s", src->name, a.status,
                     a.status == 401 || a.status == 404 ? " (is --source-token its admin token?)"
                                                        : "");
            fetch_answer_free(&a);
            return -1;
        }
        json_t *items = json_loadb(a.body, a.len, 0, &jerr);
        fetch_answer_free(&a);
        if (!json_is_array(items)) {
            json_decref(items);
            snprintf(err, errlen, "the %s event log answered something that is not a list",
                     src->name);
            return -1;
        }
        size_t count = json_array_size(items);
        int rc = commit_page(job, items, &after);
        json_decref(items);
        if (rc == DB_CONSTRAINT) {
            snprintf(err, errlen,
                     "the %s event log is not in position order, or the rebuild"
                     " was marked failed meanwhile",
                     src->name);
            return -1;
        }
        if (rc != DB_OK) {
            snprintf(err, errlen, "database error while applying the %s log: %s", src->name,
                     db_errmsg(job->conn));
            return -1;
        }
        if (count < REBUILD_PAGE_LIMIT)
            return 0;
    }
    snprintf(err, errlen, "the %s event log has more than %d pages", src->name, REBUILD_MAX_PAGES);
    return -1;
}

/* The swap's statements, in order, in one transaction after hold_row()
 * (docs/rebuild.md "The swap"). */
static const char *const swap_sql[] = {
    /* updated_at says when an invoice's content last changed: an invoice
     * the rebuild reproduces (same total, count and lines) keeps the
     * live value, so a rebuild of a correct model changes no field. */
    "UPDATE rebuild_invoices SET updated_at = (SELECT i.updated_at FROM invoices i"
    " WHERE i.user_id = rebuild_invoices.user_id AND i.year = rebuild_invoices.year"
    " AND i.month = rebuild_invoices.month)"
    " WHERE EXISTS (SELECT 1 FROM invoices i"
    " WHERE i.user_id = rebuild_invoices.user_id AND i.year = rebuild_invoices.year"
    " AND i.month = rebuild_invoices.month AND i.total_cents = rebuild_invoices.total_cents"
    " AND i.order_count = rebuild_invoices.order_count"
    " AND NOT EXISTS (SELECT 1 FROM rebuild_invoice_lines r"
    " WHERE r.invoice_id = rebuild_invoices.id AND NOT EXISTS (SELECT 1 FROM invoice_lines l"
    " WHERE l.order_id = r.order_id AND l.invoice_id = i.id AND l.amount_cents = r.amount_cents"
    " AND l.purchased_at = r.purchased_at AND l.description IS NOT DISTINCT FROM r.description)))",
    "DELETE FROM invoice_lines",
    "DELETE FROM invoices WHERE NOT EXISTS (SELECT 1 FROM rebuild_invoices r"
    " WHERE r.user_id = invoices.user_id AND r.year = invoices.year"
    " AND r.month = invoices.month)",
    /* An invoice of a known (user, year, month) keeps its live id; a new
     * one draws from the live table's own sequence (AUTOINCREMENT,
     * BIGSERIAL), which never hands out an id twice. */
    "INSERT INTO invoices (user_id, year, month, total_cents, order_count, updated_at)"
    " SELECT user_id, year, month, total_cents, order_count, updated_at FROM rebuild_invoices"
    " WHERE true ORDER BY id ON CONFLICT (user_id, year, month) DO UPDATE SET"
    " total_cents = excluded.total_cents, order_count = excluded.order_count,"
    " updated_at = excluded.updated_at",
    "INSERT INTO invoice_lines (order_id, invoice_id, description, amount_cents, purchased_at)"
    " SELECT l.order_id, i.id, l.description, l.amount_cents, l.purchased_at"
    " FROM rebuild_invoice_lines l JOIN rebuild_invoices r ON r.id = l.invoice_id"
    " JOIN invoices i ON i.user_id = r.user_id AND i.year = r.year AND i.month = r.month",
    /* What no log holds cannot be replayed, and is kept: a name given
     * by an event the shadow never saw (a user.created sent straight to
     * the queue before the rebuild began), and an account of a higher id
     * than the logs know (the projection's own rule: the highest wins). */
    "INSERT INTO rebuild_customers (user_id, name, email, name_event)"
    " SELECT user_id, name, email, name_event FROM customers c"
    " WHERE c.name_event IS NOT NULL"
    " AND NOT EXISTS (SELECT 1 FROM rebuild_inbox b WHERE b.event_id = c.name_event)"
    " ON CONFLICT (user_id) DO UPDATE SET name = excluded.name, email = excluded.email,"
    " name_event = excluded.name_event",
    "INSERT INTO rebuild_customers (user_id, account_id, address1, address2, city, state, zip)"
    " SELECT user_id, account_id, address1, address2, city, state, zip FROM customers c"
    " WHERE c.account_id IS NOT NULL"
    " ON CONFLICT (user_id) DO UPDATE SET account_id = excluded.account_id,"
    " address1 = excluded.address1, address2 = excluded.address2, city = excluded.city,"
    " state = excluded.state, zip = excluded.zip"
    " WHERE rebuild_customers.account_id IS NULL"
    " OR rebuild_customers.account_id < excluded.account_id",
    "DELETE FROM customers",
    "INSERT INTO customers (user_id, name, email, account_id, address1, address2, city, state,"
    " zip, name_event) SELECT user_id, name, email, account_id, address1, address2, city,"
    " state, zip, name_event FROM rebuild_customers",
    /* Later deliveries of what the shadow applied are duplicates; the
     * live rows stay (tokens they satisfied stay satisfied), and one
     * without a position gets the shadow's when it has one. */
    "INSERT INTO inbox (event_id, type, applied_at, source, source_seq)"
    " SELECT event_id, type, applied_at, source, source_seq FROM rebuild_inbox WHERE true"
    " ON CONFLICT (event_id) DO UPDATE SET source = excluded.source,"
    " source_seq = excluded.source_seq"
    " WHERE inbox.source_seq IS NULL AND excluded.source_seq IS NOT NULL",
};

/* The lock order of a consumer batch: the rebuild's row (hold_row), then
 * the live tables as it writes them. EXCLUSIVE blocks writers, not
 * readers: queries answer from the old model until the commit. */
static const char lock_live_pg[] =
    "LOCK TABLE inbox, customers, invoices, invoice_lines IN EXCLUSIVE MODE";

static int swap_once(rebuild_job *job)
{
    int rc = db_begin(job->conn);

    if (rc == DB_OK)
        rc = hold_row(job);
    if (rc == DB_OK)
        rc = note_progress(job);
    if (rc == DB_OK && is_pg(job->conn))
        rc = db_exec(job->conn, lock_live_pg);
    for (size_t i = 0; rc == DB_OK && i < ARRAY_LEN(swap_sql); i++)
        rc = exec_stmt(job->conn, swap_sql[i]);
    if (rc == DB_OK) {
        db_stmt *st = db_prepare(job->conn,
                                 "UPDATE rebuilds SET status = 'done',"
                                 " finished_at = $2 WHERE id = $1");
        if (!st) {
            rc = DB_ERROR;
        } else {
            db_bind_int64(st, 1, job->id);
            db_bind_int64(st, 2, util_now_ms());
            rc = db_step(st);
            db_stmt_reset(st);
            rc = rc == DB_DONE || rc == DB_ROW ? DB_OK : rc;
        }
    }
    if (rc == DB_OK)
        rc = empty_shadow(job->conn);
    if (rc == DB_OK)
        rc = db_commit(job->conn);
    if (rc != DB_OK)
        db_rollback(job->conn);
    return rc;
}

static int swap(rebuild_job *job, char *err, size_t errlen)
{
    int rc = DB_BUSY;

    for (int tries = 0; tries < REBUILD_BUSY_TRIES && rc == DB_BUSY; tries++)
        rc = swap_once(job);
    if (rc == DB_CONSTRAINT)
        snprintf(err, errlen, "the rebuild was marked failed before its swap");
    else if (rc != DB_OK)
        snprintf(err, errlen, "database error during the swap: %s", db_errmsg(job->conn));
    return rc == DB_OK ? 0 : -1;
}

/* Marks the job failed (its own row only), emptying the shadow. */
static void fail_job(rebuild_job *job, const char *error)
{
    int rc = db_begin(job->conn);
    if (rc == DB_OK)
        rc = mark_failed(job->conn, job->id, error);
    if (rc == DB_OK)
        rc = db_commit(job->conn);
    if (rc != DB_OK) {
        db_rollback(job->conn);
        /* Left running: its lock ends with the connection, and whoever
         * looks next marks it failed (rebuild.h). */
        log_warn(NULL, "rebuild %lld: cannot mark it failed: %s", (long long)job->id,
                 db_errmsg(job->conn));
    }
}

int rebuild_run(rebuild_job *job, const atomic_int *cancel, rebuild_progress_fn progress, void *ctx,
                char *err, size_t errlen)
{
    const char *bases[] = {job->user_url, job->order_url};
    int ok = 1;

    log_info(NULL, "rebuild %lld: started", (long long)job->id);
    for (size_t i = 0; ok && i < ARRAY_LEN(log_sources); i++)
        ok = read_log(job, &log_sources[i], bases[i], cancel, progress, ctx, err, errlen) == 0;
    if (ok && cancel && atomic_load(cancel)) {
        snprintf(err, errlen, "cancelled: the service is stopping");
        ok = 0;
    }
    if (ok) {
        if (progress)
            progress(job->id, "swapping", job->events_applied, ctx);
        ok = swap(job, err, errlen) == 0;
    }
    if (!ok) {
        log_warn(NULL, "rebuild %lld: failed: %s", (long long)job->id, err);
        fail_job(job, err);
        if (progress)
            progress(job->id, "failed", job->events_applied, ctx);
        return -1;
    }
    log_info(NULL, "rebuild %lld: done, %lld events applied", (long long)job->id,
             (long long)job->events_applied);
    if (progress)
        progress(job->id, "done", job->events_applied, ctx);
    return 0;
}

/* ------------------------------------------------------------ the service */

/* The rebuild this process runs, if any. Its thread is a worker that ends
 * by itself when the job does; it is stopped (joined) by the next POST or
 * by the service's stop, and the worker's stop flag is the job's cancel
 * flag, so a stop while it runs cancels it. */
static struct {
    pthread_mutex_t mu;
    int active;      /* the worker runs a job */
    int joinable;    /* the worker was started and not stopped yet */
    struct worker w; /* its lock is unused: mu guards the fields here */
    int64_t id;      /* of the job the worker runs */
} here = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void sources_of(const struct config *cfg, struct rebuild_sources *src)
{
    src->user_url = cfg->user_service_url;
    src->order_url = cfg->order_service_url;
    src->token = cfg->source_token ? cfg->source_token : cfg->admin_token;
}

static void *run_thread(void *arg)
{
    rebuild_job *job = arg;
    char err[REBUILD_ERROR_MAX];

    rebuild_run(job, &here.w.stopping, NULL, NULL, err, sizeof(err));
    rebuild_job_free(job); /* releases the lock: then a new one may start */
    pthread_mutex_lock(&here.mu);
    here.active = 0;
    pthread_mutex_unlock(&here.mu);
    return NULL;
}

int rebuild_service_start(struct service *s)
{
    /* The HTTP client (libcurl) is loaded by the first rebuild, not here:
     * a service that never rebuilds does not carry it (fetch.h). */
    /* Nothing of this process runs a rebuild yet: a running row whose
     * lock is free was interrupted (on SQLite, every running row). */
    db *conn = db_pool_acquire(s->pool);
    int rc = rebuild_recover(conn);
    if (rc != DB_OK)
        log_warn(NULL, "cannot check for an interrupted rebuild: %s", db_errmsg(conn));
    db_pool_release(s->pool, conn);
    return 0;
}

void rebuild_service_stop(void)
{
    pthread_mutex_lock(&here.mu);
    int joinable = here.joinable;
    here.joinable = 0;
    pthread_mutex_unlock(&here.mu);
    if (joinable)
        worker_stop(&here.w); /* cancels a job in progress */
    fetch_global_cleanup();
}

/* A rebuild's row as its JSON object (rows.h). */
static int write_rebuild_row(db *conn, db_stmt *st, struct jsonw *w)
{
    (void)conn;
    jsonw_object_begin(w);
    jsonw_key(w, "id");
    jsonw_int(w, db_col_int64(st, 0));
    jsonw_key(w, "status");
    jsonw_string(w, db_col_text(st, 1));
    jsonw_key(w, "events_applied");
    jsonw_int(w, db_col_int64(st, 2));
    jsonw_key(w, "started_at");
    jsonw_time(w, db_col_int64(st, 3));
    jsonw_key(w, "finished_at");
    if (db_col_is_null(st, 4))
        jsonw_null(w);
    else
        jsonw_time(w, db_col_int64(st, 4));
    jsonw_key(w, "error");
    if (db_col_is_null(st, 5))
        jsonw_null(w);
    else
        jsonw_string(w, db_col_text(st, 5));
    jsonw_object_end(w);
    return DB_OK;
}

/* Read by id only, as the dead letters and the orders are (rows.h); the
 * answer is reply_rebuild's own (202 on a create, 404 named). */
static const struct rows_list rebuild_rows = {
    .select = "SELECT id, status, events_applied, started_at, finished_at, error FROM rebuilds",
    .id_expr = "id",
    .write = write_rebuild_row,
};

/* Whether the row id is running (1), not (0), or an error. */
static int row_running(db *conn, int64_t id)
{
    db_stmt *st = db_prepare(conn, "SELECT 1 FROM rebuilds WHERE id = $1 AND status = 'running'");
    if (!st)
        return DB_ERROR;
    db_bind_int64(st, 1, id);
    int rc = db_step(st);
    db_stmt_reset(st);
    return rc == DB_ROW ? 1 : rc == DB_DONE ? 0 : rc;
}

/* Answers the rebuild id with status (200 or 202), or 404 / an error. */
static void reply_rebuild(http_request *req, const struct service *s, int64_t id, int status)
{
    struct api_error err;
    struct jsonw w;

    api_error_clear(&err);
    jsonw_init(&w);
    db *conn = db_pool_acquire(s->pool);
    int rc = DB_OK;
    /* PostgreSQL: a running row of another process that died shows as
     * failed as soon as somebody looks (rebuild.h). */
    if (status == 200 && db_kind(conn) == DB_KIND_POSTGRES) {
        pthread_mutex_lock(&here.mu);
        int mine = here.active && here.id == id;
        pthread_mutex_unlock(&here.mu);
        if (!mine && (rc = row_running(conn, id)) == 1)
            rc = recover_unlocked(conn);
        rc = rc > 0 ? DB_OK : rc;
    }
    if (rc == DB_OK)
        rc = rows_write_one(conn, &rebuild_rows, id, &w);
    if (rc == DB_OK) {
        db_pool_release(s->pool, conn);
        if (status == 202) {
            char location[64];
            snprintf(location, sizeof(location), REBUILDS_PATH "%lld", (long long)id);
            http_add_header(req, "Location", location);
        }
        http_reply(req, status, &w);
        jsonw_free(&w);
        return;
    }
    if (rc == DB_DONE) {
        api_error_set(&err, 404, "not_found", NULL, "no such rebuild");
    } else {
        log_warn(http_request_id(req), "reading a rebuild failed: %s", db_errmsg(conn));
        service_db_error(rc, &err);
    }
    db_pool_release(s->pool, conn);
    jsonw_free(&w);
    http_reply_error(req, &err);
}

void rebuild_handle_create(http_request *req, void *app)
{
    const struct service *s = app;
    struct rebuild_sources src;
    struct api_error err;
    char dberr[UTIL_ERR_MAX];
    rebuild_job *job = NULL;
    int64_t id = 0;
    int rc;

    if (!admin_authorize(req, s->cfg->admin_token) || http_refuse_query(req))
        return;
    api_error_clear(&err);
    pthread_mutex_lock(&here.mu);
    if (here.active) {
        pthread_mutex_unlock(&here.mu);
        goto conflict;
    }
    if (here.joinable) {
        worker_stop(&here.w); /* it has ended (active is 0): only joined */
        here.joinable = 0;
    }
    sources_of(s->cfg, &src);
    rc = rebuild_begin(s->cfg->database_url, &src, &job, &id, dberr, sizeof(dberr));
    if (rc == REBUILD_BEGUN) {
        here.active = 1;
        here.id = id;
        if (worker_start(&here.w, run_thread, job) != 0) {
            char why[] = "cannot start the rebuild's thread";
            log_error(http_request_id(req), "%s", why);
            fail_job(job, why);
            rebuild_job_free(job);
            here.active = 0;
            pthread_mutex_unlock(&here.mu);
            api_error_set(&err, 500, "internal", NULL, "internal error");
            http_reply_error(req, &err);
            return;
        }
        here.joinable = 1;
    }
    pthread_mutex_unlock(&here.mu);
    if (rc == REBUILD_CONFLICT)
        goto conflict;
    if (rc != REBUILD_BEGUN) {
        log_warn(http_request_id(req), "starting a rebuild failed: %s", dberr);
        service_db_error(rc, &err);
        http_reply_error(req, &err);
        return;
    }
    log_info(http_request_id(req), "rebuild %lld: requested", (long long)id);
    reply_rebuild(req, s, id, 202);
    return;
conflict:
    api_error_set(&err, 409, "conflict", NULL,
                  "a rebuild is running; wait for it to end (GET its Location)");
    http_reply_error(req, &err);
}

void rebuild_handle_get(http_request *req, void *app)
{
    const struct service *s = app;

    if (!admin_authorize(req, s->cfg->admin_token) || http_refuse_query(req))
        return;
    reply_rebuild(req, s, http_path_id(req), 200);
}

/* ------------------------------------------------------ the command line */

static atomic_int cli_cancel;

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&cli_cancel, 1);
}

struct cli_progress {
    int tty;
    size_t width; /* of the last line on a terminal, to blank its rest */
};

static void cli_progress(int64_t id, const char *phase, int64_t events_applied, void *ctx)
{
    struct cli_progress *p = ctx;
    char line[160];
    int n = snprintf(line, sizeof(line), "rebuild %lld: %s, %lld events applied", (long long)id,
                     phase, (long long)events_applied);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;

    if (p->tty) {
        printf("\r%s%*s", line, p->width > len ? (int)(p->width - len) : 0, "");
        p->width = len;
    } else {
        printf("%s\n", line);
    }
    fflush(stdout);
}

int rebuild_cli(int argc, char **argv)
{
    struct config cfg;
    struct rebuild_sources src;
    struct cli_progress progress = {.tty = isatty(STDOUT_FILENO)};
    char err[REBUILD_ERROR_MAX];
    rebuild_job *job = NULL;
    db *conn = NULL;
    int64_t id = 0;
    int status = 1;

    config_load(&cfg, "invoice-service", 8083, argc, argv);
    log_init(cfg.service, cfg.log_level);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    if (fetch_global_init(err, sizeof(err)) != 0) {
        fprintf(stderr, "rebuild: cannot start the HTTP client: %s\n", err);
        goto out;
    }
    /* The schema may be new: the same migrations as the service. */
    if (db_open(cfg.database_url, &conn, err, sizeof(err)) != DB_OK ||
        db_migrate(conn, invoice_migrations, invoice_migration_count, err, sizeof(err)) != DB_OK) {
        fprintf(stderr, "rebuild: cannot use the database: %s\n", err);
        goto out;
    }
    db_close(conn);
    conn = NULL;
    sources_of(&cfg, &src);
    int rc = rebuild_begin(cfg.database_url, &src, &job, &id, err, sizeof(err));
    if (rc == REBUILD_CONFLICT) {
        fprintf(stderr, "rebuild: another rebuild is running\n");
        goto out;
    }
    if (rc != REBUILD_BEGUN) {
        fprintf(stderr, "rebuild: cannot start: %s\n", err);
        goto out;
    }
    status = rebuild_run(job, &cli_cancel, cli_progress, &progress, err, sizeof(err)) == 0 ? 0 : 1;
    if (progress.tty)
        printf("\n");
    if (status != 0)
        fprintf(stderr, "rebuild %lld failed: %s\n", (long long)id, err);
out:
    rebuild_job_free(job);
    if (conn)
        db_close(conn);
    fetch_global_cleanup();
    config_free(&cfg);
    return status;
}
