/*
 * outbox: the transactional outbox and its relay thread (see outbox.h).
 *
 * The relay owns one database connection and one broker connection, both
 * used only by its thread. The rest of the process talks to it through
 * three things guarded by one mutex: the wake flag, the stop flag and a
 * condition variable on the monotonic clock, so a wake-up or a stop never
 * waits for a poll interval or a backoff to run out.
 */
#include "outbox.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uuid/uuid.h>

#include "jsonw.h"
#include "log.h"
#include "metrics.h"
#include "mq.h"
#include "util.h"

#define OUTBOX_DEFAULT_BATCH 100
#define OUTBOX_MAX_BATCH 10000
#define OUTBOX_DEFAULT_POLL_MS 1000
#define OUTBOX_HEARTBEAT_S 30
/* Idle waits are cut to this so mq_poll() answers heartbeats in time. */
#define OUTBOX_IDLE_MAX_MS (OUTBOX_HEARTBEAT_S * 1000 / 3)
/* A batch whose confirms take longer than this is treated as lost. */
#define OUTBOX_CONFIRM_TIMEOUT_MS 15000
/* Confirms are awaited in slices so a stop request is noticed. */
#define OUTBOX_CONFIRM_SLICE_MS 100
/* After a stop request a batch in flight gets this long to be confirmed
 * before it is abandoned (unmarked, so it is sent again next start). */
#define OUTBOX_STOP_GRACE_MS 2000
/* The pending gauge costs a count over the unpublished rows; refresh it
 * at most this often while a backlog is being worked off. */
#define OUTBOX_PENDING_REFRESH_MS 1000
/* Repeated connection failures are logged as warnings this seldom. */
#define OUTBOX_LOG_EVERY 10
#define OUTBOX_URL_TEXT 512
#define OUTBOX_ERR_TEXT 512
#define OUTBOX_NAME_TEXT 128

#define METRIC_PUBLISHED "events_published_total"
#define METRIC_PENDING "outbox_pending"

const char outbox_schema_sqlite[] =
    "CREATE TABLE IF NOT EXISTS outbox (\n"
    "    seq INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "    event_id TEXT NOT NULL UNIQUE,\n"
    "    type TEXT NOT NULL,\n"
    "    body TEXT NOT NULL,\n"
    "    correlation_id TEXT,\n"
    "    occurred_at INTEGER NOT NULL,\n"
    "    published_at INTEGER\n"
    ");\n"
    "CREATE INDEX IF NOT EXISTS outbox_unpublished\n"
    "    ON outbox (seq) WHERE published_at IS NULL;\n";

const char outbox_schema_postgres[] =
    "CREATE TABLE IF NOT EXISTS outbox (\n"
    "    seq BIGSERIAL PRIMARY KEY,\n"
    "    event_id TEXT NOT NULL UNIQUE,\n"
    "    type TEXT NOT NULL,\n"
    "    body TEXT NOT NULL,\n"
    "    correlation_id TEXT,\n"
    "    occurred_at BIGINT NOT NULL,\n"
    "    published_at BIGINT\n"
    ");\n"
    "CREATE INDEX IF NOT EXISTS outbox_unpublished\n"
    "    ON outbox (seq) WHERE published_at IS NULL;\n";

static const char sql_insert[] =
    "INSERT INTO outbox (event_id, type, body, correlation_id, occurred_at)"
    " VALUES ($1, $2, $3, $4, $5) RETURNING seq";
static const char sql_select_batch[] =
    "SELECT seq, event_id, type, body, correlation_id, occurred_at"
    " FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1";
static const char sql_mark_range[] =
    "UPDATE outbox SET published_at = $1"
    " WHERE seq BETWEEN $2 AND $3 AND published_at IS NULL";
static const char sql_mark_one[] =
    "UPDATE outbox SET published_at = $1"
    " WHERE seq = $2 AND published_at IS NULL";
