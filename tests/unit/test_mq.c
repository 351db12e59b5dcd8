/*
 * Unit tests of mq against a real RabbitMQ named by TEST_AMQP_URL (for
 * example amqp://guest:guest@127.0.0.1:5672/, as scripts/rabbitmq.sh
 * prints it). Without it the tests fail: a messaging layer that was not
 * exercised must not look green.
 *
 * Every queue this file creates carries a per-run prefix, so runs never
 * see each other's messages, and the group teardown deletes them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "contract/contract.h"
#include "mq.h"
#include "util.h"

#define ERR_MAX 512
#define NAME_MAX_LEN 128
#define MAX_QUEUES 16
#define HEARTBEAT_S 10
#define CONFIRM_TIMEOUT_MS 10000
#define DELIVERY_TIMEOUT_MS 5000
#define QUIET_MS 300
#define BATCH_N 200
#define WRONG_PASSWORD "wrong-secret-7f3a"
/* Long enough for a broker to give up on a silent 1 s heartbeat peer. */
#define HEARTBEAT_IDLE_MS 4000

static const char *amqp_url;
static char run_prefix[64];
static char queues[MAX_QUEUES][NAME_MAX_LEN];
static size_t queue_count;

/* A queue name private to this run; remembered for the teardown. */
static const char *test_queue(const char *name)
{
    char *q;
    assert_true(queue_count < MAX_QUEUES);
    q = queues[queue_count++];
    snprintf(q, NAME_MAX_LEN, "%s.%s", run_prefix, name);
    return q;
}

static mq *open_or_fail(void)
{
    char err[ERR_MAX];
    mq *m = mq_open(amqp_url, "test_mq", HEARTBEAT_S, err, sizeof(err));
    if (!m)
        fail_msg("mq_open failed: %s", err);
    return m;
}

static mq *open_publisher(void)
{
    mq *m = open_or_fail();
    assert_int_equal(mq_confirm_select(m), MQ_OK);
    return m;
}

static int group_setup(void **state)
{
    (void)state;
    amqp_url = getenv("TEST_AMQP_URL");
    if (!amqp_url || !amqp_url[0]) {
        fprintf(stderr,
                "test_mq: TEST_AMQP_URL is not set. These tests need a real "
                "RabbitMQ: start one (scripts/rabbitmq.sh start) and set "
                "TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:PORT/\n");
        return -1;
    }
    snprintf(run_prefix, sizeof(run_prefix), "test_mq.%ld.%lld", (long)getpid(),
             (long long)util_now_ms());
    return 0;
}

static int group_teardown(void **state)
{
    char err[ERR_MAX];
    mq *m;
    int rc = 0;

    (void)state;
    if (!amqp_url || queue_count == 0)
        return 0;
    m = mq_open(amqp_url, "test_mq-cleanup", HEARTBEAT_S, err, sizeof(err));
    if (!m) {
        fprintf(stderr, "test_mq: cleanup cannot connect: %s\n", err);
        return -1;
    }
    for (size_t i = 0; i < queue_count; i++) {
        if (mq_delete_queue(m, queues[i]) != MQ_OK) {
            /* A channel error closes the channel: reconnect and go on. */
            fprintf(stderr, "test_mq: delete %s: %s\n", queues[i], mq_last_error(m));
            mq_close(m);
            m = mq_open(amqp_url, "test_mq-cleanup", HEARTBEAT_S, err, sizeof(err));
            if (!m)
                return -1;
            rc = -1;
        }
    }
    mq_close(m);
    return rc;
}

static void publish_text(mq *m, const char *exchange, const char *key, const char *body,
                         const char *message_id)
{
    struct mq_message msg = {
        .exchange = exchange,
        .routing_key = key,
        .body = body,
        .body_len = strlen(body),
        .message_id = message_id,
        .type = "test.event",
    };
    assert_int_equal(mq_publish(m, &msg), MQ_OK);
}

/* ---- connecting ---- */

