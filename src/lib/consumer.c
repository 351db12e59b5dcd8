#include "consumer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "deadletter.h"
#include "inbox.h"
#include "log.h"
#include "metrics.h"
#include "trace.h"
#include "util.h"
#include "worker.h"

#define HEARTBEAT_S 30
#define FIRST_WAIT_MS 500 /* how long an idle consumer waits per turn */
#define CONFIRM_TIMEOUT_MS 30000
/* Pause after a batch whose failed messages go back to their queue:
 * RETRY_BASE_MS doubled per attempt already made, at most RETRY_MAX_MS. */
#define RETRY_BASE_MS 100
#define RETRY_MAX_MS 5000

struct consumer {
    char *database_url, *amqp_url, *service, *queue_type, *dead_letter_queue;
    const struct mq_topology *topology;
    int prefetch, batch_size, max_attempts, stall_s;
    consumer_apply_fn apply;
    int (*begin)(db *conn, void *ctx);
    void (*committed)(void *ctx);
    void *ctx;

    struct worker w; /* the consumer's thread; its lock guards last_error */
    int started;
    atomic_int connected;

    /* Health, written by the thread, read by consumer_check(). */
    atomic_int failed_batches;          /* in a row; 0 after a commit */
    _Atomic int64_t unapplied_since_ms; /* oldest delivery not applied; 0: none */
    char last_error[UTIL_ERR_MAX];      /* under w.lock */

    /* Owned by the thread. */
    db *conn;
    mq *in;  /* consuming */
    mq *out; /* dead letters, confirm mode */
    struct mq_delivery *batch;
    struct consumer_result *results;
    int *outcomes;
    int64_t batch_received_ms; /* when the batch's first delivery came */
    int retry_pause_ms;        /* after a batch with retried messages */
};

static const char *const outcome_names[] = {"applied", "duplicate", "dead_lettered", "retried"};

/* The consumer's span of a delivery (trace.h): a child of the span the
 * message carries, or the start of a trace when it carries none or a bad
 * one; *parent is the message's span id, or "-". */
static void delivery_span(const struct mq_delivery *d, struct trace_context *span,
                          char parent[TRACE_SPAN_HEX + 1])
{
    if (trace_parse(d->traceparent, span) == 0) {
        memcpy(parent, span->span_id, TRACE_SPAN_HEX + 1);
        trace_child(span, span);
    } else {
        trace_start(span);
        util_strlcpy(parent, "-", TRACE_SPAN_HEX + 1);
    }
}

/* Sleeps up to ms, returning early when the consumer is being stopped. */
static void pause_ms(consumer *c, int ms)
{
    worker_sleep(&c->w, ms);
}

static void disconnect(consumer *c)
{
    if (c->in)
        mq_close(c->in);
    if (c->out)
        mq_close(c->out);
    c->in = c->out = NULL;
    atomic_store(&c->connected, 0);
}

static int connect_broker(consumer *c)
{
    char err[UTIL_ERR_MAX], name[128];

    snprintf(name, sizeof(name), "%s consumer", c->service);
    c->in = mq_open(c->amqp_url, name, HEARTBEAT_S, err, sizeof(err));
    if (!c->in)
        goto fail;
    snprintf(name, sizeof(name), "%s dead letters", c->service);
    c->out = mq_open(c->amqp_url, name, HEARTBEAT_S, err, sizeof(err));
    if (!c->out)
        goto fail;
    if (mq_declare_topology(c->in, c->topology, c->queue_type) != MQ_OK ||
        mq_declare_queue(c->in, c->dead_letter_queue, c->queue_type) != MQ_OK ||
        mq_qos(c->in, (uint16_t)c->prefetch) != MQ_OK || mq_confirm_select(c->out) != MQ_OK) {
        snprintf(err, sizeof(err), "declaring the topology failed");
        goto fail;
    }
    for (size_t i = 0; i < c->topology->queue_count; i++) {
        const char *queue = c->topology->queues[i].queue;
        if (mq_consume(c->in, queue) != MQ_OK) {
            snprintf(err, sizeof(err), "cannot consume queue %s", queue);
            goto fail;
        }
    }
    atomic_store(&c->connected, 1);
    log_info(NULL, "consumer connected; consuming with prefetch %d", c->prefetch);
    return 0;
fail:
    log_warn(NULL, "consumer cannot connect to the broker: %s", err);
    disconnect(c);
    return -1;
}

/* Takes up to batch_size deliveries: waits for the first, then drains
 * what has already arrived. Returns the count; *lost is set when the
 * connection broke. */