static const char sql_count_pending[] =
    "SELECT count(*) FROM outbox WHERE published_at IS NULL";

/* ---- appending ---- */

int outbox_append(db *conn, const char *source, const struct outbox_event *ev)
{
    int64_t seq;
    return outbox_append_seq(conn, source, ev, &seq);
}

int outbox_append_seq(db *conn, const char *source, const struct outbox_event *ev, int64_t *seq)
{
    uuid_t uuid;
    char event_id[37];
    struct jsonw w;
    db_stmt *st;
    size_t data_len;
    int rc;

    if (!ev || !ev->type || !ev->data_json)
        return DB_ERROR;
    uuid_generate_random(uuid);
    uuid_unparse_lower(uuid, event_id);
    /* data_len 0 means a NUL-terminated string: "{}" is never empty. */
    data_len = ev->data_len ? ev->data_len : strlen(ev->data_json);

    jsonw_init(&w);
    jsonw_object_begin(&w);
    jsonw_key(&w, "id");
    jsonw_string(&w, event_id);
    jsonw_key(&w, "type");
    jsonw_string(&w, ev->type);
    jsonw_key(&w, "version");
    jsonw_int(&w, 1);
    jsonw_key(&w, "source");
    jsonw_string_or_null(&w, source);
    jsonw_key(&w, "occurred_at");
    jsonw_time(&w, ev->occurred_at_ms);
    jsonw_key(&w, "data");
    jsonw_raw(&w, ev->data_json, data_len);
    jsonw_object_end(&w);

    st = db_prepare(conn, sql_insert);
    if (!st) {
        rc = DB_ERROR;
        goto out;
    }
    db_bind_text(st, 1, event_id, strlen(event_id));
    db_bind_text(st, 2, ev->type, strlen(ev->type));
    db_bind_text(st, 3, w.buf, w.len);
    if (ev->correlation_id)
        db_bind_text(st, 4, ev->correlation_id, strlen(ev->correlation_id));
    else
        db_bind_null(st, 4);
    db_bind_int64(st, 5, ev->occurred_at_ms);
    rc = db_step(st);
    if (rc == DB_ROW) {
        *seq = db_col_int64(st, 0);
        rc = DB_OK;
    } else if (rc == DB_DONE) {
        rc = DB_ERROR; /* RETURNING always yields the row */
    }
    db_stmt_reset(st);
out:
    jsonw_free(&w);
    return rc;
}

/* ---- the relay ---- */

struct row {
    int64_t seq;
    char *event_id;
    char *type;
    char *body;
    size_t body_len;
    char *correlation_id;
    int64_t occurred_at;
};

struct outbox_relay {
    char *amqp_url;
    char *amqp_url_log;     /* with the password masked */
    char *service;
    char *queue_type;
    char *database_url;
    char *connection_name;
    int batch_size;
    int poll_interval_ms;

    /* Used by the relay thread only. */
    db *db;
    mq *mq;
    struct row *rows;
    int64_t pending_checked_ns;
    /* After a rejected batch, rows go one at a time until one is
     * confirmed: an event that cannot be routed then holds back the
     * events behind it instead of having them sent again with every
     * retry. */
    int one_at_a_time;
    /* A broker problem was logged as a warning: say when it is over. */
    int outage_logged;
    groupcommit *gc;        /* marks rows through it when set */
    /* Holds the database's relay lock: of several replicas sharing one
     * database, only the holder publishes, so events leave in order. */
    int leader;
    int64_t lock_key;

    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;    /* on CLOCK_MONOTONIC */
    int wake_pending;       /* guarded by lock */
    atomic_int stopping;    /* written under lock, read anywhere */
    int64_t stop_ns;        /* guarded by lock: when stop was asked */
    atomic_int connected;
};

static int stop_requested(outbox_relay *r)
{
    return atomic_load(&r->stopping);
}

