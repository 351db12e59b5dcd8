/*
 * Unit tests of the outbox and its relay, on a temporary SQLite file and
 * the real RabbitMQ named by TEST_AMQP_URL (the tests fail without it).
 *
 * Each run uses its own event types ("<run>.created") and its own queue
 * bound to cqrs.events with "<run>.#", so runs never see each other's
 * events; the group teardown deletes the queue.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "contract/contract.h"
#include "db.h"
#include "log.h"
#include "metrics.h"
#include "mq.h"
#include "outbox.h"
#include "testutil.h"
#include "util.h"

#define ERR_MAX 512
#define TEXT_MAX 256
#define HEARTBEAT_S 10
#define DELIVERY_TIMEOUT_MS 5000
#define WAIT_MARKED_MS 5000
/* Bound on waiting for the relay to reach a state (a log line, a gauge
 * value), and the pause between looks. */
#define WAIT_STATE_MS 10000
#define POLL_MS 20
/* Connection attempts the broker-down test waits for: after the sixth
 * failure the relay backs off 2.56..3.2 s, longer than STOP_MAX_MS, so a
 * stop that waited the backoff out would show. */
#define DOWN_ATTEMPTS 6
#define LOG_TEXT_MAX 65536
/* Value of the pending gauge that the relay never sets. */
#define PENDING_UNSET (-1)
/* Stopping must not wait out a backoff (up to 5 s) or a poll interval. */
#define STOP_MAX_MS 1500
#define OCCURRED_AT 1743675300000LL /* 2025-04-03T10:15:00.000Z */
#define MAX_EVENTS 16
#define SECRET "s3cret-pw-91b2"

static const char *amqp_url;
static char run_prefix[64];
static char type_created[TEXT_MAX]; /* routed to our queue */
static char type_unbound[TEXT_MAX]; /* routed nowhere until bound */
static char queue[TEXT_MAX];

struct fixture {
    char dir[64];
    char url[TEXT_MAX];
    db *db;
    mq *sub;
};

static int group_setup(void **state)
{
    char err[ERR_MAX];
    char key[TEXT_MAX];
    mq *m;
    int rc;

    (void)state;
    log_init("test_outbox", LOG_LVL_INFO);
    amqp_url = getenv("TEST_AMQP_URL");
    if (!amqp_url || !amqp_url[0]) {
        fprintf(stderr,
                "test_outbox: TEST_AMQP_URL is not set. These tests need a "
                "real RabbitMQ: start one (scripts/rabbitmq.sh start) and set "
                "TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:PORT/\n");
        return -1;
    }
    snprintf(run_prefix, sizeof(run_prefix), "test_outbox-%ld-%lld", (long)getpid(),
             (long long)util_now_ms());
    snprintf(type_created, sizeof(type_created), "%s.created", run_prefix);
    snprintf(type_unbound, sizeof(type_unbound), "%s-unbound.created", run_prefix);
    snprintf(queue, sizeof(queue), "%s.events", run_prefix);

    m = mq_open(amqp_url, "test_outbox-setup", HEARTBEAT_S, err, sizeof(err));
    if (!m) {
        fprintf(stderr, "test_outbox: cannot connect: %s\n", err);
        return -1;
    }
    snprintf(key, sizeof(key), "%s.#", run_prefix);
    rc = mq_declare_topology(m, &contract_topology, "classic");
    if (rc == MQ_OK)
        rc = mq_declare_queue(m, queue, "classic");
    if (rc == MQ_OK)
        rc = mq_bind_queue(m, queue, contract_topology.exchange, key);
    if (rc != MQ_OK)
        fprintf(stderr, "test_outbox: setup: %s\n", mq_last_error(m));
    mq_close(m);
    return rc == MQ_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    char err[ERR_MAX];
    mq *m;
    int rc;

    (void)state;
    if (!amqp_url || !queue[0])
        return 0;
    m = mq_open(amqp_url, "test_outbox-cleanup", HEARTBEAT_S, err, sizeof(err));
    if (!m) {
        fprintf(stderr, "test_outbox: cleanup cannot connect: %s\n", err);
        return -1;
    }
    rc = mq_delete_queue(m, queue);
    mq_close(m);
    return rc == MQ_OK ? 0 : -1;
}