static int collect(consumer *c, int *lost)
{
    int n = 0;
    *lost = 0;
    while (n < c->batch_size) {
        int rc = mq_next_delivery(c->in, n == 0 ? FIRST_WAIT_MS : 0, &c->batch[n]);
        if (rc == MQ_OK) {
            if (n++ == 0)
                c->batch_received_ms = util_now_ms();
            continue;
        }
        if (rc != MQ_TIMEOUT)
            *lost = 1;
        break;
    }
    return n;
}

static void free_batch(consumer *c, int n)
{
    for (int i = 0; i < n; i++)
        mq_delivery_free(&c->batch[i]);
}

/* Publishes the batch's poison messages to the dead-letter queue, body
 * unchanged, with the reason and source queue in headers; waits for the
 * broker's confirms. */
static int dead_letter(consumer *c, int n)
{
    int published = 0;
    for (int i = 0; i < n; i++) {
        if (c->outcomes[i] != CONSUMER_POISON)
            continue;
        const struct mq_delivery *d = &c->batch[i];
        struct mq_header headers[] = {
            {"x-dead-letter-reason", c->results[i].reason},
            {"x-original-queue", d->queue ? d->queue : ""},
        };
        struct mq_message msg = {
            .exchange = "",
            .routing_key = c->dead_letter_queue,
            .body = d->body,
            .body_len = d->body_len,
            .message_id = d->message_id,
            .type = d->type,
            .app_id = c->service,
            .timestamp_s = d->timestamp_s,
            .headers = headers,
            .header_count = ARRAY_LEN(headers),
        };
        struct trace_context span;
        char parent[TRACE_SPAN_HEX + 1];
        delivery_span(d, &span, parent);
        log_warn(d->correlation_id,
                 "dead-lettering a message from queue %s: %s trace_id=%s span_id=%s parent_id=%s",
                 d->queue ? d->queue : "?", c->results[i].reason, span.trace_id, span.span_id,
                 parent);
        if (mq_publish(c->out, &msg) != MQ_OK)
            return -1;
        published++;
    }
    if (published && mq_wait_confirms(c->out, CONFIRM_TIMEOUT_MS) != MQ_OK)
        return -1;
    return 0;
}

/* One debug line per delivery of a committed batch, with its trace; the
 * rid is the writer's request id that the relay sent as correlation id. */
static void log_deliveries(consumer *c, int n)
{
    struct trace_context span;
    char parent[TRACE_SPAN_HEX + 1];

    if (!log_enabled(LOG_LVL_DEBUG))
        return;
    for (int i = 0; i < n; i++) {
        const struct mq_delivery *d = &c->batch[i];
        delivery_span(d, &span, parent);
        log_debug(d->correlation_id, "%s %s from %s: %s trace_id=%s span_id=%s parent_id=%s",
                  c->results[i].type, c->results[i].key, d->queue ? d->queue : "?",
                  outcome_names[c->outcomes[i]], span.trace_id, span.span_id, parent);
    }
}

static void record_metrics(consumer *c, int n)
{
    int64_t now = util_now_ms();
    char labels[128];

    for (int i = 0; i < n; i++) {
        const struct consumer_result *r = &c->results[i];
        snprintf(labels, sizeof(labels), "type=\"%s\",outcome=\"%s\"", r->type,
                 outcome_names[c->outcomes[i]]);
        metrics_counter_add("events_total", labels, 1);
        if (c->outcomes[i] == CONSUMER_APPLIED && r->occurred_at_ms > 0)
            metrics_observe("event_lag_seconds", NULL, (double)(now - r->occurred_at_ms) / 1e3);
    }
    metrics_gauge_set("consumer_batch_size", NULL, n);
}

/* Publishes the health gauges (each turn of the loop). */
static void update_health_metrics(consumer *c)
{
    int64_t since = atomic_load(&c->unapplied_since_ms);
    metrics_gauge_set("consumer_failed_batches", NULL, atomic_load(&c->failed_batches));
    metrics_gauge_set("consumer_oldest_unapplied_seconds", NULL,
                      since ? (util_now_ms() - since) / 1000 : 0);
}

/* Something of this batch was not applied: its oldest delivery is the
 * oldest waiting, unless an earlier one still is. */
static void note_unapplied(consumer *c)
{
    int64_t none = 0;
    atomic_compare_exchange_strong(&c->unapplied_since_ms, &none, c->batch_received_ms);
}