/* Sleeps up to ms, returning early only when stop is requested: a
 * wake-up must not cut a backoff short, but a stop must. */
static void sleep_stoppable(outbox_relay *r, int ms)
{
    int64_t deadline = util_monotonic_ns() + (int64_t)ms * 1000000;

    pthread_mutex_lock(&r->lock);
    while (!atomic_load(&r->stopping) && util_monotonic_ns() < deadline)
        util_cond_wait_until(&r->cond, &r->lock, deadline);
    pthread_mutex_unlock(&r->lock);
}

/* Clears the wake flag before looking for rows, so a wake-up that comes
 * after the query (but before the wait) is still seen by the wait. */
static void take_wake(outbox_relay *r)
{
    pthread_mutex_lock(&r->lock);
    r->wake_pending = 0;
    pthread_mutex_unlock(&r->lock);
}

static void wait_for_work(outbox_relay *r)
{
    int ms = r->poll_interval_ms < OUTBOX_IDLE_MAX_MS ? r->poll_interval_ms
                                                      : OUTBOX_IDLE_MAX_MS;
    int64_t deadline = util_monotonic_ns() + (int64_t)ms * 1000000;

    pthread_mutex_lock(&r->lock);
    while (!r->wake_pending && !atomic_load(&r->stopping) &&
           util_monotonic_ns() < deadline)
        util_cond_wait_until(&r->cond, &r->lock, deadline);
    pthread_mutex_unlock(&r->lock);
}

static int should_log(int attempt)
{
    return attempt == 0 || attempt % OUTBOX_LOG_EVERY == 0;
}

static void drop_broker(outbox_relay *r)
{
    mq_close(r->mq);
    r->mq = NULL;
    atomic_store(&r->connected, 0);
}

static int connect_broker(outbox_relay *r, int attempt)
{
    char err[OUTBOX_ERR_TEXT];
    enum log_level lvl = should_log(attempt) ? LOG_LVL_WARN : LOG_LVL_DEBUG;

    if (lvl == LOG_LVL_WARN)
        r->outage_logged = 1;

    r->mq = mq_open(r->amqp_url, r->connection_name, OUTBOX_HEARTBEAT_S, err,
                    sizeof(err));
    if (!r->mq) {
        log_write(lvl, NULL, "outbox relay: cannot connect to %s: %s",
                  r->amqp_url_log, err);
        return -1;
    }
    if (mq_confirm_select(r->mq) != MQ_OK ||
        mq_declare_topology(r->mq, r->queue_type) != MQ_OK) {
        log_write(lvl, NULL, "outbox relay: broker setup on %s failed: %s",
                  r->amqp_url_log, mq_last_error(r->mq));
        drop_broker(r);
        return -1;
    }
    atomic_store(&r->connected, 1);
    /* Quiet while retrying a rejected batch; heard after an outage. */
    log_write(attempt == 0 || r->outage_logged ? LOG_LVL_INFO : LOG_LVL_DEBUG,
              NULL, "outbox relay: connected to %s", r->amqp_url_log);
    r->outage_logged = 0;
    return 0;
}

static int open_database(outbox_relay *r, int attempt)
{
    char err[OUTBOX_ERR_TEXT];
    int rc = db_open(r->database_url, &r->db, err, sizeof(err));
    if (rc != DB_OK) {
        log_write(should_log(attempt) ? LOG_LVL_WARN : LOG_LVL_DEBUG, NULL,
                  "outbox relay: cannot reopen database: %s", err);
        r->db = NULL;
    }
    return rc;
}

/* After a database error: an unusable connection is reopened on the next
 * round; anything else (busy, a hiccup) is simply tried again. */
static void database_failed(outbox_relay *r, int rc, const char *what,
                            int attempt)
{
    log_write(should_log(attempt) ? LOG_LVL_WARN : LOG_LVL_DEBUG, NULL,
              "outbox relay: %s failed (%d): %s", what, rc, db_errmsg(r->db));
    if (rc == DB_UNAVAILABLE) {
        db_close(r->db); /* ends the session, and with it the relay lock */
        r->db = NULL;
        r->leader = 0;
    }
}

