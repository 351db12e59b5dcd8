/*
 * Unit tests for deadline: on a fake clock, which connections are due (a
 * head after the idle timeout, a body after the timeout plus a second per
 * DEADLINE_BODY_MIN_RATE bytes, a request being served never, a keep-alive
 * head from its own start); a reap shuts down exactly the due sockets,
 * once each, and never one whose record was closed; and the reaper thread
 * does it on the real clock by itself. Sockets are socketpair ends: a
 * shut-down end shows as end-of-file on its peer. A test that hangs is
 * killed by alarm() and fails.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "deadline.h"
#include "metrics.h"
#include "util.h"

#define S 1000000000LL  /* one second in ns */
#define IDLE (10 * S)   /* the idle timeout of the fake-clock tests */
#define T0 (1000 * S)   /* the fake clock's start */
#define TEST_BOUND_S 20 /* the longest any test may take */

/* A connection: fd[0] is the server's end, fd[1] the client's. */
struct pair {
    int fd[2];
};

static void pair_open(struct pair *p)
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, p->fd), 0);
}

static void pair_close(struct pair *p)
{
    close(p->fd[0]);
    close(p->fd[1]);
}

/* Whether the server's end was shut down: the client reads end-of-file
 * (nothing is ever written, so a live end has nothing to read). */
static int was_shut_down(const struct pair *p)
{
    char c;
    ssize_t n = recv(p->fd[1], &c, 1, MSG_DONTWAIT);

    if (n < 0)
        assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    return n == 0;
}

/* The counter's value for label, from the rendered metrics (0 if absent). */
static long long timed_out(const char *label)
{
    char want[128];
    size_t len;
    char *text = metrics_render(&len);
    const char *at;
    long long v = 0;

    snprintf(want, sizeof(want), "%s{%s} ", DEADLINE_METRIC_TIMED_OUT, label);
    at = strstr(text, want);
    if (at)
        v = strtoll(at + strlen(want), NULL, 10);
    free(text);
    return v;
}

static void a_head_is_due_after_the_idle_timeout(void **state)
{
    deadline_list *l = deadline_list_new(IDLE);
    deadline_conn *c = deadline_open(l, -1, T0);
    (void)state;

    assert_null(deadline_overdue(l, c, T0));
    assert_null(deadline_overdue(l, c, T0 + IDLE)); /* at the timeout: not yet */
    assert_string_equal(deadline_overdue(l, c, T0 + IDLE + 1), "phase=\"head\"");
    /* After an answer (keep-alive) the next head is due from then. */
    deadline_enter(c, DEADLINE_HEAD, T0 + 60 * S);
    assert_null(deadline_overdue(l, c, T0 + 60 * S + IDLE));
    assert_string_equal(deadline_overdue(l, c, T0 + 60 * S + IDLE + 1), "phase=\"head\"");
    deadline_close(l, c);
    deadline_list_free(l);
}

static void a_body_earns_a_second_per_rate_bytes(void **state)
{
    deadline_list *l = deadline_list_new(IDLE);
    deadline_conn *c = deadline_open(l, -1, T0);
    int64_t head_done = T0 + 3 * S;
    (void)state;

    deadline_enter(c, DEADLINE_BODY, head_done);
    assert_null(deadline_overdue(l, c, head_done + IDLE));
    assert_string_equal(deadline_overdue(l, c, head_done + IDLE + 1), "phase=\"body\"");
    /* 4 whole multiples of the rate and a part of the next: 4 s more. */
    deadline_received(c, 3 * DEADLINE_BODY_MIN_RATE);
    deadline_received(c, DEADLINE_BODY_MIN_RATE + DEADLINE_BODY_MIN_RATE / 2);
    assert_null(deadline_overdue(l, c, head_done + IDLE + 4 * S));
    assert_string_equal(deadline_overdue(l, c, head_done + IDLE + 4 * S + 1), "phase=\"body\"");
    deadline_received(NULL, 1); /* a request without a record: nothing */
    deadline_close(l, c);
    deadline_list_free(l);
}