static void note_failed_batch(consumer *c, const char *why)
{
    atomic_fetch_add(&c->failed_batches, 1);
    note_unapplied(c);
    pthread_mutex_lock(&c->w.lock);
    util_strlcpy(c->last_error, why, sizeof(c->last_error));
    pthread_mutex_unlock(&c->w.lock);
}

/* The key of delivery i: apply()'s, else message_id, else a hash of the
 * body (FNV-1a, 64 bits), so that every message has one. */
static void fill_key(consumer *c, int i)
{
    struct consumer_result *r = &c->results[i];
    const struct mq_delivery *d = &c->batch[i];

    if (r->key[0])
        return;
    if (d->message_id && d->message_id[0]) {
        util_strlcpy(r->key, d->message_id, sizeof(r->key));
        return;
    }
    uint64_t h = 14695981039346656037ULL;
    const unsigned char *p = d->body;
    for (size_t k = 0; k < d->body_len; k++)
        h = (h ^ p[k]) * 1099511628211ULL;
    snprintf(r->key, sizeof(r->key), "body:%016llx", (unsigned long long)h);
}

static int is_transient(int rc)
{
    return rc == DB_BUSY || rc == DB_UNAVAILABLE;
}

/* Adds delivery i to the dead_letters table (same transaction). */
static int record_dead_letter(consumer *c, int i)
{
    const struct mq_delivery *d = &c->batch[i];
    struct deadletter_entry e = {
        .key = c->results[i].key,
        .queue = d->queue ? d->queue : "",
        .reason = c->results[i].reason,
        .body = d->body,
        .body_len = d->body_len,
        .message_id = d->message_id,
        .type = d->type,
        .correlation_id = d->correlation_id,
        .app_id = d->app_id,
        .timestamp_s = d->timestamp_s,
    };
    return deadletter_record(c->conn, &e);
}

/* What follows a successful apply() of delivery i: a message that may
 * have failed before forgets its attempts; a poison one is recorded. */
static int settle_outcome(consumer *c, int i, int outcome)
{
    int rc = DB_OK;

    c->outcomes[i] = outcome;
    fill_key(c, i);
    if (c->batch[i].redelivered)
        rc = inbox_attempts_clear(c->conn, c->results[i].key);
    if (rc == DB_OK && outcome == CONSUMER_POISON)
        rc = record_dead_letter(c, i);
    return rc;
}

/* Delivery i failed with error: counts the attempt and decides between
 * a retry and a dead letter. The savepoint has been rolled back. */
static int count_failure(consumer *c, int i, const char *error)
{
    struct consumer_result *r = &c->results[i];
    const struct mq_delivery *d = &c->batch[i];
    int attempts = 0;

    fill_key(c, i);
    int rc = inbox_attempt_failed(c->conn, r->key, d->queue ? d->queue : "", error, &attempts);
    if (rc != DB_OK)
        return rc;
    if (attempts < c->max_attempts) {
        struct trace_context span;
        char parent[TRACE_SPAN_HEX + 1];
        delivery_span(d, &span, parent);
        log_warn(d->correlation_id,
                 "a message from queue %s failed (attempt %d of %d), retrying later: %s"
                 " trace_id=%s span_id=%s parent_id=%s",
                 d->queue ? d->queue : "?", attempts, c->max_attempts, error, span.trace_id,
                 span.span_id, parent);
        c->outcomes[i] = CONSUMER_RETRY;
        int pause = (int)worker_backoff_ms(attempts - 1, RETRY_BASE_MS, RETRY_MAX_MS);
        if (pause > c->retry_pause_ms)
            c->retry_pause_ms = pause;
        return DB_OK;
    }
    snprintf(r->reason, sizeof(r->reason), "failed %d times in the database: %s", attempts, error);
    c->outcomes[i] = CONSUMER_POISON;
    rc = inbox_attempts_clear(c->conn, r->key);
    return rc == DB_OK ? record_dead_letter(c, i) : rc;
}

static void reset_result(consumer *c, int i)
{
    memset(&c->results[i], 0, sizeof(c->results[i]));
    util_strlcpy(c->results[i].type, "unknown", sizeof(c->results[i].type));
}

/* Applies deliveries 0..n-1 in the open transaction. isolated: each in
 * its own savepoint, a failing one counted instead of failing the batch.
 * Returns DB_OK, or the error that fails the batch (*permanent set when
 * it came from apply() and was not transient: worth an isolated run). */