/* With several replicas on one PostgreSQL database, exactly one relay
 * publishes: the one holding a session-level advisory lock. When its
 * process dies its session ends and a standby takes the lock on its next
 * try, within one poll interval. On SQLite the lock is always granted. */
static int lead(outbox_relay *r)
{
    if (r->leader)
        return 1;
    int got = db_try_advisory_lock(r->db, r->lock_key);
    if (got < 0) {
        database_failed(r, got, "taking the relay lock", 0);
        return 0;
    }
    if (got) {
        r->leader = 1;
        log_info(NULL, "outbox relay: this replica publishes the outbox");
    }
    return got;
}

/* FNV-1a of the service name: one relay lock per service, even when
 * services share a database. */
static int64_t relay_lock_key(const char *service)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = service; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return (int64_t)(h >> 1);
}

static void free_rows(struct row *rows, int n)
{
    for (int i = 0; i < n; i++) {
        free(rows[i].event_id);
        free(rows[i].type);
        free(rows[i].body);
        free(rows[i].correlation_id);
        memset(&rows[i], 0, sizeof(rows[i]));
    }
}

/* Copies up to batch_size unpublished rows, oldest first, and lets go of
 * the statement before anything is sent, so no read transaction stays
 * open while the broker is slow. Returns the count or a db_result. */
static int load_batch(outbox_relay *r)
{
    db_stmt *st = db_prepare(r->db, sql_select_batch);
    int limit = r->one_at_a_time ? 1 : r->batch_size;
    int n = 0, rc = DB_DONE;

    if (!st)
        return DB_ERROR;
    db_bind_int64(st, 1, limit);
    while (n < limit && (rc = db_step(st)) == DB_ROW) {
        struct row *row = &r->rows[n++];
        row->seq = db_col_int64(st, 0);
        row->event_id = xstrdup(db_col_text(st, 1));
        row->type = xstrdup(db_col_text(st, 2));
        row->body = xstrndup(db_col_text(st, 3), db_col_len(st, 3));
        row->body_len = db_col_len(st, 3);
        row->correlation_id =
            db_col_is_null(st, 4) ? NULL : xstrdup(db_col_text(st, 4));
        row->occurred_at = db_col_int64(st, 5);
    }
    db_stmt_reset(st);
    if (n < limit && rc != DB_DONE) {
        free_rows(r->rows, n);
        return rc < 0 ? rc : DB_ERROR;
    }
    return n;
}

/* Publishes the rows and waits for the broker to confirm all of them.
 * MQ_OK only when every one was acked and none came back. */
static int publish_batch(outbox_relay *r, int n)
{
    int64_t deadline;
    int rc;

    for (int i = 0; i < n; i++) {
        const struct row *row = &r->rows[i];
        char seq[24];
        snprintf(seq, sizeof(seq), "%lld", (long long)row->seq);
        struct mq_header headers[] = {{MQ_SEQ_HEADER, seq}};
        struct mq_message msg = {
            .exchange = MQ_EXCHANGE,
            .routing_key = row->type,
            .body = row->body,
            .body_len = row->body_len,
            .message_id = row->event_id,
            .type = row->type,
            .app_id = r->service,
            .correlation_id = row->correlation_id,
            .timestamp_s = row->occurred_at / 1000,
            .headers = headers,
            .header_count = ARRAY_LEN(headers),
        };
        rc = mq_publish(r->mq, &msg);
        if (rc != MQ_OK)
            return rc;
    }

    deadline = util_monotonic_ns() + (int64_t)OUTBOX_CONFIRM_TIMEOUT_MS * 1000000;
    for (;;) {
        rc = mq_wait_confirms(r->mq, OUTBOX_CONFIRM_SLICE_MS);
        if (rc != MQ_TIMEOUT)
            return rc;
        if (stop_requested(r)) {
            int64_t grace;
            pthread_mutex_lock(&r->lock);
            grace = r->stop_ns + (int64_t)OUTBOX_STOP_GRACE_MS * 1000000;
            pthread_mutex_unlock(&r->lock);
            if (grace < deadline)
                deadline = grace;
        }
        if (util_monotonic_ns() >= deadline)
            return MQ_TIMEOUT;
    }
}

