/*
 * outbox: the transactional outbox and its relay thread (see outbox.h).
 *
 * The relay owns one database connection and one broker connection, both
 * used only by its thread (a struct worker, worker.h). The rest of the
 * process talks to it through the wake flag, guarded by the worker's lock
 * and signalled on its condition variable, so a wake-up or a stop never
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
#include "trace.h"
#include "util.h"
#include "worker.h"

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
/* Batches published and not yet marked, at most: the next batch goes out
 * while earlier ones await their confirms (the broker's fsync) and their
 * marks. Bounds the rows held in memory and sent again after a failure. */
#define OUTBOX_MAX_IN_FLIGHT 4
/* While a batch awaits its confirms and another could go, the wait for
 * them is cut to this, so a wake-up is acted on within a few ms. */
#define OUTBOX_WAKE_SLICE_MS 2
/* After a stop request a batch in flight gets this long to be confirmed
 * before it is abandoned (unmarked, so it is sent again next start). */
#define OUTBOX_STOP_GRACE_MS 2000
/* The pending gauge costs a count over the unpublished rows; refresh it
 * at most this often while a backlog is being worked off. */
#define OUTBOX_PENDING_REFRESH_MS 1000
/* Repeated connection failures are logged as warnings this seldom. */
#define OUTBOX_LOG_EVERY 10
#define OUTBOX_URL_TEXT 512
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

/* A later migration: the W3C traceparent of each event (trace.h). */
const char outbox_trace_schema[] = "ALTER TABLE outbox ADD COLUMN traceparent TEXT;\n";

static const char sql_insert[] =
    "INSERT INTO outbox (event_id, type, body, correlation_id, occurred_at, traceparent)"
    " VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq";
static const char sql_select_batch[] =
    "SELECT seq, event_id, type, body, correlation_id, occurred_at, traceparent"
    " FROM outbox WHERE published_at IS NULL AND (seq > $2 OR seq < $3)"
    " ORDER BY seq LIMIT $1";
static const char sql_mark_range[] =
    "UPDATE outbox SET published_at = $1"
    " WHERE seq BETWEEN $2 AND $3 AND published_at IS NULL";
static const char sql_mark_one[] =
    "UPDATE outbox SET published_at = $1"
    " WHERE seq = $2 AND published_at IS NULL";
static const char sql_count_pending[] = "SELECT count(*) FROM outbox WHERE published_at IS NULL";

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
    if (jsonw_failed(&w)) { /* over JSONW_MAX_BYTES: never an event */
        rc = DB_ERROR;
        goto out;
    }

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
    if (ev->traceparent)
        db_bind_text(st, 6, ev->traceparent, strlen(ev->traceparent));
    else
        db_bind_null(st, 6);
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

/* ---- event log positions (outbox.h, docs/eventlog.md) ---- */

/* SQLite: one writer at a time. db_begin is BEGIN IMMEDIATE, so a write
 * transaction holds the database's single write lock from its start to
 * its COMMIT, and seq (AUTOINCREMENT, never reused once committed) is
 * taken at INSERT under that lock: the next transaction's seqs are all
 * taken after this one committed. WAL readers see a prefix of the
 * commits, hence a prefix of the seqs. So seq is already a commit-order
 * position, and the log is a view on it. */
const char outbox_positions_schema_sqlite[] =
    "CREATE VIEW event_log AS SELECT seq AS position, body FROM outbox;\n";

/* PostgreSQL: rows already there (all committed) keep their seq as their
 * position, in seq order; new rows get theirs from outbox_position_seq,
 * which starts above them. The unique index makes a position that would
 * repeat an error instead of a silent duplicate; the partial index finds
 * a transaction's own unpositioned rows at commit. */
const char outbox_positions_schema_postgres[] =
    "ALTER TABLE outbox ADD COLUMN position BIGINT;\n"
    "UPDATE outbox SET position = seq;\n"
    "CREATE SEQUENCE outbox_position_seq;\n"
    "SELECT setval('outbox_position_seq',"
    " (SELECT coalesce(max(seq), 0) + 1 FROM outbox), false);\n"
    "CREATE UNIQUE INDEX outbox_position ON outbox (position);\n"
    "CREATE INDEX outbox_unpositioned ON outbox (seq) WHERE position IS NULL;\n"
    "CREATE VIEW event_log AS\n"
    "    SELECT position, body FROM outbox WHERE position IS NOT NULL;\n";