static int setup(void **state)
{
    char err[ERR_MAX];
    struct fixture *f = xcalloc(1, sizeof(*f));

    if (testutil_mkdtemp(f->dir, sizeof(f->dir), "test_outbox") != 0)
        goto fail;
    snprintf(f->url, sizeof(f->url), "sqlite:%s/outbox.db", f->dir);
    if (db_open(f->url, &f->db, err, sizeof(err)) != DB_OK) {
        fprintf(stderr, "db_open: %s\n", err);
        goto fail;
    }
    if (db_exec(f->db, outbox_schema_sqlite) != DB_OK ||
        db_exec(f->db, outbox_trace_schema) != DB_OK)
        goto fail;
    f->sub = mq_open(amqp_url, "test_outbox-consumer", HEARTBEAT_S, err, sizeof(err));
    if (!f->sub || mq_qos(f->sub, 100) != MQ_OK || mq_consume(f->sub, queue) != MQ_OK)
        goto fail;
    *state = f;
    return 0;

fail:
    if (f->sub)
        mq_close(f->sub);
    if (f->db)
        db_close(f->db);
    free(f);
    return -1;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    struct mq_delivery d;
    int rc;

    /* Leave the shared queue empty for the next test. */
    while (mq_next_delivery(f->sub, 0, &d) == MQ_OK) {
        mq_ack(f->sub, d.tag, 0);
        mq_delivery_free(&d);
    }
    mq_close(f->sub);
    db_close(f->db);
    rc = testutil_rmtree(f->dir);
    free(f);
    return rc;
}

static void append(db *conn, const char *type, const char *data, const char *correlation_id,
                   int64_t occurred_at)
{
    struct outbox_event ev = {
        .type = type,
        .data_json = data,
        .data_len = strlen(data),
        .correlation_id = correlation_id,
        .occurred_at_ms = occurred_at,
    };
    assert_int_equal(outbox_append(conn, "test-service", &ev), DB_OK);
}

struct stored {
    char event_id[64];
    char body[TEXT_MAX * 2];
    char type[TEXT_MAX];
    int published;
};

/* Reads every outbox row in seq order. */
static size_t read_rows(db *conn, struct stored *rows, size_t max)
{
    db_stmt *st = db_prepare(conn,
                             "SELECT event_id, body, type, published_at"
                             " FROM outbox ORDER BY seq");
    size_t n = 0;
    int rc;

    assert_non_null(st);
    while ((rc = db_step(st)) == DB_ROW) {
        assert_true(n < max);
        util_strlcpy(rows[n].event_id, db_col_text(st, 0), sizeof(rows[n].event_id));
        util_strlcpy(rows[n].body, db_col_text(st, 1), sizeof(rows[n].body));
        util_strlcpy(rows[n].type, db_col_text(st, 2), sizeof(rows[n].type));
        rows[n].published = !db_col_is_null(st, 3);
        n++;
    }
    db_stmt_reset(st);
    assert_int_equal(rc, DB_DONE);
    return n;
}

static int64_t query_int(db *conn, const char *sql)
{
    db_stmt *st = db_prepare(conn, sql);
    int64_t v;

    assert_non_null(st);
    assert_int_equal(db_step(st), DB_ROW);
    v = db_col_int64(st, 0);
    db_stmt_reset(st);
    return v;
}

static size_t count_published(db *conn)
{
    struct stored rows[MAX_EVENTS];
    size_t n = read_rows(conn, rows, MAX_EVENTS), published = 0;
    for (size_t i = 0; i < n; i++)
        published += (size_t)rows[i].published;
    return published;
}

