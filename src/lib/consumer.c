#include "consumer.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "util.h"

#define HEARTBEAT_S 30
#define FIRST_WAIT_MS 500      /* how long an idle consumer waits per turn */
#define CONFIRM_TIMEOUT_MS 30000
#define MAX_QUEUES 8

struct consumer {
    char *database_url, *amqp_url, *service, *queue_type;
    char *queues[MAX_QUEUES + 1];
    int prefetch, batch_size;
    consumer_apply_fn apply;
    void (*committed)(void *ctx);
    void *ctx;

    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_int stopping;
    atomic_int connected;

    /* Owned by the thread. */
    db *conn;
    mq *in;  /* consuming */
    mq *out; /* dead letters, confirm mode */
    struct mq_delivery *batch;
    struct consumer_result *results;
    int *outcomes;
};

static const char *const outcome_names[] = {"applied", "duplicate", "dead_lettered"};

/* Sleeps up to ms, returning early when the consumer is being stopped. */
static void pause_ms(consumer *c, int ms)
{
    int64_t deadline = util_monotonic_ns() + (int64_t)ms * 1000000;
    pthread_mutex_lock(&c->mu);
    while (!atomic_load(&c->stopping))
        if (util_cond_wait_until(&c->cv, &c->mu, deadline) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&c->mu);
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
    char err[256], name[128];

    snprintf(name, sizeof(name), "%s consumer", c->service);
    c->in = mq_open(c->amqp_url, name, HEARTBEAT_S, err, sizeof(err));
    if (!c->in)
        goto fail;
    snprintf(name, sizeof(name), "%s dead letters", c->service);
    c->out = mq_open(c->amqp_url, name, HEARTBEAT_S, err, sizeof(err));
    if (!c->out)
        goto fail;
    if (mq_declare_topology(c->in, c->queue_type) != MQ_OK ||
        mq_declare_queue(c->in, MQ_DEAD_LETTER_QUEUE, c->queue_type) != MQ_OK ||
        mq_qos(c->in, (uint16_t)c->prefetch) != MQ_OK || mq_confirm_select(c->out) != MQ_OK) {
        snprintf(err, sizeof(err), "declaring the topology failed");
        goto fail;
    }
    for (int i = 0; c->queues[i]; i++) {
        if (mq_consume(c->in, c->queues[i]) != MQ_OK) {
            snprintf(err, sizeof(err), "cannot consume queue %s", c->queues[i]);
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
            n++;
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
            .routing_key = MQ_DEAD_LETTER_QUEUE,
            .body = d->body,
            .body_len = d->body_len,
            .message_id = d->message_id,
            .type = d->type,
            .app_id = c->service,
            .timestamp_s = d->timestamp_s,
            .headers = headers,
            .header_count = ARRAY_LEN(headers),
        };
        log_warn(NULL, "dead-lettering a message from queue %s: %s", d->queue ? d->queue : "?",
                 c->results[i].reason);
        if (mq_publish(c->out, &msg) != MQ_OK)
            return -1;
        published++;
    }
    if (published && mq_wait_confirms(c->out, CONFIRM_TIMEOUT_MS) != MQ_OK)
        return -1;
    return 0;
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

/* Applies a batch in one transaction; returns 0 when it is acked. */
static int process(consumer *c, int n)
{
    int rc = db_begin(c->conn);
    for (int i = 0; i < n && rc == DB_OK; i++) {
        memset(&c->results[i], 0, sizeof(c->results[i]));
        util_strlcpy(c->results[i].type, "unknown", sizeof(c->results[i].type));
        int outcome = c->apply(c->conn, &c->batch[i], &c->results[i], c->ctx);
        if (outcome < 0)
            rc = outcome;
        else
            c->outcomes[i] = outcome;
    }
    if (rc == DB_OK)
        rc = db_commit(c->conn);
    if (rc != DB_OK) {
        log_warn(NULL, "applying a batch of %d failed (%s); it will be redelivered", n,
                 db_errmsg(c->conn));
        db_rollback(c->conn);
        mq_nack(c->in, c->batch[n - 1].tag, 1, 1);
        if (rc == DB_UNAVAILABLE) {
            db_close(c->conn);
            c->conn = NULL;
        }
        return -1;
    }
    if (c->committed)
        c->committed(c->ctx);
    if (dead_letter(c, n) != 0) {
        log_warn(NULL, "dead-lettering failed; the batch will be redelivered");
        mq_nack(c->in, c->batch[n - 1].tag, 1, 1);
        return -1;
    }
    if (mq_ack(c->in, c->batch[n - 1].tag, 1) != MQ_OK)
        return -1; /* connection lost: the broker redelivers, the inbox dedupes */
    record_metrics(c, n);
    return 0;
}

static void *run(void *arg)
{
    consumer *c = arg;
    int attempt = 0;
    char err[256];

    while (!atomic_load(&c->stopping)) {
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
    int q = 0;

    c->database_url = xstrdup(cfg->database_url);
    c->amqp_url = xstrdup(cfg->amqp_url);
    c->service = xstrdup(cfg->service);
    c->queue_type = xstrdup(cfg->queue_type);
    for (; cfg->queues[q] && q < MAX_QUEUES; q++)
        c->queues[q] = xstrdup(cfg->queues[q]);
    c->prefetch = cfg->prefetch;
    c->batch_size = cfg->batch_size < cfg->prefetch ? cfg->batch_size : cfg->prefetch;
    c->apply = cfg->apply;
    c->committed = cfg->committed;
    c->ctx = cfg->ctx;
    c->batch = xcalloc((size_t)c->batch_size, sizeof(*c->batch));
    c->results = xcalloc((size_t)c->batch_size, sizeof(*c->results));
    c->outcomes = xcalloc((size_t)c->batch_size, sizeof(*c->outcomes));
    pthread_mutex_init(&c->mu, NULL);
    util_cond_init_monotonic(&c->cv);
    metrics_describe("events_total", "counter", "Events consumed, by type and outcome.");
    metrics_describe("consumer_batch_size", "gauge", "Deliveries in the last applied batch.");
    metrics_describe("event_lag_seconds", "histogram",
                     "Time from an event's occurred_at to its application.");
    if (pthread_create(&c->thread, NULL, run, c) != 0) {
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

void consumer_stop(consumer *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    atomic_store(&c->stopping, 1);
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (c->started)
        pthread_join(c->thread, NULL);
    for (int q = 0; c->queues[q]; q++)
        free(c->queues[q]);
    free(c->database_url);
    free(c->amqp_url);
    free(c->service);
    free(c->queue_type);
    free(c->batch);
    free(c->results);
    free(c->outcomes);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}