static void test_open_failures(void **state)
{
    char err[ERR_MAX];
    char url[ERR_MAX];
    const char *at, *host;
    int64_t start;
    mq *m;

    (void)state;
    m = mq_open("http://nowhere", "t", 0, err, sizeof(err));
    assert_null(m);
    assert_non_null(strstr(err, "invalid AMQP URL"));

    /* Nothing listens on port 1: refused at once, not after a timeout. */
    start = util_monotonic_ns();
    m = mq_open("amqp://guest:guest@127.0.0.1:1/", "t", 0, err, sizeof(err));
    assert_null(m);
    assert_non_null(strstr(err, "cannot connect"));
    assert_true(util_monotonic_ns() - start < 3000000000LL);

    /* Wrong credentials: a clear message that never shows the password. */
    at = strchr(amqp_url, '@');
    host = at ? at + 1 : amqp_url + strlen("amqp://");
    snprintf(url, sizeof(url), "amqp://nobody:%s@%s", WRONG_PASSWORD, host);
    m = mq_open(url, "t", 0, err, sizeof(err));
    assert_null(m);
    assert_non_null(strstr(err, "login"));
    assert_null(strstr(err, WRONG_PASSWORD));
}

/* ---- topology ---- */

static void test_declare_topology_twice(void **state)
{
    mq *m = open_or_fail();
    (void)state;
    assert_int_equal(mq_declare_topology(m, &contract_topology, "classic"), MQ_OK);
    assert_int_equal(mq_declare_topology(m, &contract_topology, "classic"), MQ_OK);
    assert_int_equal(mq_declare_topology(m, &contract_topology, NULL), MQ_OK);
    assert_int_equal(mq_declare_queue(m, CONTRACT_DEAD_LETTER_QUEUE, "classic"), MQ_OK);
    assert_int_equal(mq_declare_queue(m, CONTRACT_DEAD_LETTER_QUEUE, "classic"), MQ_OK);
    assert_string_equal(mq_last_error(m), "");
    mq_close(m);
}

static void test_quorum_and_mismatch(void **state)
{
    const char *qq = test_queue("quorum");
    const char *cq = test_queue("classic");
    mq *m = open_or_fail();

    (void)state;
    assert_int_equal(mq_declare_queue(m, qq, "quorum"), MQ_OK);
    assert_int_equal(mq_declare_queue(m, qq, "quorum"), MQ_OK);
    assert_int_equal(mq_declare_queue(m, cq, "classic"), MQ_OK);
    assert_int_equal(mq_declare_queue(m, cq, "bogus"), MQ_ERR_PROTOCOL);

    /* Declaring an existing classic queue as quorum is refused by the
     * broker, which closes the channel: later calls report that. */
    assert_int_equal(mq_declare_queue(m, cq, "quorum"), MQ_ERR_PROTOCOL);
    assert_non_null(strstr(mq_last_error(m), "PRECONDITION_FAILED"));
    assert_int_equal(mq_declare_queue(m, cq, "classic"), MQ_ERR_CONNECTION);
    mq_close(m);
}

/* ---- publishing ---- */

static void test_confirmed_publish_to_exchange(void **state)
{
    const char *tap = test_queue("order-tap");
    char id[NAME_MAX_LEN];
    mq *pub, *sub;
    int seen = 0;

    (void)state;
    pub = open_publisher();
    assert_int_equal(mq_declare_topology(pub, &contract_topology, "classic"), MQ_OK);
    /* A private queue bound like "order" sees the same messages. */
    assert_int_equal(mq_declare_queue(pub, tap, "classic"), MQ_OK);
    assert_int_equal(mq_bind_queue(pub, tap, contract_topology.exchange, "order.created"), MQ_OK);

    for (int i = 0; i < BATCH_N; i++) {
        snprintf(id, sizeof(id), "%s-%d", run_prefix, i);
        publish_text(pub, contract_topology.exchange, "order.created", "{\"test\":\"mq\"}", id);
    }
    assert_int_equal(mq_wait_confirms(pub, CONFIRM_TIMEOUT_MS), MQ_OK);
    /* Nothing outstanding: a second wait returns at once. */
    assert_int_equal(mq_wait_confirms(pub, 0), MQ_OK);

    /* A second batch on the same channel: tags keep counting. */
    for (int i = BATCH_N; i < 2 * BATCH_N; i++) {
        snprintf(id, sizeof(id), "%s-%d", run_prefix, i);
        publish_text(pub, contract_topology.exchange, "order.created", "{\"test\":\"mq\"}", id);
    }
    assert_int_equal(mq_wait_confirms(pub, CONFIRM_TIMEOUT_MS), MQ_OK);
    assert_int_equal(mq_poll(pub), MQ_OK);

    sub = open_or_fail();
    assert_int_equal(mq_qos(sub, 50), MQ_OK);
    assert_int_equal(mq_consume(sub, tap), MQ_OK);
    while (seen < 2 * BATCH_N) {
        struct mq_delivery d;
        assert_int_equal(mq_next_delivery(sub, DELIVERY_TIMEOUT_MS, &d), MQ_OK);
        snprintf(id, sizeof(id), "%s-%d", run_prefix, seen);
        assert_string_equal(d.message_id, id); /* in publish order */
        assert_string_equal(d.routing_key, "order.created");
        assert_int_equal(mq_ack(sub, d.tag, 0), MQ_OK);
        mq_delivery_free(&d);
        seen++;
    }
    mq_close(sub);

    /* Take our messages back out of the shared "order" queue so nothing
     * downstream meets them; others' messages are put back untouched. */
    {
        int drained = 0;
        sub = open_or_fail();
        assert_int_equal(mq_qos(sub, 100), MQ_OK);
        assert_int_equal(mq_consume(sub, "order"), MQ_OK);
        while (drained < 2 * BATCH_N) {
            struct mq_delivery d;
            if (mq_next_delivery(sub, QUIET_MS * 3, &d) != MQ_OK)
                break;
            if (d.message_id && strncmp(d.message_id, run_prefix, strlen(run_prefix)) == 0) {
                mq_ack(sub, d.tag, 0);
                drained++;
            } else {
                mq_nack(sub, d.tag, 0, 1);
            }
            mq_delivery_free(&d);
        }
        mq_close(sub);
    }
    mq_close(pub);
}