static void wait_published(db *conn, size_t want)
{
    int64_t deadline = util_monotonic_ns() + WAIT_MARKED_MS * 1000000LL;
    while (count_published(conn) < want && util_monotonic_ns() < deadline)
        usleep(20000);
    assert_int_equal(count_published(conn), want);
}

static outbox_relay *start_relay(struct fixture *f, const char *url, int batch_size, int poll_ms)
{
    struct outbox_relay_config cfg = {
        .topology = &contract_topology,
        .database_url = f->url,
        .amqp_url = url,
        .service = "test-service",
        .queue_type = "classic",
        .batch_size = batch_size,
        .poll_interval_ms = poll_ms,
    };
    outbox_relay *r = outbox_relay_start(&cfg);
    assert_non_null(r);
    return r;
}

static void stop_relay_promptly(outbox_relay *r)
{
    int64_t start = util_monotonic_ns();
    outbox_relay_stop(r);
    assert_true(util_monotonic_ns() - start < STOP_MAX_MS * 1000000LL);
}

/* Takes the next delivery and checks it is exactly the stored row. */
static void expect_delivery(struct fixture *f, const struct stored *row, const char *correlation_id)
{
    struct mq_delivery d;

    assert_int_equal(mq_next_delivery(f->sub, DELIVERY_TIMEOUT_MS, &d), MQ_OK);
    assert_string_equal(d.message_id, row->event_id);
    assert_string_equal(d.type, row->type);
    assert_string_equal(d.routing_key, row->type);
    assert_string_equal(d.app_id, "test-service");
    assert_string_equal(d.content_type, "application/json");
    assert_int_equal(d.delivery_mode, 2);
    assert_int_equal(d.timestamp_s, OCCURRED_AT / 1000);
    if (correlation_id)
        assert_string_equal(d.correlation_id, correlation_id);
    else
        assert_null(d.correlation_id);
    assert_int_equal(d.body_len, strlen(row->body));
    assert_string_equal((char *)d.body, row->body);
    assert_int_equal(mq_ack(f->sub, d.tag, 0), MQ_OK);
    mq_delivery_free(&d);
}

/* Publishes a marker straight into our queue (not through the relay) and
 * checks it is the next delivery: whatever the relay must not have sent
 * would have been queued before it. */
static void expect_only_marker(struct fixture *f)
{
    char err[ERR_MAX];
    char id[TEXT_MAX];
    struct mq_delivery d;
    mq *m;

    snprintf(id, sizeof(id), "%s-marker-%lld", run_prefix, (long long)util_monotonic_ns());
    m = mq_open(amqp_url, "test_outbox-marker", HEARTBEAT_S, err, sizeof(err));
    assert_non_null(m);
    assert_int_equal(mq_confirm_select(m), MQ_OK);
    assert_int_equal(mq_publish(m, &(struct mq_message){.exchange = "",
                                                        .routing_key = queue,
                                                        .body = "{}",
                                                        .body_len = 2,
                                                        .message_id = id}),
                     MQ_OK);
    assert_int_equal(mq_wait_confirms(m, DELIVERY_TIMEOUT_MS), MQ_OK);
    mq_close(m);
    assert_int_equal(mq_next_delivery(f->sub, DELIVERY_TIMEOUT_MS, &d), MQ_OK);
    if (!d.message_id || strcmp(d.message_id, id) != 0)
        fprintf(stderr, "unexpected delivery before the marker: %s\n", (char *)d.body);
    assert_non_null(d.message_id);
    assert_string_equal(d.message_id, id);
    assert_int_equal(mq_ack(f->sub, d.tag, 0), MQ_OK);
    mq_delivery_free(&d);
}

/* The outbox_pending gauge as /metrics shows it. */
static int64_t pending_gauge(void)
{
    static const char name[] = "\noutbox_pending ";
    size_t len;
    char *text = metrics_render(&len);
    const char *at = strstr(text, name);
    int64_t v;

    assert_non_null(at);
    v = strtoll(at + strlen(name), NULL, 10);
    free(text);
    return v;
}