/* Takes the position lock only when this transaction has rows to
 * position: the rows of other transactions in flight are invisible to
 * it, and every committed row already has its position. So a group that
 * only marks rows published never waits for the lock. */
static const char sql_position_lock[] =
    "SELECT pg_advisory_xact_lock($1::bigint) FROM outbox"
    " WHERE position IS NULL LIMIT 1";
/* nextval in seq order within the transaction (the ordered subquery is
 * not flattened, and a CTE with a volatile function is evaluated once).
 * nextval is outside the snapshot, so this holds at any isolation level. */
static const char sql_position_assign[] =
    "WITH p AS MATERIALIZED ("
    "SELECT seq, nextval('outbox_position_seq') AS position"
    " FROM (SELECT seq FROM outbox WHERE position IS NULL ORDER BY seq) s)"
    " UPDATE outbox o SET position = p.position FROM p WHERE o.seq = p.seq";

/* FNV-1a of "outbox positions " and the service name: one lock per
 * service's outbox, apart from the relay's lock (relay_lock_key). */
static int64_t position_lock_key(const char *service)
{
    static const char salt[] = "outbox positions ";
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = salt; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    for (const char *p = service; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return (int64_t)(h >> 1);
}

/*
 * PostgreSQL: a transaction-level advisory lock, taken here and held to
 * the end of COMMIT, orders the committing transactions of every replica
 * of the service; positions are drawn from the sequence while holding it.
 * A transaction holding positions p.. thus commits, and becomes visible,
 * before the next one can draw any (PostgreSQL releases a transaction's
 * locks only after its commit is visible to new snapshots), so any
 * snapshot that sees a position sees every lower position that will ever
 * exist: a reader paging with "after" can neither skip nor repeat one.
 */
int outbox_assign_positions(db *conn, const char *service)
{
    db_stmt *st;
    int rc;

    if (db_kind(conn) == DB_KIND_SQLITE)
        return DB_OK;
    st = db_prepare(conn, sql_position_lock);
    if (!st)
        return DB_ERROR;
    db_bind_int64(st, 1, position_lock_key(service));
    rc = db_step(st);
    db_stmt_reset(st);
    if (rc == DB_DONE)
        return DB_OK; /* nothing appended: no lock, nothing to do */
    if (rc != DB_ROW)
        return rc;
    /* A statement of its own, after the lock: nothing it reads or draws
     * can predate the commit of the lock's previous holder. */
    st = db_prepare(conn, sql_position_assign);
    if (!st)
        return DB_ERROR;
    rc = db_step(st);
    db_stmt_reset(st);
    return rc == DB_DONE ? DB_OK : rc;
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
    char *traceparent; /* NULL for rows older than tracing */
};

/* Marking a confirmed batch published: through the service's group
 * commit when there is one (the update rides in the next shared
 * transaction instead of queueing for SQLite's write lock against it),
 * else on the relay's own connection. Either way the relay does not wait
 * for it, and the commit need not be durable (docs/design.md). */
struct mark_job {
    struct groupcommit_job job; /* first */
    outbox_relay *relay;
    const struct row *rows;
    int n;
    int rc;   /* guarded by relay->w.lock */
    int done; /* guarded by relay->lock */
};

enum batch_state {
    BATCH_FREE,
    BATCH_SENT,    /* published, awaiting the broker's confirms */
    BATCH_MARKING, /* confirmed, its mark not yet committed */
};

/* One batch in flight. Its rows stay loaded until the mark is committed,
 * so that the next batch is read past them (see load_batch). */
struct batch {
    struct row *rows; /* batch_size of them */
    int n;
    enum batch_state state;
    uint64_t last_tag; /* confirm tag of its last row */
    int64_t sent_ns;
    struct mark_job mark;
};

struct outbox_relay {
    char *amqp_url;
    char *amqp_url_log; /* with the password masked */
    char *service;
    char *queue_type;
    const struct mq_topology *topology;
    char *database_url;
    char *connection_name;
    int batch_size;
    int poll_interval_ms;

    /* Used by the relay thread only. */
    db *db;
    mq *mq;
    /* Batches in flight, oldest first from batches[first]: confirmed ones
     * (BATCH_MARKING) before published ones (BATCH_SENT), since confirms
     * are settled and marks committed in publishing order. */
    struct batch batches[OUTBOX_MAX_IN_FLIGHT];
    int first;
    int count;
    /* Look for rows: after a wake-up, a confirm, a full batch or a
     * poll interval; not again and again while confirms are awaited. */
    int want_load;
    int mq_attempt;
    int db_attempt;
    int64_t pending_checked_ns;
    /* After a rejected batch, rows go one at a time until one is
     * confirmed: an event that cannot be routed then holds back the
     * events behind it instead of having them sent again with every
     * retry. */
    int one_at_a_time;
    /* A broker problem was logged as a warning: say when it is over. */
    int outage_logged;
    groupcommit *gc; /* marks rows through it when set */
    /* Holds the database's relay lock: of several replicas sharing one
     * database, only the holder publishes, so events leave in order. */
    int leader;
    int64_t lock_key;

    struct worker w; /* the relay thread; its lock guards the next two
                               and the marks' outcomes */
    int wake_pending;
    int64_t stop_ns; /* when stop was asked */
    atomic_int connected;
};

static int stop_requested(outbox_relay *r)
{
    return worker_stopping(&r->w);
}

/* Sleeps up to ms, returning early only when stop is requested: a
 * wake-up must not cut a backoff short, but a stop must. */
static void sleep_stoppable(outbox_relay *r, int ms)
{
    worker_sleep(&r->w, ms);
}

/* Clears the wake flag before looking for rows, so a wake-up that comes
 * after the query (but before the wait) is still seen by the wait. */
static void take_wake(outbox_relay *r)
{
    pthread_mutex_lock(&r->w.lock);
    r->wake_pending = 0;
    pthread_mutex_unlock(&r->w.lock);
}

static int woken(outbox_relay *r)
{
    int w;
    pthread_mutex_lock(&r->w.lock);
    w = r->wake_pending;
    pthread_mutex_unlock(&r->w.lock);
    return w;
}

static void wait_for_work(outbox_relay *r)
{
    int ms = r->poll_interval_ms < OUTBOX_IDLE_MAX_MS ? r->poll_interval_ms : OUTBOX_IDLE_MAX_MS;
    int64_t deadline = util_monotonic_ns() + (int64_t)ms * 1000000;

    pthread_mutex_lock(&r->w.lock);
    while (!r->wake_pending && !worker_stopping(&r->w) && util_monotonic_ns() < deadline)
        worker_wait_until(&r->w, deadline);
    pthread_mutex_unlock(&r->w.lock);
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
    char err[UTIL_ERR_MAX];
    enum log_level lvl = should_log(attempt) ? LOG_LVL_WARN : LOG_LVL_DEBUG;

    if (lvl == LOG_LVL_WARN)
        r->outage_logged = 1;

    r->mq = mq_open(r->amqp_url, r->connection_name, OUTBOX_HEARTBEAT_S, err, sizeof(err));
    if (!r->mq) {
        log_write(lvl, NULL, "outbox relay: cannot connect to %s: %s", r->amqp_url_log, err);
        return -1;
    }
    if (mq_confirm_select(r->mq) != MQ_OK ||
        mq_declare_topology(r->mq, r->topology, r->queue_type) != MQ_OK) {
        log_write(lvl, NULL, "outbox relay: broker setup on %s failed: %s", r->amqp_url_log,
                  mq_last_error(r->mq));
        drop_broker(r);
        return -1;
    }
    atomic_store(&r->connected, 1);
    /* Quiet while retrying a rejected batch; heard after an outage. */
    log_write(attempt == 0 || r->outage_logged ? LOG_LVL_INFO : LOG_LVL_DEBUG, NULL,
              "outbox relay: connected to %s", r->amqp_url_log);
    r->outage_logged = 0;
    return 0;
}

/* Opens the relay's connection. Its own commits only ever mark rows
 * published, which need not be durable (a lost mark is a duplicate). */
static int open_database(outbox_relay *r, int attempt, char *err, size_t errlen)
{
    int rc = db_open(r->database_url, &r->db, err, errlen);
    if (rc == DB_OK && db_set_durable(r->db, 0) != DB_OK) {
        snprintf(err, errlen, "cannot relax its commits: %s", db_errmsg(r->db));
        db_close(r->db);
        rc = DB_UNAVAILABLE;
    }
    if (rc != DB_OK) {
        log_write(should_log(attempt) ? LOG_LVL_WARN : LOG_LVL_DEBUG, NULL,
                  "outbox relay: cannot open database: %s", err);
        r->db = NULL;
    }
    return rc;
}

/* After a database error: an unusable connection is reopened on the next
 * round; anything else (busy, a hiccup) is simply tried again. */
static void database_failed(outbox_relay *r, int rc, const char *what, int attempt)
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
        free(rows[i].traceparent);
        memset(&rows[i], 0, sizeof(rows[i]));
    }
}