static void test_unroutable_is_rejected(void **state)
{
    const char *q = test_queue("routable");
    char key[NAME_MAX_LEN];
    mq *m;

    (void)state;
    m = open_publisher();
    snprintf(key, sizeof(key), "%s.no-such-queue", run_prefix);

    publish_text(m, "", key, "{}", "lost-1");
    assert_int_equal(mq_wait_confirms(m, CONFIRM_TIMEOUT_MS), MQ_ERR_REJECTED);
    assert_non_null(strstr(mq_last_error(m), "NO_ROUTE"));

    /* The channel survives a return: a routable message is acked. */
    assert_int_equal(mq_declare_queue(m, q, "classic"), MQ_OK);
    publish_text(m, "", q, "{}", "ok-1");
    assert_int_equal(mq_wait_confirms(m, CONFIRM_TIMEOUT_MS), MQ_OK);

    /* One returned message spoils the whole batch. */
    publish_text(m, "", q, "{}", "ok-2");
    publish_text(m, "", key, "{}", "lost-2");
    publish_text(m, "", q, "{}", "ok-3");
    assert_int_equal(mq_wait_confirms(m, CONFIRM_TIMEOUT_MS), MQ_ERR_REJECTED);

    publish_text(m, "", q, "{}", "ok-4");
    assert_int_equal(mq_wait_confirms(m, CONFIRM_TIMEOUT_MS), MQ_OK);
    mq_close(m);
}

/* A pipelining publisher waits for one batch's confirms while later ones
 * are out: each wait covers exactly the tags asked for, a return counts
 * only against the batch it can belong to, and the window keeps sliding
 * over many more publishes than its first allocation. */
static void test_wait_confirmed_per_batch(void **state)
{
    const char *q = test_queue("pipelined");
    char key[NAME_MAX_LEN], id[NAME_MAX_LEN];
    uint64_t first, second, last = 0;
    mq *m;

    (void)state;
    m = open_publisher();
    snprintf(key, sizeof(key), "%s.no-such-queue", run_prefix);
    assert_int_equal(mq_declare_queue(m, q, "classic"), MQ_OK);

    /* Tags count from 1 after confirm.select. */
    assert_int_equal(mq_last_tag(m), 0);
    publish_text(m, "", q, "{}", "p-1");
    publish_text(m, "", q, "{}", "p-2");
    first = mq_last_tag(m);
    assert_int_equal(first, 2);
    publish_text(m, "", q, "{}", "p-3");
    second = mq_last_tag(m);
    assert_int_equal(mq_wait_confirmed(m, first, CONFIRM_TIMEOUT_MS), MQ_OK);
    assert_int_equal(mq_wait_confirmed(m, second, CONFIRM_TIMEOUT_MS), MQ_OK);

    /* Many batches in flight at once, settled oldest first. */
    for (int batch = 0; batch < 50; batch++) {
        for (int i = 0; i < 10; i++) {
            snprintf(id, sizeof(id), "w-%d-%d", batch, i);
            publish_text(m, "", q, "{}", id);
        }
        if (batch % 5 == 4) {
            assert_int_equal(mq_wait_confirmed(m, mq_last_tag(m) - 25, CONFIRM_TIMEOUT_MS), MQ_OK);
        }
        last = mq_last_tag(m);
    }
    assert_int_equal(last, second + 500);
    assert_int_equal(mq_wait_confirmed(m, last, CONFIRM_TIMEOUT_MS), MQ_OK);

    /* A returned message spoils its batch, not one settled before it
     * (a return carries no tag: one that arrives while an earlier batch
     * is unsettled, as it may before that batch's acks, counts against
     * that batch too). */
    publish_text(m, "", q, "{}", "ok-before");
    first = mq_last_tag(m);
    assert_int_equal(mq_wait_confirmed(m, first, CONFIRM_TIMEOUT_MS), MQ_OK);
    publish_text(m, "", key, "{}", "lost");
    publish_text(m, "", q, "{}", "ok-after");
    second = mq_last_tag(m);
    assert_int_equal(mq_wait_confirmed(m, second, CONFIRM_TIMEOUT_MS), MQ_ERR_REJECTED);
    assert_int_equal(mq_wait_confirmed(m, first, CONFIRM_TIMEOUT_MS), MQ_OK);
    assert_non_null(strstr(mq_last_error(m), "NO_ROUTE"));
    mq_close(m);
}