/* Marks the confirmed rows. When their seqs are contiguous one range
 * update does it; with a gap (possible on PostgreSQL, where a lower seq
 * can commit later) a range could mark a row that was never sent, so
 * each row is marked by its own seq instead, in one transaction. */
/* Marks the batch's rows published, inside the caller's transaction. */
static int mark_rows(db *conn, const struct row *rows, int n)
{
    int64_t now = util_now_ms();
    db_stmt *st;
    int rc;

    if (rows[n - 1].seq - rows[0].seq + 1 == n) {
        st = db_prepare(conn, sql_mark_range);
        if (!st)
            return DB_ERROR;
        db_bind_int64(st, 1, now);
        db_bind_int64(st, 2, rows[0].seq);
        db_bind_int64(st, 3, rows[n - 1].seq);
        rc = db_step(st);
        db_stmt_reset(st);
        return rc == DB_DONE ? DB_OK : rc;
    }
    for (int i = 0; i < n; i++) {
        st = db_prepare(conn, sql_mark_one);
        if (!st)
            return DB_ERROR;
        db_bind_int64(st, 1, now);
        db_bind_int64(st, 2, rows[i].seq);
        rc = db_step(st);
        db_stmt_reset(st);
        if (rc != DB_DONE)
            return rc;
    }
    return DB_OK;
}

/* Marking through the service's group commit: the update rides in the
 * next shared transaction instead of queueing for SQLite's write lock
 * against it. */
struct mark_job {
    struct groupcommit_job job; /* first */
    const struct row *rows;
    int n;
    int rc;
    int done;
    pthread_mutex_t lock;
    pthread_cond_t cond;
};

static int mark_job_run(db *conn, struct groupcommit_job *job)
{
    struct mark_job *m = (struct mark_job *)job;
    return mark_rows(conn, m->rows, m->n);
}

static void mark_job_done(struct groupcommit_job *job, int rc)
{
    struct mark_job *m = (struct mark_job *)job;
    pthread_mutex_lock(&m->lock);
    m->rc = rc;
    m->done = 1;
    pthread_cond_signal(&m->cond);
    pthread_mutex_unlock(&m->lock);
}

static int mark_published(outbox_relay *r, int n)
{
    int rc;

    if (r->gc) {
        struct mark_job m = {.job = {.run = mark_job_run, .done = mark_job_done},
                             .rows = r->rows,
                             .n = n};
        pthread_mutex_init(&m.lock, NULL);
        pthread_cond_init(&m.cond, NULL);
        groupcommit_submit(r->gc, &m.job);
        pthread_mutex_lock(&m.lock);
        while (!m.done)
            pthread_cond_wait(&m.cond, &m.lock);
        pthread_mutex_unlock(&m.lock);
        pthread_mutex_destroy(&m.lock);
        pthread_cond_destroy(&m.cond);
        return m.rc;
    }
    rc = db_begin(r->db);
    if (rc == DB_OK)
        rc = mark_rows(r->db, r->rows, n);
    if (rc == DB_OK)
        rc = db_commit(r->db);
    if (rc != DB_OK)
        db_rollback(r->db);
    return rc;
}

/* Sets the pending gauge. known_zero skips the count; otherwise it runs
 * at most every OUTBOX_PENDING_REFRESH_MS. */