/* The i-th batch in flight, oldest first; i == count is the next free. */
static struct batch *batch_at(outbox_relay *r, int i)
{
    return &r->batches[(r->first + i) % OUTBOX_MAX_IN_FLIGHT];
}

static struct batch *oldest_sent(outbox_relay *r)
{
    for (int i = 0; i < r->count; i++) {
        struct batch *b = batch_at(r, i);
        if (b->state == BATCH_SENT)
            return b;
    }
    return NULL;
}

/* Forgets the published, unconfirmed batches (the newest ones): their
 * rows are still unmarked, so they go out again. */
static void abandon_sent(outbox_relay *r)
{
    while (r->count > 0 && batch_at(r, r->count - 1)->state == BATCH_SENT) {
        struct batch *b = batch_at(r, r->count - 1);
        free_rows(b->rows, b->n);
        b->n = 0;
        b->state = BATCH_FREE;
        r->count--;
    }
}

/* Copies up to batch_size unpublished rows, oldest first, into b, and
 * lets go of the statement before anything is sent, so no read
 * transaction stays open while the broker is slow. Rows of batches still
 * in flight are unmarked too: the read skips the whole seq range they
 * span. A row inside that range that was not in flight (on PostgreSQL a
 * lower seq can commit after a higher one was read) is read once the
 * batches around it are marked, as before pipelining it was read once
 * the batch before it was. Returns the count or a db_result. */