static int apply_all(consumer *c, int n, int isolated, int *permanent)
{
    char error[UTIL_ERR_MAX];
    int rc = DB_OK;

    *permanent = 0;
    for (int i = 0; i < n && rc == DB_OK; i++) {
        reset_result(c, i);
        if (isolated && (rc = db_exec(c->conn, "SAVEPOINT delivery")) != DB_OK)
            break;
        db_clear_error(c->conn);
        int outcome = c->apply(c->conn, &c->batch[i], &c->results[i], c->ctx);
        /* A statement that could not even be prepared comes back as a bare
         * DB_ERROR; the connection knows whether it was a lock timeout or a
         * lost server, which must delay the batch, not count an attempt. */
        if (outcome == DB_ERROR && is_transient(db_last_error(c->conn)))
            outcome = db_last_error(c->conn);
        if (outcome >= 0) {
            rc = settle_outcome(c, i, outcome);
            if (rc == DB_OK && isolated)
                rc = db_exec(c->conn, "RELEASE SAVEPOINT delivery");
            continue;
        }
        if (is_transient(outcome) || !isolated) {
            *permanent = !is_transient(outcome);
            rc = outcome;
            break;
        }
        util_strlcpy(error, db_errmsg(c->conn), sizeof(error));
        if ((rc = db_exec(c->conn, "ROLLBACK TO SAVEPOINT delivery")) == DB_OK &&
            (rc = db_exec(c->conn, "RELEASE SAVEPOINT delivery")) == DB_OK)
            rc = count_failure(c, i, error);
    }
    return rc;
}

/* Rolls the batch back and returns every delivery to its queue. */
static void fail_batch(consumer *c, int n, int rc)
{
    /* /readyz says what kind of failure, not the database's own text
     * (which may name hosts or files); the log has the whole of it. */
    const char *kind = rc == DB_BUSY          ? "database busy"
                       : rc == DB_UNAVAILABLE ? "database unavailable"
                                              : "database error";

    log_warn(NULL, "applying a batch of %d failed (%s); it will be redelivered", n,
             db_errmsg(c->conn));
    db_rollback(c->conn);
    mq_nack(c->in, c->batch[n - 1].tag, 1, 1);
    note_failed_batch(c, kind);
    if (rc == DB_UNAVAILABLE) {
        db_close(c->conn);
        c->conn = NULL;
    }
}

/* Acks the batch, but sends the messages to retry back to their queue
 * first (so the multiple ack does not cover them). */
static int ack_batch(consumer *c, int n)
{
    uint64_t last_done = 0;

    for (int i = 0; i < n; i++) {
        if (c->outcomes[i] != CONSUMER_RETRY)
            last_done = c->batch[i].tag;
        else if (mq_nack(c->in, c->batch[i].tag, 0, 1) != MQ_OK)
            return -1;
    }
    if (last_done && mq_ack(c->in, last_done, 1) != MQ_OK)
        return -1;
    return 0;
}

/* Opens the batch's transaction and runs the begin callback in it. */
static int begin_batch(consumer *c)
{
    int rc = db_begin(c->conn);
    if (rc == DB_OK && c->begin)
        rc = c->begin(c->conn, c->ctx);
    return rc;
}

/* Applies a batch in one transaction; returns 0 when it is acked. */
static int process(consumer *c, int n)
{
    int permanent = 0;
    int rc = begin_batch(c);

    c->retry_pause_ms = 0;
    if (rc == DB_OK)
        rc = apply_all(c, n, 0, &permanent);
    if (rc != DB_OK && permanent) {
        /* One message (at least) fails by itself: apply them one by one
         * so that it does not take the others down with it. */
        log_info(NULL, "a batch of %d failed (%s); applying its messages one by one", n,
                 db_errmsg(c->conn));
        db_rollback(c->conn);
        rc = begin_batch(c);
        if (rc == DB_OK)
            rc = apply_all(c, n, 1, &permanent);
    }
    if (rc == DB_OK)
        rc = db_commit(c->conn);
    if (rc != DB_OK) {
        fail_batch(c, n, rc);
        return -1;
    }
    if (c->committed)
        c->committed(c->ctx);
    if (dead_letter(c, n) != 0) {
        log_warn(NULL, "dead-lettering failed; the batch will be redelivered");
        mq_nack(c->in, c->batch[n - 1].tag, 1, 1);
        note_failed_batch(c, "publishing to the dead-letter queue failed");
        return -1;
    }
    if (ack_batch(c, n) != 0)
        return -1; /* connection lost: the broker redelivers, the inbox dedupes */
    atomic_store(&c->failed_batches, 0);
    if (c->retry_pause_ms)
        note_unapplied(c);
    else
        atomic_store(&c->unapplied_since_ms, 0);
    record_metrics(c, n);
    log_deliveries(c, n);
    return 0;
}