static void refresh_pending(outbox_relay *r, int known_zero)
{
    int64_t now = util_monotonic_ns();
    db_stmt *st;

    if (known_zero) {
        metrics_gauge_set(METRIC_PENDING, NULL, 0);
        r->pending_checked_ns = now;
        return;
    }
    if (!r->db ||
        now - r->pending_checked_ns < (int64_t)OUTBOX_PENDING_REFRESH_MS * 1000000)
        return;
    st = db_prepare(r->db, sql_count_pending);
    if (!st)
        return;
    if (db_step(st) == DB_ROW) {
        metrics_gauge_set(METRIC_PENDING, NULL, db_col_int64(st, 0));
        r->pending_checked_ns = now;
    }
    db_stmt_reset(st);
}

static void *relay_main(void *arg)
{
    outbox_relay *r = arg;
    int mq_attempt = 0;
    int db_attempt = 0;

    while (!stop_requested(r)) {
        int n, rc;

        if (r->db && !db_alive(r->db)) {
            db_close(r->db); /* the server went away: so did the relay lock */
            r->db = NULL;
            r->leader = 0;
        }
        if (!r->db && open_database(r, db_attempt) != DB_OK) {
            sleep_stoppable(r, mq_backoff_ms(db_attempt++));
            continue;
        }
        if (!r->mq && connect_broker(r, mq_attempt) != 0) {
            refresh_pending(r, 0);
            sleep_stoppable(r, mq_backoff_ms(mq_attempt++));
            continue;
        }

        if (!lead(r)) {
            /* A standby: keep the broker connection alive (readiness),
             * and try for the lock again after a poll interval. */
            wait_for_work(r);
            if (mq_poll(r->mq) != MQ_OK)
                drop_broker(r);
            continue;
        }

        take_wake(r);
        n = load_batch(r);
        if (n < 0) {
            database_failed(r, n, "reading the outbox", db_attempt);
            sleep_stoppable(r, mq_backoff_ms(db_attempt++));
            continue;
        }
        if (n == 0) {
            refresh_pending(r, 1);
            mq_attempt = 0;
            db_attempt = 0;
            wait_for_work(r);
            if (mq_poll(r->mq) != MQ_OK) {
                log_warn(NULL, "outbox relay: broker connection lost: %s",
                         mq_last_error(r->mq));
                r->outage_logged = 1;
                drop_broker(r);
            }
            continue;
        }

        rc = publish_batch(r, n);
        if (rc == MQ_OK) {
            /* Confirmed: from here a failure to mark only means the rows
             * go out once more, which consumers deduplicate. */
            int mrc = mark_published(r, n);
            metrics_counter_add(METRIC_PUBLISHED, NULL, n);
            log_debug(NULL, "outbox relay: published %d events (seq %lld..%lld)",
                      n, (long long)r->rows[0].seq, (long long)r->rows[n - 1].seq);
            mq_attempt = 0;
            r->one_at_a_time = 0;
            if (mrc == DB_OK) {
                db_attempt = 0;
                refresh_pending(r, 0);
            } else {
                database_failed(r, mrc, "marking published rows", db_attempt);
                sleep_stoppable(r, mq_backoff_ms(db_attempt++));
            }
        } else {
            if (should_log(mq_attempt))
                r->outage_logged = 1;
            log_write(should_log(mq_attempt) ? LOG_LVL_WARN : LOG_LVL_DEBUG,
                      NULL,
                      "outbox relay: batch from seq %lld not confirmed (%s): %s;"
                      " reconnecting",
                      (long long)r->rows[0].seq,
                      rc == MQ_ERR_REJECTED ? "rejected"
                      : rc == MQ_TIMEOUT    ? "timed out"
                                            : "connection lost",
                      mq_last_error(r->mq));
            if (rc == MQ_ERR_REJECTED)
                r->one_at_a_time = 1;
            drop_broker(r);
            refresh_pending(r, 0);
            sleep_stoppable(r, mq_backoff_ms(mq_attempt++));
        }
        free_rows(r->rows, n);
    }

    if (r->mq)
        drop_broker(r);
    db_close(r->db);
    r->db = NULL;
    return NULL;
}