static int load_batch(outbox_relay *r, struct batch *b)
{
    db_stmt *st = db_prepare(r->db, sql_select_batch);
    int limit = r->one_at_a_time ? 1 : r->batch_size;
    int64_t lo = 0, hi = 0; /* nothing in flight: seq > 0 is every row */
    int n = 0, rc = DB_DONE;

    if (!st)
        return DB_ERROR;
    for (int i = 0; i < r->count; i++) {
        const struct batch *f = batch_at(r, i);
        int64_t f_lo = f->rows[0].seq, f_hi = f->rows[f->n - 1].seq;
        lo = i == 0 || f_lo < lo ? f_lo : lo;
        hi = f_hi > hi ? f_hi : hi;
    }
    db_bind_int64(st, 1, limit);
    db_bind_int64(st, 2, hi);
    db_bind_int64(st, 3, lo);
    while (n < limit && (rc = db_step(st)) == DB_ROW) {
        struct row *row = &b->rows[n++];
        row->seq = db_col_int64(st, 0);
        row->event_id = xstrdup(db_col_text(st, 1));
        row->type = xstrdup(db_col_text(st, 2));
        row->body = xstrndup(db_col_text(st, 3), db_col_len(st, 3));
        row->body_len = db_col_len(st, 3);
        row->correlation_id = db_col_is_null(st, 4) ? NULL : xstrdup(db_col_text(st, 4));
        row->occurred_at = db_col_int64(st, 5);
        row->traceparent = db_col_is_null(st, 6) ? NULL : xstrdup(db_col_text(st, 6));
    }
    db_stmt_reset(st);
    if (n < limit && rc != DB_DONE) {
        free_rows(b->rows, n);
        return rc < 0 ? rc : DB_ERROR;
    }
    return n;
}