static void test_publish_to_missing_exchange(void **state)
{
    char exchange[NAME_MAX_LEN];
    mq *m;

    (void)state;
    m = open_publisher();
    snprintf(exchange, sizeof(exchange), "%s.no-such-exchange", run_prefix);
    publish_text(m, exchange, "x", "{}", "x-1");
    /* The broker closes the channel (404): the connection is done. */
    assert_int_equal(mq_wait_confirms(m, CONFIRM_TIMEOUT_MS), MQ_ERR_CONNECTION);
    assert_non_null(strstr(mq_last_error(m), "NOT_FOUND"));
    assert_int_equal(mq_poll(m), MQ_ERR_CONNECTION);
    mq_close(m);
}

/* ---- consuming ---- */

static void test_consume_and_ack(void **state)
{
    static const struct mq_header headers[] = {
        {"x-test", "yes"},
        {"x-original-queue", "order"},
    };
    const char *q = test_queue("consume");
    char body[64];
    mq *pub, *sub;
    struct mq_delivery d;

    (void)state;
    pub = open_publisher();
    assert_int_equal(mq_declare_queue(pub, q, "classic"), MQ_OK);
    for (int i = 0; i < 3; i++) {
        char id[32];
        struct mq_message msg = {
            .exchange = "",
            .routing_key = q,
            .body = body,
            .message_id = id,
            .type = "test.created",
            .app_id = "test_mq",
            .correlation_id = "req-1",
            .timestamp_s = 1700000000 + i,
            .headers = headers,
            .header_count = ARRAY_LEN(headers),
        };
        snprintf(body, sizeof(body), "{\"n\":%d}", i);
        snprintf(id, sizeof(id), "m-%d", i);
        msg.body_len = strlen(body);
        assert_int_equal(mq_publish(pub, &msg), MQ_OK);
    }
    assert_int_equal(mq_wait_confirms(pub, CONFIRM_TIMEOUT_MS), MQ_OK);

    sub = open_or_fail();
    assert_int_equal(mq_qos(sub, 10), MQ_OK);
    assert_int_equal(mq_consume(sub, q), MQ_OK);
    for (int i = 0; i < 3; i++) {
        char want[64];
        assert_int_equal(mq_next_delivery(sub, DELIVERY_TIMEOUT_MS, &d), MQ_OK);
        snprintf(want, sizeof(want), "{\"n\":%d}", i);
        assert_int_equal(d.body_len, strlen(want));
        assert_memory_equal(d.body, want, d.body_len);
        assert_string_equal((char *)d.body, want); /* NUL-terminated */
        snprintf(want, sizeof(want), "m-%d", i);
        assert_string_equal(d.message_id, want);
        assert_string_equal(d.queue, q);
        assert_string_equal(d.routing_key, q);
        assert_string_equal(d.type, "test.created");
        assert_string_equal(d.app_id, "test_mq");
        assert_string_equal(d.correlation_id, "req-1");
        assert_string_equal(d.content_type, "application/json");
        assert_int_equal(d.delivery_mode, 2);
        assert_int_equal(d.timestamp_s, 1700000000 + i);
        assert_false(d.redelivered);
        assert_int_equal(mq_ack(sub, d.tag, 0), MQ_OK);
        mq_delivery_free(&d);
    }
    assert_int_equal(mq_next_delivery(sub, QUIET_MS, &d), MQ_TIMEOUT);
    mq_close(sub);

    /* Acked means gone: a fresh consumer finds nothing. */
    sub = open_or_fail();
    assert_int_equal(mq_consume(sub, q), MQ_OK);
    assert_int_equal(mq_next_delivery(sub, QUIET_MS, &d), MQ_TIMEOUT);
    mq_close(sub);
    mq_close(pub);
}

