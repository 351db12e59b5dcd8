/*
 * Unit tests for sse without a network: one client's queue (the event
 * framing, whole-or-nothing pieces, the SSE_CLIENT_BUFFER cap and why a
 * refusal is final), the keep-alive rule, and a hub with no client. The
 * streams themselves, slow and idle clients included, are tested end to
 * end in tests/e2e/test_stream.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "sse.h"

#define MS_NS 1000000LL
#define EVENT_DATA "{\"type\":\"order.created\",\"order_id\":5}"

/* Takes everything unsent, NUL-terminated; the caller frees. */
static char *take_all(struct sse_queue *q)
{
    size_t n = sse_queue_unsent(q);
    char *out = malloc(n + 1);

    assert_non_null(out);
    assert_int_equal(sse_queue_take(q, out, n + 1), n);
    out[n] = '\0';
    assert_int_equal(sse_queue_unsent(q), 0);
    return out;
}

/* A text of n bytes, all c. */
static char *filler(size_t n, char c)
{
    char *s = malloc(n + 1);

    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void test_event_framing(void **state)
{
    (void)state;
    struct sse_queue q;

    sse_queue_init(&q);
    assert_int_equal(sse_queue_unsent(&q), 0);
    assert_int_equal(sse_queue_put_event(&q, 17, EVENT_DATA, strlen(EVENT_DATA)), 0);
    assert_int_equal(sse_queue_put(&q, ": keep-alive\n\n", 14), 0);
    assert_int_equal(sse_queue_put_event(&q, 18446744073709551615ULL, "{}", 2), 0);
    char *got = take_all(&q);
    assert_string_equal(got, "id: 17\ndata: " EVENT_DATA
                             "\n\n"
                             ": keep-alive\n\n"
                             "id: 18446744073709551615\ndata: {}\n\n");
    free(got);
    sse_queue_free(&q);
}

static void test_take_in_pieces_keeps_the_order(void **state)
{
    (void)state;
    struct sse_queue q;
    char want[256], got[256] = "";
    size_t have = 0;

    sse_queue_init(&q);
    snprintf(want, sizeof(want), "id: 1\ndata: " EVENT_DATA "\n\nid: 2\ndata: {}\n\n");
    assert_int_equal(sse_queue_put_event(&q, 1, EVENT_DATA, strlen(EVENT_DATA)), 0);
    assert_int_equal(sse_queue_put_event(&q, 2, "{}", 2), 0);
    assert_int_equal(sse_queue_unsent(&q), strlen(want));
    for (size_t k; (k = sse_queue_take(&q, got + have, 5)) > 0; have += k)
        assert_true(k <= 5);
    got[have] = '\0';
    assert_string_equal(got, want);
    assert_int_equal(sse_queue_take(&q, got, sizeof(got)), 0);
    sse_queue_free(&q);
}

static void test_fills_to_exactly_the_cap(void **state)
{
    (void)state;
    struct sse_queue q;
    char *big = filler(SSE_CLIENT_BUFFER - 10, 'a');

    sse_queue_init(&q);
    assert_int_equal(sse_queue_put(&q, big, SSE_CLIENT_BUFFER - 10), 0);
    assert_int_equal(sse_queue_put(&q, "0123456789", 10), 0);
    assert_int_equal(sse_queue_unsent(&q), SSE_CLIENT_BUFFER);
    /* One byte more is refused, and nothing of it is kept. */
    assert_int_equal(sse_queue_put(&q, "x", 1), -1);
    assert_int_equal(sse_queue_unsent(&q), SSE_CLIENT_BUFFER);
    free(big);
    sse_queue_free(&q);
}

static void test_a_piece_goes_in_whole_or_not_at_all(void **state)
{
    (void)state;
    struct sse_queue q;
    /* Room for the event's "id:" line but not for its data. */
    size_t room = 20;
    char *big = filler(SSE_CLIENT_BUFFER - room, 'a');

    sse_queue_init(&q);
    assert_int_equal(sse_queue_put(&q, big, SSE_CLIENT_BUFFER - room), 0);
    assert_int_equal(sse_queue_put_event(&q, 1, EVENT_DATA, strlen(EVENT_DATA)), -1);
    assert_int_equal(sse_queue_unsent(&q), SSE_CLIENT_BUFFER - room);
    char *got = take_all(&q);
    assert_string_equal(got, big);
    free(got);
    free(big);
    sse_queue_free(&q);
}

static void test_a_refusal_is_final(void **state)
{
    (void)state;
    struct sse_queue q;
    char *big = filler(SSE_CLIENT_BUFFER, 'a');

    sse_queue_init(&q);
    assert_int_equal(sse_queue_put(&q, big, SSE_CLIENT_BUFFER), 0);
    assert_int_equal(sse_queue_put_event(&q, 1, "{}", 2), -1);
    /* Everything sent: there is room again, but the client missed event
     * 1, so event 2 must not reach it as if it had not. */
    free(take_all(&q));
    assert_int_equal(sse_queue_put_event(&q, 2, "{}", 2), -1);
    assert_int_equal(sse_queue_put(&q, ": keep-alive\n\n", 14), -1);
    assert_int_equal(sse_queue_unsent(&q), 0);
    free(big);
    sse_queue_free(&q);
}

static void test_sent_bytes_make_room(void **state)
{
    (void)state;
    struct sse_queue q;
    char *a = filler(SSE_CLIENT_BUFFER, 'a');
    char *b = filler(SSE_CLIENT_BUFFER / 2, 'b');
    char *half = malloc(SSE_CLIENT_BUFFER / 2);

    assert_non_null(half);
    sse_queue_init(&q);
    assert_int_equal(sse_queue_put(&q, a, SSE_CLIENT_BUFFER), 0);
    assert_int_equal(sse_queue_take(&q, half, SSE_CLIENT_BUFFER / 2), SSE_CLIENT_BUFFER / 2);
    /* The cap counts unsent bytes, not bytes ever queued. */
    assert_int_equal(sse_queue_put(&q, b, SSE_CLIENT_BUFFER / 2), 0);
    assert_int_equal(sse_queue_unsent(&q), SSE_CLIENT_BUFFER);
    char *got = take_all(&q);
    assert_memory_equal(got, a, SSE_CLIENT_BUFFER / 2);
    assert_memory_equal(got + SSE_CLIENT_BUFFER / 2, b, SSE_CLIENT_BUFFER / 2);
    free(got);
    free(half);
    free(b);
    free(a);
    sse_queue_free(&q);
}

/* The bytes of event id with data_len bytes of data, as framed. */
static size_t event_bytes(uint64_t id, size_t data_len)
{
    char head[64];

    return (size_t)snprintf(head, sizeof(head), "id: %llu\ndata: ", (unsigned long long)id) +
           data_len + 2;
}

/* The hub's rule with two clients given the same events: the one that
 * reads keeps getting everything; the one that does not is refused at
 * the first event that would take its unsent bytes past the cap. */
static void test_only_the_client_that_does_not_read_is_refused(void **state)
{
    (void)state;
    struct sse_queue reader, idle;
    char buf[256];
    size_t queued = 0;
    uint64_t refused_at = 0;

    sse_queue_init(&reader);
    sse_queue_init(&idle);
    for (uint64_t id = 1; id <= SSE_CLIENT_BUFFER && !refused_at; id++) {
        assert_int_equal(sse_queue_put_event(&reader, id, EVENT_DATA, strlen(EVENT_DATA)), 0);
        while (sse_queue_take(&reader, buf, sizeof(buf)) > 0)
            ;
        size_t need = event_bytes(id, strlen(EVENT_DATA));
        int rc = sse_queue_put_event(&idle, id, EVENT_DATA, strlen(EVENT_DATA));
        if (queued + need <= SSE_CLIENT_BUFFER) {
            assert_int_equal(rc, 0);
            queued += need;
        } else {
            assert_int_equal(rc, -1);
            refused_at = id;
        }
        assert_int_equal(sse_queue_unsent(&idle), queued);
    }
    assert_true(refused_at > 1);
    assert_int_equal(sse_queue_put_event(&reader, refused_at + 1, "{}", 2), 0);
    sse_queue_free(&idle);
    sse_queue_free(&reader);
}

static void test_keepalive_due_after_its_period(void **state)
{
    (void)state;
    int64_t last = 5 * 1000 * MS_NS;

    assert_false(sse_keepalive_due(last, last));
    assert_false(sse_keepalive_due(last, last + SSE_KEEPALIVE_MS * MS_NS - 1));
    assert_true(sse_keepalive_due(last, last + SSE_KEEPALIVE_MS * MS_NS));
    assert_true(sse_keepalive_due(last, last + 10 * SSE_KEEPALIVE_MS * MS_NS));
}

static void test_hub_without_clients(void **state)
{
    (void)state;
    char err[128] = "";
    sse_hub *hub = sse_hub_start(err, sizeof(err));

    assert_non_null(hub);
    assert_int_equal(sse_client_count(hub), 0);
    for (int i = 0; i < 3; i++)
        sse_publish(hub, "{}", 2);
    sse_publish(NULL, "{}", 2); /* a service without a hub: nothing */
    assert_int_equal(sse_client_count(hub), 0);
    char *text = metrics_render(NULL);
    assert_non_null(strstr(text, "\nsse_events_total 3\n"));
    assert_non_null(strstr(text, "\nsse_clients 0\n"));
    free(text);
    sse_hub_stop(hub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_framing),
        cmocka_unit_test(test_take_in_pieces_keeps_the_order),
        cmocka_unit_test(test_fills_to_exactly_the_cap),
        cmocka_unit_test(test_a_piece_goes_in_whole_or_not_at_all),
        cmocka_unit_test(test_a_refusal_is_final),
        cmocka_unit_test(test_sent_bytes_make_room),
        cmocka_unit_test(test_only_the_client_that_does_not_read_is_refused),
        cmocka_unit_test(test_keepalive_due_after_its_period),
        cmocka_unit_test(test_hub_without_clients),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