/* Publishes the batch's rows without waiting for their confirms. */
static int publish_batch(outbox_relay *r, struct batch *b)
{
    for (int i = 0; i < b->n; i++) {
        const struct row *row = &b->rows[i];
        char seq[24];
        snprintf(seq, sizeof(seq), "%lld", (long long)row->seq);
        struct mq_header headers[] = {{MQ_SEQ_HEADER, seq}, {TRACE_HEADER, row->traceparent}};
        struct mq_message msg = {
            .exchange = r->topology->exchange,
            .routing_key = row->type,
            .body = row->body,
            .body_len = row->body_len,
            .message_id = row->event_id,
            .type = row->type,
            .app_id = r->service,
            .correlation_id = row->correlation_id,
            .timestamp_s = row->occurred_at / 1000,
            .headers = headers,
            .header_count = row->traceparent ? 2 : 1,
        };
        int rc = mq_publish(r->mq, &msg);
        if (rc != MQ_OK)
            return rc;
    }
    b->last_tag = mq_last_tag(r->mq);
    b->sent_ns = util_monotonic_ns();
    return MQ_OK;
}

/* Marks the batch's rows published, inside the caller's transaction.
 * When their seqs are contiguous one range update does it; with a gap
 * (possible on PostgreSQL, where a lower seq can commit later) a range
 * could mark a row that was never sent, so each row is marked by its own
 * seq instead. */
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

static int mark_job_run(db *conn, struct groupcommit_job *job)
{
    struct mark_job *m = (struct mark_job *)job;
    return mark_rows(conn, m->rows, m->n);
}

/* Runs on the committer's thread: records the outcome and wakes the
 * relay, which frees the batch (and may read past it) on its thread. */
static void mark_job_done(struct groupcommit_job *job, int rc)
{
    struct mark_job *m = (struct mark_job *)job;
    outbox_relay *r = m->relay;

    pthread_mutex_lock(&r->w.lock);
    m->rc = rc;
    m->done = 1;
    r->wake_pending = 1;
    worker_signal(&r->w);
    pthread_mutex_unlock(&r->w.lock);
}

/* On the relay's own connection, whose commits are not durable. */
static int mark_here(outbox_relay *r, const struct row *rows, int n)
{
    int rc = r->db ? db_begin(r->db) : DB_UNAVAILABLE;

    if (rc == DB_OK)
        rc = mark_rows(r->db, rows, n);
    if (rc == DB_OK)
        rc = db_commit(r->db);
    if (rc != DB_OK && r->db)
        db_rollback(r->db);
    return rc;
}

/* The broker confirmed b: count it, and have its rows marked. */
static void confirmed(outbox_relay *r, struct batch *b)
{
    struct mark_job *m = &b->mark;

    metrics_counter_add(METRIC_PUBLISHED, NULL, b->n);
    log_debug(NULL, "outbox relay: published %d events (seq %lld..%lld)", b->n,
              (long long)b->rows[0].seq, (long long)b->rows[b->n - 1].seq);
    b->state = BATCH_MARKING;
    memset(m, 0, sizeof(*m));
    m->job.run = mark_job_run;
    m->job.done = mark_job_done;
    m->job.relaxed = 1;
    m->relay = r;
    m->rows = b->rows;
    m->n = b->n;
    if (r->gc) {
        groupcommit_submit(r->gc, &m->job);
        return;
    }
    int rc = mark_here(r, b->rows, b->n);
    pthread_mutex_lock(&r->w.lock);
    m->rc = rc;
    m->done = 1;
    pthread_mutex_unlock(&r->w.lock);
}