static void test_nack_requeue_redelivers(void **state)
{
    const char *q = test_queue("nack");
    struct mq_delivery d;
    uint64_t first_tag;
    mq *pub, *sub;

    (void)state;
    pub = open_publisher();
    assert_int_equal(mq_declare_queue(pub, q, "classic"), MQ_OK);
    publish_text(pub, "", q, "{\"again\":true}", "nack-1");
    assert_int_equal(mq_wait_confirms(pub, CONFIRM_TIMEOUT_MS), MQ_OK);

    sub = open_or_fail();
    assert_int_equal(mq_qos(sub, 1), MQ_OK);
    assert_int_equal(mq_consume(sub, q), MQ_OK);
    assert_int_equal(mq_next_delivery(sub, DELIVERY_TIMEOUT_MS, &d), MQ_OK);
    assert_string_equal(d.message_id, "nack-1");
    assert_false(d.redelivered);
    first_tag = d.tag;
    assert_int_equal(mq_nack(sub, d.tag, 0, 1), MQ_OK);
    mq_delivery_free(&d);

    assert_int_equal(mq_next_delivery(sub, DELIVERY_TIMEOUT_MS, &d), MQ_OK);
    assert_string_equal(d.message_id, "nack-1");
    assert_true(d.redelivered);
    assert_true(d.tag > first_tag);
    assert_int_equal(mq_ack(sub, d.tag, 0), MQ_OK);
    mq_delivery_free(&d);
    assert_int_equal(mq_next_delivery(sub, QUIET_MS, &d), MQ_TIMEOUT);
    mq_close(sub);

    /* Closing with a delivery unacked returns it to the queue. */
    publish_text(pub, "", q, "{}", "unacked-1");
    assert_int_equal(mq_wait_confirms(pub, CONFIRM_TIMEOUT_MS), MQ_OK);
    sub = open_or_fail();
    assert_int_equal(mq_consume(sub, q), MQ_OK);
    assert_int_equal(mq_next_delivery(sub, DELIVERY_TIMEOUT_MS, &d), MQ_OK);
    mq_delivery_free(&d);
    mq_close(sub);
    sub = open_or_fail();
    assert_int_equal(mq_consume(sub, q), MQ_OK);
    assert_int_equal(mq_next_delivery(sub, DELIVERY_TIMEOUT_MS, &d), MQ_OK);
    assert_string_equal(d.message_id, "unacked-1");
    assert_true(d.redelivered);
    assert_int_equal(mq_ack(sub, d.tag, 0), MQ_OK);
    mq_delivery_free(&d);
    mq_close(sub);
    mq_close(pub);
}

/* A consumer that also publishes with confirms (as a dead-letter path
 * does) must not lose deliveries that arrive while it waits. */
static void test_consume_and_publish_on_one_connection(void **state)
{
    const char *in = test_queue("in");
    const char *out = test_queue("out");
    struct mq_delivery d;
    mq *pub, *m;
    int got = 0;

    (void)state;
    pub = open_publisher();
    assert_int_equal(mq_declare_queue(pub, in, "classic"), MQ_OK);
    assert_int_equal(mq_declare_queue(pub, out, "classic"), MQ_OK);
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof(id), "in-%d", i);
        publish_text(pub, "", in, "{}", id);
    }
    assert_int_equal(mq_wait_confirms(pub, CONFIRM_TIMEOUT_MS), MQ_OK);

    m = open_publisher();
    assert_int_equal(mq_qos(m, 10), MQ_OK);
    assert_int_equal(mq_consume(m, in), MQ_OK);
    assert_int_equal(mq_next_delivery(m, DELIVERY_TIMEOUT_MS, &d), MQ_OK);
    assert_string_equal(d.message_id, "in-0");
    assert_int_equal(mq_ack(m, d.tag, 0), MQ_OK);
    mq_delivery_free(&d);
    got++;

    /* The other four are in flight to us while we publish and wait. */
    publish_text(m, "", out, "{}", "out-1");
    assert_int_equal(mq_wait_confirms(m, CONFIRM_TIMEOUT_MS), MQ_OK);
    assert_int_equal(mq_poll(m), MQ_OK);

    while (got < 5) {
        char want[16];
        assert_int_equal(mq_next_delivery(m, DELIVERY_TIMEOUT_MS, &d), MQ_OK);
        snprintf(want, sizeof(want), "in-%d", got);
        assert_string_equal(d.message_id, want);
        assert_int_equal(mq_ack(m, d.tag, 0), MQ_OK);
        mq_delivery_free(&d);
        got++;
    }

    /* And confirms arriving while we wait for deliveries are counted. */
    publish_text(m, "", out, "{}", "out-2");
    assert_int_equal(mq_next_delivery(m, QUIET_MS, &d), MQ_TIMEOUT);
    assert_int_equal(mq_wait_confirms(m, 0), MQ_OK);
    mq_close(m);
    mq_close(pub);
}