static void a_request_being_served_has_no_deadline(void **state)
{
    deadline_list *l = deadline_list_new(IDLE);
    deadline_conn *c = deadline_open(l, -1, T0);
    (void)state;

    deadline_enter(c, DEADLINE_BODY, T0);
    deadline_received(c, 5 * DEADLINE_BODY_MIN_RATE);
    deadline_enter(c, DEADLINE_SERVING, T0 + S);
    assert_null(deadline_overdue(l, c, T0 + 3600 * S));
    /* Entering a phase starts its figures afresh: no body bytes left. */
    deadline_enter(c, DEADLINE_BODY, T0 + 2 * S);
    assert_string_equal(deadline_overdue(l, c, T0 + 2 * S + IDLE + 1), "phase=\"body\"");
    deadline_enter(NULL, DEADLINE_HEAD, T0); /* no record: nothing */
    deadline_close(l, c);
    deadline_list_free(l);
}

/* Four connections at once: a head, a body with 2 s earned, one being
 * served and one closed before its deadline. Each reap shuts down the
 * ones due then and no other, and none twice. */
static void a_reap_shuts_down_exactly_the_due_ones(void **state)
{
    struct pair head, body, serving, closed;
    deadline_list *l = deadline_list_new(IDLE);
    long long heads0 = timed_out("phase=\"head\""), bodies0 = timed_out("phase=\"body\"");
    (void)state;

    pair_open(&head);
    pair_open(&body);
    pair_open(&serving);
    pair_open(&closed);
    deadline_open(l, head.fd[0], T0);
    deadline_conn *b = deadline_open(l, body.fd[0], T0);
    deadline_enter(b, DEADLINE_BODY, T0);
    deadline_received(b, 2 * DEADLINE_BODY_MIN_RATE);
    deadline_conn *s = deadline_open(l, serving.fd[0], T0);
    deadline_enter(s, DEADLINE_SERVING, T0);
    deadline_close(l, deadline_open(l, closed.fd[0], T0));

    assert_int_equal(deadline_reap(l, T0 + IDLE), 0);
    assert_int_equal(deadline_reap(l, T0 + IDLE + 1), 1);
    assert_true(was_shut_down(&head));
    assert_false(was_shut_down(&body));
    assert_int_equal(deadline_reap(l, T0 + IDLE + 2 * S), 0); /* head not again */
    assert_int_equal(deadline_reap(l, T0 + IDLE + 2 * S + 1), 1);
    assert_true(was_shut_down(&body));
    assert_int_equal(deadline_reap(l, T0 + 3600 * S), 0);
    assert_false(was_shut_down(&serving));
    assert_false(was_shut_down(&closed));
    assert_int_equal(timed_out("phase=\"head\"") - heads0, 1);
    assert_int_equal(timed_out("phase=\"body\"") - bodies0, 1);

    deadline_list_free(l); /* frees the three records still open */
    pair_close(&head);
    pair_close(&body);
    pair_close(&serving);
    pair_close(&closed);
}

/* The reaper thread, on the real clock: a head due after 50 ms is shut
 * down without anyone calling deadline_reap, and the thread stops. */
static void the_reaper_shuts_down_a_due_head_by_itself(void **state)
{
    struct pair p;
    struct pollfd pfd;
    deadline_list *l = deadline_list_new(50 * 1000000);
    (void)state;

    alarm(TEST_BOUND_S);
    pair_open(&p);
    deadline_open(l, p.fd[0], util_monotonic_ns());
    assert_int_equal(deadline_reaper_start(l), 0);
    pfd.fd = p.fd[1];
    pfd.events = POLLIN;
    /* End-of-file makes the client's end readable; poll is bounded. */
    assert_int_equal(poll(&pfd, 1, (TEST_BOUND_S - 5) * 1000), 1);
    assert_true(was_shut_down(&p));
    deadline_reaper_stop(l);
    deadline_list_free(l);
    pair_close(&p);
    alarm(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_head_is_due_after_the_idle_timeout),
        cmocka_unit_test(a_body_earns_a_second_per_rate_bytes),
        cmocka_unit_test(a_request_being_served_has_no_deadline),
        cmocka_unit_test(a_reap_shuts_down_exactly_the_due_ones),
        cmocka_unit_test(the_reaper_shuts_down_a_due_head_by_itself),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