static void *run(void *arg)
{
    consumer *c = arg;
    int attempt = 0;
    char err[UTIL_ERR_MAX];

    while (!worker_stopping(&c->w)) {
        if (c->conn && !db_alive(c->conn)) {
            db_close(c->conn);
            c->conn = NULL;
        }
        if (!c->conn && db_open(c->database_url, &c->conn, err, sizeof(err)) != DB_OK) {
            log_warn(NULL, "consumer cannot open its database: %s", err);
            c->conn = NULL;
            pause_ms(c, mq_backoff_ms(attempt++));
            continue;
        }
        if (!c->in && connect_broker(c) != 0) {
            pause_ms(c, mq_backoff_ms(attempt++));
            continue;
        }
        int lost = 0;
        int n = collect(c, &lost);
        int failed = n > 0 ? process(c, n) : 0;
        free_batch(c, n);
        update_health_metrics(c);
        if (!failed && c->retry_pause_ms) {
            pause_ms(c, c->retry_pause_ms);
            c->retry_pause_ms = 0;
        }
        if (!lost && mq_poll(c->out) != MQ_OK)
            lost = 1;
        if (lost || failed) {
            if (lost) {
                log_warn(NULL, "consumer lost its broker connection; reconnecting");
                disconnect(c);
            }
            pause_ms(c, mq_backoff_ms(attempt++));
        } else {
            attempt = 0;
        }
    }
    disconnect(c);
    if (c->conn)
        db_close(c->conn);
    c->conn = NULL;
    return NULL;
}

consumer *consumer_start(const struct consumer_config *cfg)
{
    consumer *c = xcalloc(1, sizeof(*c));

    c->database_url = xstrdup(cfg->database_url);
    c->amqp_url = xstrdup(cfg->amqp_url);
    c->service = xstrdup(cfg->service);
    c->queue_type = xstrdup(cfg->queue_type);
    c->topology = cfg->topology;
    c->dead_letter_queue = xstrdup(cfg->dead_letter_queue);
    c->prefetch = cfg->prefetch;
    c->batch_size = cfg->batch_size < cfg->prefetch ? cfg->batch_size : cfg->prefetch;
    c->max_attempts = cfg->max_attempts > 0 ? cfg->max_attempts : 1;
    c->stall_s = cfg->stall_s;
    c->apply = cfg->apply;
    c->begin = cfg->begin;
    c->committed = cfg->committed;
    c->ctx = cfg->ctx;
    c->batch = xcalloc((size_t)c->batch_size, sizeof(*c->batch));
    c->results = xcalloc((size_t)c->batch_size, sizeof(*c->results));
    c->outcomes = xcalloc((size_t)c->batch_size, sizeof(*c->outcomes));
    metrics_describe("events_total", "counter", "Events consumed, by type and outcome.");
    metrics_describe("consumer_batch_size", "gauge", "Deliveries in the last applied batch.");
    metrics_describe("event_lag_seconds", "histogram",
                     "Time from an event's occurred_at to its application.");
    metrics_describe("consumer_failed_batches", "gauge",
                     "Batches in a row whose transaction failed (0 after one commits).");
    metrics_describe("consumer_oldest_unapplied_seconds", "gauge",
                     "Age of the oldest delivery received but not applied yet.");
    if (worker_start(&c->w, run, c) != 0) {
        log_error(NULL, "cannot start the consumer thread");
        consumer_stop(c);
        return NULL;
    }
    c->started = 1;
    return c;
}

int consumer_connected(consumer *c)
{
    return c && atomic_load(&c->connected);
}

int consumer_check(consumer *c, char *problem, size_t len)
{
    if (!c)
        return 1;
    int failed = atomic_load(&c->failed_batches);
    int64_t since = atomic_load(&c->unapplied_since_ms);
    int64_t age_s = since ? (util_now_ms() - since) / 1000 : 0;
    if (failed == 0 || age_s < c->stall_s)
        return 1;
    pthread_mutex_lock(&c->w.lock);
    snprintf(problem, len, "failing: %d batches in a row, oldest delivery waiting %lld s (%s)",
             failed, (long long)age_s, c->last_error);
    pthread_mutex_unlock(&c->w.lock);
    return 0;
}

void consumer_stop(consumer *c)
{
    if (!c)
        return;
    if (c->started)
        worker_stop(&c->w);
    free(c->dead_letter_queue);
    free(c->database_url);
    free(c->amqp_url);
    free(c->service);
    free(c->queue_type);
    free(c->batch);
    free(c->results);
    free(c->outcomes);
    free(c);
}