/* With a 1 s heartbeat, a connection that calls mq_poll() stays up over
 * several seconds of idleness; one left alone is dropped by the broker
 * and reports it. */
static void test_poll_answers_heartbeats(void **state)
{
    const char *q = test_queue("heartbeat");
    char err[ERR_MAX];
    mq *polled, *idle;
    int64_t until;

    (void)state;
    polled = mq_open(amqp_url, "test_mq-polled", 1, err, sizeof(err));
    assert_non_null(polled);
    idle = mq_open(amqp_url, "test_mq-idle", 1, err, sizeof(err));
    assert_non_null(idle);
    assert_int_equal(mq_confirm_select(polled), MQ_OK);
    assert_int_equal(mq_confirm_select(idle), MQ_OK);
    assert_int_equal(mq_declare_queue(polled, q, "classic"), MQ_OK);

    until = util_monotonic_ns() + HEARTBEAT_IDLE_MS * 1000000LL;
    while (util_monotonic_ns() < until) {
        assert_int_equal(mq_poll(polled), MQ_OK);
        usleep(200000);
    }
    publish_text(polled, "", q, "{}", "hb-1");
    assert_int_equal(mq_wait_confirms(polled, CONFIRM_TIMEOUT_MS), MQ_OK);

    /* The idle one may still write into a dead socket; what matters is
     * that the failure shows when it reads. */
    if (mq_publish(idle,
                   &(struct mq_message){
                       .exchange = "", .routing_key = q, .body = "{}", .body_len = 2}) == MQ_OK)
        assert_int_equal(mq_wait_confirms(idle, CONFIRM_TIMEOUT_MS), MQ_ERR_CONNECTION);
    assert_int_equal(mq_poll(idle), MQ_ERR_CONNECTION);
    mq_close(idle);
    mq_close(polled);
}

/* ---- backoff ---- */

static void test_backoff_is_capped(void **state)
{
    static const struct {
        int attempt;
        int max;
    } cases[] = {
        {-3, 100}, {0, 100},  {1, 200},  {2, 400},   {3, 800},        {4, 1600},
        {5, 3200}, {6, 5000}, {7, 5000}, {30, 5000}, {1000000, 5000},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        int lo = cases[i].max - cases[i].max / 5;
        int saw_jitter = 0;
        for (int n = 0; n < 200; n++) {
            int ms = mq_backoff_ms(cases[i].attempt);
            assert_in_range(ms, lo, cases[i].max);
            saw_jitter |= ms != cases[i].max;
        }
        assert_true(saw_jitter);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_failures),
        cmocka_unit_test(test_declare_topology_twice),
        cmocka_unit_test(test_quorum_and_mismatch),
        cmocka_unit_test(test_confirmed_publish_to_exchange),
        cmocka_unit_test(test_unroutable_is_rejected),
        cmocka_unit_test(test_wait_confirmed_per_batch),
        cmocka_unit_test(test_publish_to_missing_exchange),
        cmocka_unit_test(test_consume_and_ack),
        cmocka_unit_test(test_nack_requeue_redelivers),
        cmocka_unit_test(test_consume_and_publish_on_one_connection),
        cmocka_unit_test(test_poll_answers_heartbeats),
        cmocka_unit_test(test_backoff_is_capped),
    };
    return cmocka_run_group_tests_name("mq", tests, group_setup, group_teardown);
}