/* stderr sent to a file of the test's directory while the relay logs. */
struct capture {
    int fd;
    int saved;
};

static void capture_start(struct fixture *f, struct capture *c)
{
    char path[TEXT_MAX + 16];

    snprintf(path, sizeof(path), "%s/stderr.log", f->dir);
    c->fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0600);
    assert_true(c->fd >= 0);
    c->saved = dup(STDERR_FILENO);
    assert_true(c->saved >= 0);
    assert_true(dup2(c->fd, STDERR_FILENO) >= 0);
}

/* What was logged so far, NUL-terminated in buf. */
static const char *capture_text(struct capture *c, char *buf, size_t size)
{
    ssize_t len = pread(c->fd, buf, size - 1, 0);

    assert_true(len >= 0);
    buf[len] = '\0';
    return buf;
}

static int count_lines_with(const char *text, const char *needle)
{
    int n = 0;

    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Waits until at least n log lines hold needle. */
static void wait_logged(struct capture *c, const char *needle, int n)
{
    static char text[LOG_TEXT_MAX];
    int64_t deadline = util_monotonic_ns() + WAIT_STATE_MS * 1000000LL;

    while (count_lines_with(capture_text(c, text, sizeof(text)), needle) < n &&
           util_monotonic_ns() < deadline)
        usleep(POLL_MS * 1000);
    assert_true(count_lines_with(capture_text(c, text, sizeof(text)), needle) >= n);
}

static void capture_stop(struct capture *c)
{
    dup2(c->saved, STDERR_FILENO);
    close(c->saved);
}

/* ---- schema and append ---- */

static void test_schema(void **state)
{
    struct fixture *f = *state;

    /* Idempotent, so running it again at start-up is harmless. */
    assert_int_equal(db_exec(f->db, outbox_schema_sqlite), DB_OK);
    assert_non_null(strstr(outbox_schema_postgres, "BIGSERIAL"));
    assert_non_null(strstr(outbox_schema_postgres, "published_at BIGINT"));
    assert_non_null(strstr(outbox_schema_sqlite, "WHERE published_at IS NULL"));
}

static void test_append_writes_envelope(void **state)
{
    struct fixture *f = *state;
    struct stored rows[MAX_EVENTS];
    char want[TEXT_MAX * 2];
    struct outbox_event ev = {
        .type = "order.created",
        .data_json = "{\"id\":1,\"amount\":50.00}",
        .data_len = 0, /* NUL-terminated */
        .correlation_id = "req-7",
        .occurred_at_ms = OCCURRED_AT,
    };
    db_stmt *st;

    assert_int_equal(db_begin(f->db), DB_OK);
    assert_int_equal(outbox_append(f->db, "order-service", &ev), DB_OK);
    ev.correlation_id = NULL;
    assert_int_equal(outbox_append(f->db, "order-service", &ev), DB_OK);
    assert_int_equal(db_commit(f->db), DB_OK);

    assert_int_equal(read_rows(f->db, rows, MAX_EVENTS), 2);
    for (int i = 0; i < 2; i++) {
        const char *id = rows[i].event_id;
        assert_int_equal(strlen(id), 36);
        assert_int_equal(strspn(id, "0123456789abcdef-"), 36);
        assert_int_equal(id[14], '4'); /* version 4: random */
        snprintf(want, sizeof(want),
                 "{\"id\":\"%.36s\",\"type\":\"order.created\",\"version\":1,"
                 "\"source\":\"order-service\","
                 "\"occurred_at\":\"2025-04-03T10:15:00.000Z\","
                 "\"data\":{\"id\":1,\"amount\":50.00}}",
                 id);
        assert_string_equal(rows[i].body, want);
        assert_false(rows[i].published);
    }
    assert_string_not_equal(rows[0].event_id, rows[1].event_id);

    st = db_prepare(f->db,
                    "SELECT correlation_id, occurred_at FROM outbox"
                    " ORDER BY seq");
    assert_non_null(st);
    assert_int_equal(db_step(st), DB_ROW);
    assert_string_equal(db_col_text(st, 0), "req-7");
    assert_int_equal(db_col_int64(st, 1), OCCURRED_AT);
    assert_int_equal(db_step(st), DB_ROW);
    assert_true(db_col_is_null(st, 0));
    db_stmt_reset(st);

    ev.type = NULL;
    assert_int_equal(outbox_append(f->db, "order-service", &ev), DB_ERROR);
}

/* ---- the relay ---- */

static void test_relay_publishes_in_order(void **state)
{
    struct fixture *f = *state;
    struct stored rows[MAX_EVENTS];
    outbox_relay *r;
    size_t n;

    /* Committed: 3 events. Rolled back: 1. Committed: 2 more. */
    assert_int_equal(db_begin(f->db), DB_OK);
    append(f->db, type_created, "{\"n\":1}", "req-1", OCCURRED_AT);
    append(f->db, type_created, "{\"n\":2}", NULL, OCCURRED_AT);
    append(f->db, type_created, "{\"n\":3}", "req-1", OCCURRED_AT);
    assert_int_equal(db_commit(f->db), DB_OK);
    assert_int_equal(db_begin(f->db), DB_OK);
    append(f->db, type_created, "{\"rolled\":\"back\"}", "req-2", OCCURRED_AT);
    assert_int_equal(db_rollback(f->db), DB_OK);
    assert_int_equal(db_begin(f->db), DB_OK);
    append(f->db, type_created, "{\"n\":4}", "req-3", OCCURRED_AT);
    append(f->db, type_created, "{\"n\":5}", "req-3", OCCURRED_AT);
    assert_int_equal(db_commit(f->db), DB_OK);

    n = read_rows(f->db, rows, MAX_EVENTS);
    assert_int_equal(n, 5);

    /* Batches of two: the five go out as 2 + 2 + 1, in order. */
    r = start_relay(f, amqp_url, 2, 200);
    expect_delivery(f, &rows[0], "req-1");
    expect_delivery(f, &rows[1], NULL);
    expect_delivery(f, &rows[2], "req-1");
    expect_delivery(f, &rows[3], "req-3");
    expect_delivery(f, &rows[4], "req-3");
    wait_published(f->db, 5);
    assert_true(outbox_relay_connected(r));
    /* Nothing was sent twice: a later event, which the relay sends after
     * anything it still had to send, is the next delivery. */
    assert_int_equal(db_begin(f->db), DB_OK);
    append(f->db, type_created, "{\"n\":6}", "req-4", OCCURRED_AT);
    assert_int_equal(db_commit(f->db), DB_OK);
    outbox_relay_wake(r);
    assert_int_equal(read_rows(f->db, rows, MAX_EVENTS), 6);
    expect_delivery(f, &rows[5], "req-4");
    wait_published(f->db, 6);
    stop_relay_promptly(r);

    {
        size_t len;
        char *text = metrics_render(&len);
        assert_non_null(strstr(text, "events_published_total"));
        assert_non_null(strstr(text, "outbox_pending 0"));
        free(text);
    }
}

/* One event per batch, so the batches in flight wrap around the relay's
 * ring several times, and events committed while earlier ones are still
 * in flight: every event goes out once, in seq order, and all are marked. */
static void test_relay_pipelines_in_order(void **state)
{
    struct fixture *f = *state;
    struct stored rows[MAX_EVENTS];
    char data[TEXT_MAX];
    const int first = 7, total = MAX_EVENTS - 1;
    outbox_relay *r;

    for (int i = 0; i < first; i++) {
        snprintf(data, sizeof(data), "{\"n\":%d}", i);
        append(f->db, type_created, data, NULL, OCCURRED_AT);
    }
    r = start_relay(f, amqp_url, 1, 60000);
    for (int i = first; i < total; i++) {
        snprintf(data, sizeof(data), "{\"n\":%d}", i);
        append(f->db, type_created, data, NULL, OCCURRED_AT);
        outbox_relay_wake(r);
    }
    assert_int_equal(read_rows(f->db, rows, MAX_EVENTS), (size_t)total);
    for (int i = 0; i < total; i++)
        expect_delivery(f, &rows[i], NULL);
    wait_published(f->db, (size_t)total);

    /* Nothing was sent twice: the next delivery is a later event. */
    append(f->db, type_created, "{\"marker\":true}", NULL, OCCURRED_AT);
    outbox_relay_wake(r);
    assert_int_equal(read_rows(f->db, rows, MAX_EVENTS), (size_t)total + 1);
    expect_delivery(f, &rows[total], NULL);
    wait_published(f->db, (size_t)total + 1);
    stop_relay_promptly(r);
}

static void test_relay_wakes_at_once(void **state)
{
    struct fixture *f = *state;
    struct stored rows[MAX_EVENTS];
    int64_t start;
    outbox_relay *r;

    /* A poll interval far longer than the test: only a wake-up helps.
     * The relay sets the pending gauge to 0 when it finds the table
     * empty, right before it waits: once the gauge is back from a value
     * the relay never sets, an event committed now is not found by that
     * first look, and only the wake-up can make it go out at once. */
    metrics_gauge_set("outbox_pending", NULL, PENDING_UNSET);
    r = start_relay(f, amqp_url, 10, 60000);
    {
        int64_t deadline = util_monotonic_ns() + WAIT_STATE_MS * 1000000LL;
        while (pending_gauge() != 0 && util_monotonic_ns() < deadline)
            usleep(POLL_MS * 1000);
    }
    assert_int_equal(pending_gauge(), 0);
    assert_true(outbox_relay_connected(r));

    assert_int_equal(db_begin(f->db), DB_OK);
    append(f->db, type_created, "{\"woken\":true}", "req-9", OCCURRED_AT);
    assert_int_equal(db_commit(f->db), DB_OK);
    start = util_monotonic_ns();
    outbox_relay_wake(r);

    assert_int_equal(read_rows(f->db, rows, MAX_EVENTS), 1);
    expect_delivery(f, &rows[0], "req-9");
    assert_true(util_monotonic_ns() - start < 2000000000LL);
    wait_published(f->db, 1);
    stop_relay_promptly(r);
}

/* An event nobody is bound for comes back (mandatory): the relay keeps
 * it, and everything after it, until it can be routed, then sends them
 * in order. */
static void test_relay_retries_returned_events_in_order(void **state)
{
    struct fixture *f = *state;
    struct stored rows[MAX_EVENTS];
    char err[ERR_MAX];
    char not_confirmed[TEXT_MAX];
    struct capture log;
    outbox_relay *r;
    int copies = 0;
    mq *m;

    assert_int_equal(db_begin(f->db), DB_OK);
    append(f->db, type_unbound, "{\"first\":true}", NULL, OCCURRED_AT);
    append(f->db, type_created, "{\"second\":true}", NULL, OCCURRED_AT);
    assert_int_equal(db_commit(f->db), DB_OK);
    assert_int_equal(read_rows(f->db, rows, MAX_EVENTS), 2);

    /* The relay says it did not mark the batch once it has decided so;
     * only after that does "nothing marked" prove anything. */
    snprintf(not_confirmed, sizeof(not_confirmed), "batch from seq %lld not confirmed (rejected)",
             (long long)query_int(f->db, "SELECT min(seq) FROM outbox"));
    capture_start(f, &log);
    r = start_relay(f, amqp_url, 10, 200);
    wait_logged(&log, not_confirmed, 1);
    capture_stop(&log);
    close(log.fd);
    assert_int_equal(count_published(f->db), 0);

    m = mq_open(amqp_url, "test_outbox-bind", HEARTBEAT_S, err, sizeof(err));
    assert_non_null(m);
    assert_int_equal(mq_bind_queue(m, queue, contract_topology.exchange, type_unbound), MQ_OK);

    /* The first attempt sent both and the second was routed; after that
     * the relay retries the first alone. So before the first event
     * arrives (the marker) there is at most that one copy of the second;
     * after it, the second again. */
    for (;;) {
        struct mq_delivery d;
        assert_int_equal(mq_next_delivery(f->sub, DELIVERY_TIMEOUT_MS * 2, &d), MQ_OK);
        if (strcmp(d.message_id, rows[0].event_id) == 0) {
            assert_string_equal((char *)d.body, rows[0].body);
            mq_ack(f->sub, d.tag, 0);
            mq_delivery_free(&d);
            break;
        }
        assert_string_equal(d.message_id, rows[1].event_id);
        mq_ack(f->sub, d.tag, 0);
        mq_delivery_free(&d);
        copies++;
    }
    assert_in_range(copies, 0, 1);
    expect_delivery(f, &rows[1], NULL);
    wait_published(f->db, 2);
    stop_relay_promptly(r);
    mq_close(m);
}

/* With the broker unreachable nothing is marked, the relay says it is not
 * connected, the log never shows the password, and stop is prompt even
 * in the middle of a backoff. */
static void test_relay_broker_down(void **state)
{
    static char logtext[LOG_TEXT_MAX];
    struct fixture *f = *state;
    char url[TEXT_MAX];
    struct capture log;
    outbox_relay *r;

    assert_int_equal(db_begin(f->db), DB_OK);
    append(f->db, type_created, "{\"down\":true}", NULL, OCCURRED_AT);
    assert_int_equal(db_commit(f->db), DB_OK);

    /* At debug level every attempt is logged, so the test can wait for
     * the attempts themselves (backoffs of 100, 200, 400, ... ms). */
    log_init("test_outbox", LOG_LVL_DEBUG);
    capture_start(f, &log);
    snprintf(url, sizeof(url), "amqp://guest:%s@127.0.0.1:1/", SECRET);
    r = start_relay(f, url, 10, 100);
    wait_logged(&log, "outbox relay: cannot connect", DOWN_ATTEMPTS);
    assert_false(outbox_relay_connected(r));
    stop_relay_promptly(r); /* in the middle of a backoff over STOP_MAX_MS */
    capture_stop(&log);
    log_init("test_outbox", LOG_LVL_INFO);

    capture_text(&log, logtext, sizeof(logtext));
    close(log.fd);
    assert_non_null(strstr(logtext, "***"));
    assert_null(strstr(logtext, SECRET));

    assert_int_equal(count_published(f->db), 0);
    /* It published nothing to the real broker either. */
    expect_only_marker(f);
}

static void test_relay_start_fails_on_bad_database(void **state)
{
    struct outbox_relay_config cfg = {
        .topology = &contract_topology,
        .database_url = "sqlite:/nonexistent-dir-for-test/outbox.db",
        .amqp_url = amqp_url,
        .service = "test-service",
    };
    (void)state;
    assert_null(outbox_relay_start(&cfg));
    cfg.database_url = NULL;
    assert_null(outbox_relay_start(&cfg));
    /* The no-op calls a service may make when it has no relay. */
    outbox_relay_wake(NULL);
    outbox_relay_stop(NULL);
    assert_false(outbox_relay_connected(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_writes_envelope, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relay_publishes_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relay_pipelines_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relay_wakes_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relay_retries_returned_events_in_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_relay_broker_down, setup, teardown),
        cmocka_unit_test(test_relay_start_fails_on_bad_database),
    };
    return cmocka_run_group_tests_name("outbox", tests, group_setup, group_teardown);
}