/* Frees the oldest batches whose marks are committed (or failed: their
 * rows then go out once more). Returns how many marks failed. */
static int reap_marked(outbox_relay *r)
{
    int failed = 0;

    while (r->count > 0) {
        struct batch *b = batch_at(r, 0);
        int done, rc;

        if (b->state != BATCH_MARKING)
            break;
        pthread_mutex_lock(&r->w.lock);
        done = b->mark.done;
        rc = b->mark.rc;
        pthread_mutex_unlock(&r->w.lock);
        if (!done)
            break;
        if (rc != DB_OK) {
            log_write(should_log(r->db_attempt + failed) ? LOG_LVL_WARN : LOG_LVL_DEBUG, NULL,
                      "outbox relay: marking published rows (seq %lld..%lld) failed (%d);"
                      " they will be published again",
                      (long long)b->rows[0].seq, (long long)b->rows[b->n - 1].seq, rc);
            failed++;
        }
        free_rows(b->rows, b->n);
        b->n = 0;
        b->state = BATCH_FREE;
        r->first = (r->first + 1) % OUTBOX_MAX_IN_FLIGHT;
        r->count--;
        r->want_load = 1; /* a row held back behind the batch may go now */
    }
    return failed;
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
    if (!r->db || now - r->pending_checked_ns < (int64_t)OUTBOX_PENDING_REFRESH_MS * 1000000)
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

/* A batch was not confirmed (or not even sent): everything published and
 * unconfirmed goes out again, in seq order, over a new connection. */
static void broker_failed(outbox_relay *r, int rc)
{
    const struct batch *b = oldest_sent(r);

    if (should_log(r->mq_attempt))
        r->outage_logged = 1;
    log_write(should_log(r->mq_attempt) ? LOG_LVL_WARN : LOG_LVL_DEBUG, NULL,
              "outbox relay: batch from seq %lld not confirmed (%s): %s;"
              " reconnecting",
              b ? (long long)b->rows[0].seq : 0LL,
              rc == MQ_ERR_REJECTED ? "rejected"
              : rc == MQ_TIMEOUT    ? "timed out"
                                    : "connection lost",
              mq_last_error(r->mq));
    if (rc == MQ_ERR_REJECTED)
        r->one_at_a_time = 1;
    drop_broker(r);
    abandon_sent(r);
    refresh_pending(r, 0);
    sleep_stoppable(r, mq_backoff_ms(r->mq_attempt++));
}

/* Room for another batch: a free slot, and not while retrying one row at
 * a time (that row must be confirmed before anything behind it goes). */
static int can_send(const outbox_relay *r)
{
    return r->count < OUTBOX_MAX_IN_FLIGHT && !(r->one_at_a_time && r->count > 0);
}

/* Reads the next batch into a free slot and publishes it. Returns 1 when
 * that was this round's work (a batch went out, or a failure was handled
 * and backed off from), 0 when there was nothing to read. */
static int send_next_batch(outbox_relay *r)
{
    struct batch *b = batch_at(r, r->count);
    int rc;

    take_wake(r);
    rc = load_batch(r, b);
    if (rc < 0) {
        database_failed(r, rc, "reading the outbox", r->db_attempt);
        sleep_stoppable(r, mq_backoff_ms(r->db_attempt++));
        return 1;
    }
    /* A full batch says there may be more: read again at once. */
    r->want_load = rc == (r->one_at_a_time ? 1 : r->batch_size);
    if (rc > 0) {
        b->n = rc;
        b->state = BATCH_SENT;
        r->count++;
        rc = publish_batch(r, b);
        if (rc != MQ_OK)
            broker_failed(r, rc);
        return 1;
    }
    if (r->count == 0) {
        refresh_pending(r, 1);
        r->mq_attempt = 0;
        r->db_attempt = 0;
    }
    return 0;
}

/* Waits one slice for the confirms of the oldest published batch b. Short
 * slices while another batch could go, so a wake-up is acted on within a
 * few ms rather than after this confirm; the batch as a whole gets
 * OUTBOX_CONFIRM_TIMEOUT_MS from its publishing. */
static void await_oldest(outbox_relay *r, struct batch *b)
{
    int slice = can_send(r) ? OUTBOX_WAKE_SLICE_MS : OUTBOX_CONFIRM_SLICE_MS;
    int rc = mq_wait_confirmed(r->mq, b->last_tag, slice);

    if (rc == MQ_OK) {
        confirmed(r, b);
        r->mq_attempt = 0;
        r->one_at_a_time = 0;
        r->want_load = 1;
    } else if (rc != MQ_TIMEOUT) {
        broker_failed(r, rc);
    } else if (util_monotonic_ns() - b->sent_ns >= (int64_t)OUTBOX_CONFIRM_TIMEOUT_MS * 1000000) {
        broker_failed(r, MQ_TIMEOUT);
    } else if (woken(r)) {
        r->want_load = 1;
    }
}

/* Nothing to publish and nothing to confirm (marks may be pending: their
 * completion wakes this wait). The poll afterwards keeps the idle broker
 * connection alive and notices when it is gone. */
static void idle_round(outbox_relay *r)
{
    wait_for_work(r);
    r->want_load = 1;
    if (mq_poll(r->mq) != MQ_OK) {
        log_warn(NULL, "outbox relay: broker connection lost: %s", mq_last_error(r->mq));
        r->outage_logged = 1;
        drop_broker(r);
    }
}

/* One step of the publishing replica: read and publish a batch, or
 * settle the oldest batch's confirms, or wait for work. Publishing goes
 * on while earlier batches await their confirms and marks. */
static void relay_step(outbox_relay *r)
{
    struct batch *b;

    if (reap_marked(r) > 0) {
        sleep_stoppable(r, mq_backoff_ms(r->db_attempt++));
        return;
    }
    if (r->want_load && can_send(r) && send_next_batch(r))
        return;
    b = oldest_sent(r);
    if (b)
        await_oldest(r, b);
    else
        idle_round(r);
}

/* On stop: the batches in flight get until OUTBOX_STOP_GRACE_MS after the
 * stop request to be confirmed (the rest stay unmarked and go out at the
 * next start), and every mark under way is waited for, since its job
 * lives in the relay. */
static void finish_in_flight(outbox_relay *r)
{
    int64_t grace;
    struct batch *b;

    pthread_mutex_lock(&r->w.lock);
    grace = r->stop_ns + (int64_t)OUTBOX_STOP_GRACE_MS * 1000000;
    pthread_mutex_unlock(&r->w.lock);
    while (r->mq && (b = oldest_sent(r))) {
        int64_t left_ms = (grace - util_monotonic_ns()) / 1000000;
        if (left_ms <= 0)
            break;
        int rc = mq_wait_confirmed(r->mq, b->last_tag,
                                   left_ms < OUTBOX_CONFIRM_SLICE_MS ? (int)left_ms
                                                                     : OUTBOX_CONFIRM_SLICE_MS);
        if (rc == MQ_OK)
            confirmed(r, b);
        else if (rc != MQ_TIMEOUT)
            break;
    }
    abandon_sent(r);
    for (int i = 0; i < r->count; i++) {
        b = batch_at(r, i);
        pthread_mutex_lock(&r->w.lock);
        while (!b->mark.done) /* not worker_wait_until: the stop is under way */
            pthread_cond_wait(&r->w.cond, &r->w.lock);
        pthread_mutex_unlock(&r->w.lock);
    }
    reap_marked(r);
    r->pending_checked_ns = 0; /* a last count, whenever the one before */
    refresh_pending(r, 0);
}

/* Makes sure the relay has a live database connection and a broker
 * connection, opening what is missing. Returns 0 when both are there;
 * otherwise it has backed off already and the round starts over. */
static int ensure_connections(outbox_relay *r)
{
    char err[UTIL_ERR_MAX];

    if (r->db && !db_alive(r->db)) {
        db_close(r->db); /* the server went away: so did the relay lock */
        r->db = NULL;
        r->leader = 0;
    }
    if (!r->db && open_database(r, r->db_attempt, err, sizeof(err)) != DB_OK) {
        sleep_stoppable(r, mq_backoff_ms(r->db_attempt++));
        return -1;
    }
    if (!r->mq && connect_broker(r, r->mq_attempt) != 0) {
        refresh_pending(r, 0);
        sleep_stoppable(r, mq_backoff_ms(r->mq_attempt++));
        return -1;
    }
    return 0;
}

/* A standby (or a leader that lost its lock with its session): what it
 * had sent goes out again from the holder. It keeps the broker connection
 * alive (readiness), and tries for the lock again after a poll interval. */
static void stand_by(outbox_relay *r)
{
    abandon_sent(r);
    reap_marked(r);
    wait_for_work(r);
    if (mq_poll(r->mq) != MQ_OK)
        drop_broker(r);
}

static void *relay_main(void *arg)
{
    outbox_relay *r = arg;

    while (!stop_requested(r)) {
        if (ensure_connections(r) != 0)
            continue;
        if (lead(r))
            relay_step(r);
        else
            stand_by(r);
    }

    finish_in_flight(r);
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
    for (int i = 0; i < OUTBOX_MAX_IN_FLIGHT; i++)
        free(r->batches[i].rows);
    free(r);
}

outbox_relay *outbox_relay_start(const struct outbox_relay_config *cfg)
{
    char err[UTIL_ERR_MAX];
    char url_log[OUTBOX_URL_TEXT];
    char name[OUTBOX_NAME_TEXT];
    outbox_relay *r;
    int rc;

    if (!cfg || !cfg->database_url || !cfg->amqp_url || !cfg->service) {
        log_error(NULL,
                  "outbox relay: database_url, amqp_url and service "
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
    r->topology = cfg->topology;
    r->gc = cfg->gc;
    snprintf(name, sizeof(name), "%s outbox relay", cfg->service);
    r->connection_name = xstrdup(name);
    r->batch_size = cfg->batch_size > 0 ? cfg->batch_size : OUTBOX_DEFAULT_BATCH;
    if (r->batch_size > OUTBOX_MAX_BATCH)
        r->batch_size = OUTBOX_MAX_BATCH;
    r->poll_interval_ms =
        cfg->poll_interval_ms > 0 ? cfg->poll_interval_ms : OUTBOX_DEFAULT_POLL_MS;
    for (int i = 0; i < OUTBOX_MAX_IN_FLIGHT; i++)
        r->batches[i].rows = xcalloc((size_t)r->batch_size, sizeof(*r->batches[i].rows));
    r->want_load = 1;

    /* Opened here, not in the thread, so a wrong URL fails start-up. */
    rc = open_database(r, 0, err, sizeof(err));
    if (rc != DB_OK) {
        log_error(NULL, "outbox relay: cannot open database: %s", err);
        relay_free(r);
        return NULL;
    }

    atomic_init(&r->connected, 0);

    metrics_describe(METRIC_PUBLISHED, "counter", "Outbox events confirmed by the broker.");
    metrics_describe(METRIC_PENDING, "gauge", "Outbox events not yet confirmed by the broker.");

    if (worker_start(&r->w, relay_main, r) != 0) {
        log_error(NULL, "outbox relay: cannot start its thread");
        db_close(r->db);
        relay_free(r);
        return NULL;
    }
    log_info(NULL, "outbox relay started: broker %s, batch %d, poll %d ms", r->amqp_url_log,
             r->batch_size, r->poll_interval_ms);
    return r;
}

void outbox_relay_wake(outbox_relay *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->w.lock);
    r->wake_pending = 1;
    worker_signal(&r->w);
    pthread_mutex_unlock(&r->w.lock);
}

int outbox_relay_connected(outbox_relay *r)
{
    return r ? atomic_load(&r->connected) : 0;
}

void outbox_relay_stop(outbox_relay *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->w.lock);
    r->stop_ns = util_monotonic_ns(); /* read by finish_in_flight() */
    pthread_mutex_unlock(&r->w.lock);
    worker_stop(&r->w);
    log_info(NULL, "outbox relay stopped");
    relay_free(r);
}