static void relay_free(outbox_relay *r)
{
    free(r->amqp_url);
    free(r->amqp_url_log);
    free(r->service);
    free(r->queue_type);
    free(r->database_url);
    free(r->connection_name);
    free(r->rows);
    free(r);
}

outbox_relay *outbox_relay_start(const struct outbox_relay_config *cfg)
{
    char err[OUTBOX_ERR_TEXT];
    char url_log[OUTBOX_URL_TEXT];
    char name[OUTBOX_NAME_TEXT];
    outbox_relay *r;
    int rc;

    if (!cfg || !cfg->database_url || !cfg->amqp_url || !cfg->service) {
        log_error(NULL, "outbox relay: database_url, amqp_url and service "
                        "are required");
        return NULL;
    }
    r = xcalloc(1, sizeof(*r));
    r->database_url = xstrdup(cfg->database_url);
    r->amqp_url = xstrdup(cfg->amqp_url);
    log_redact_url(cfg->amqp_url, url_log, sizeof(url_log));
    r->amqp_url_log = xstrdup(url_log);
    r->service = xstrdup(cfg->service);
    r->lock_key = relay_lock_key(r->service);
    r->queue_type = xstrdup(cfg->queue_type ? cfg->queue_type : "classic");
    r->gc = cfg->gc;
    snprintf(name, sizeof(name), "%s outbox relay", cfg->service);
    r->connection_name = xstrdup(name);
    r->batch_size = cfg->batch_size > 0 ? cfg->batch_size : OUTBOX_DEFAULT_BATCH;
    if (r->batch_size > OUTBOX_MAX_BATCH)
        r->batch_size = OUTBOX_MAX_BATCH;
    r->poll_interval_ms =
        cfg->poll_interval_ms > 0 ? cfg->poll_interval_ms : OUTBOX_DEFAULT_POLL_MS;
    r->rows = xcalloc((size_t)r->batch_size, sizeof(*r->rows));

    /* Opened here, not in the thread, so a wrong URL fails start-up. */
    rc = db_open(r->database_url, &r->db, err, sizeof(err));
    if (rc != DB_OK) {
        log_error(NULL, "outbox relay: cannot open database: %s", err);
        relay_free(r);
        return NULL;
    }

    pthread_mutex_init(&r->lock, NULL);
    util_cond_init_monotonic(&r->cond);
    atomic_init(&r->stopping, 0);
    atomic_init(&r->connected, 0);

    metrics_describe(METRIC_PUBLISHED, "counter",
                     "Outbox events confirmed by the broker.");
    metrics_describe(METRIC_PENDING, "gauge",
                     "Outbox events not yet confirmed by the broker.");

    rc = pthread_create(&r->thread, NULL, relay_main, r);
    if (rc != 0) {
        log_error(NULL, "outbox relay: cannot start thread: %s", strerror(rc));
        db_close(r->db);
        pthread_cond_destroy(&r->cond);
        pthread_mutex_destroy(&r->lock);
        relay_free(r);
        return NULL;
    }
    log_info(NULL, "outbox relay started: broker %s, batch %d, poll %d ms",
             r->amqp_url_log, r->batch_size, r->poll_interval_ms);
    return r;
}

void outbox_relay_wake(outbox_relay *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->wake_pending = 1;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

int outbox_relay_connected(outbox_relay *r)
{
    return r ? atomic_load(&r->connected) : 0;
}

void outbox_relay_stop(outbox_relay *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->stop_ns = util_monotonic_ns();
    atomic_store(&r->stopping, 1);
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);

    pthread_join(r->thread, NULL);
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->lock);
    log_info(NULL, "outbox relay stopped");
    relay_free(r);
}
