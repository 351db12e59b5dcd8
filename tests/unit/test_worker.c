/*
 * Unit tests for worker: a stop reaches a thread that waits without a
 * deadline and one that sleeps a long backoff, a signal wakes a wait but
 * does not end a sleep, a one-shot thread that ended by itself is joined by
 * a stop and the worker started again, and the backoff doubles up to its
 * cap. A test that
 * hangs is killed by alarm() and fails.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <unistd.h>

#include "util.h"
#include "worker.h"

#define TEST_BOUND_S 20 /* the longest any test may take */

struct owner {
    struct worker w;
    int work;         /* under w.lock: set by the test, taken by the thread */
    int taken;        /* under w.lock */
    int sleep_result; /* what worker_sleep() returned */
    int64_t slept_ns;
};

/* Waits without a deadline for work or a stop; counts the work taken. */
static void *waiter_main(void *arg)
{
    struct owner *o = arg;

    pthread_mutex_lock(&o->w.lock);
    while (!worker_stopping(&o->w)) {
        if (o->work) {
            o->work = 0;
            o->taken++;
            worker_signal(&o->w); /* tell the test */
            continue;
        }
        worker_wait_until(&o->w, WORKER_FOREVER);
    }
    pthread_mutex_unlock(&o->w.lock);
    return NULL;
}

static void *sleeper_main(void *arg)
{
    struct owner *o = arg;
    int64_t t0 = util_monotonic_ns();

    o->sleep_result = worker_sleep(&o->w, 3600 * 1000); /* an hour */
    o->slept_ns = util_monotonic_ns() - t0;
    return NULL;
}

static void signal_wakes_a_wait_and_stop_ends_it(void **state)
{
    struct owner o = {0};
    (void)state;

    alarm(TEST_BOUND_S);
    assert_int_equal(worker_start(&o.w, waiter_main, &o), 0);
    for (int i = 1; i <= 3; i++) {
        pthread_mutex_lock(&o.w.lock);
        o.work = 1;
        worker_signal(&o.w);
        while (o.taken < i) /* the thread takes it, or alarm() fails the test */
            pthread_cond_wait(&o.w.cond, &o.w.lock);
        pthread_mutex_unlock(&o.w.lock);
    }
    worker_stop(&o.w); /* returns only once the thread has */
    assert_int_equal(o.taken, 3);
    alarm(0);
}

static void stop_cuts_a_sleep_short(void **state)
{
    struct owner o = {0};
    (void)state;

    alarm(TEST_BOUND_S);
    assert_int_equal(worker_start(&o.w, sleeper_main, &o), 0);
    /* A signal is not a stop: the sleep goes on. */
    pthread_mutex_lock(&o.w.lock);
    worker_signal(&o.w);
    pthread_mutex_unlock(&o.w.lock);
    worker_stop(&o.w);
    assert_int_equal(o.sleep_result, 1);
    assert_true(o.slept_ns < (int64_t)TEST_BOUND_S * 1000000000);
    alarm(0);
}

static void *short_sleeper_main(void *arg)
{
    struct owner *o = arg;
    int64_t t0 = util_monotonic_ns();

    o->sleep_result = worker_sleep(&o->w, 50);
    o->slept_ns = util_monotonic_ns() - t0;
    pthread_mutex_lock(&o->w.lock);
    o->taken = 1;
    worker_signal(&o->w);
    pthread_mutex_unlock(&o->w.lock);
    return NULL;
}

/* Without a stop, a sleep lasts at least its time and says so; signals
 * meanwhile do not end it. */
static void a_sleep_without_a_stop_lasts_its_time(void **state)
{
    struct owner o = {0};
    (void)state;

    alarm(TEST_BOUND_S);
    assert_int_equal(worker_start(&o.w, short_sleeper_main, &o), 0);
    pthread_mutex_lock(&o.w.lock);
    while (!o.taken) {
        worker_signal(&o.w);
        util_cond_wait_until(&o.w.cond, &o.w.lock, util_monotonic_ns() + 5 * 1000000);
    }
    pthread_mutex_unlock(&o.w.lock);
    worker_stop(&o.w);
    assert_int_equal(o.sleep_result, 0);
    assert_true(o.slept_ns >= 50 * 1000000);
    alarm(0);
}

/* Ends by itself, without waiting for a stop: a one-shot job. */
static void *one_shot_main(void *arg)
{
    struct owner *o = arg;

    pthread_mutex_lock(&o->w.lock);
    o->taken++;
    o->sleep_result = worker_stopping(&o->w);
    worker_signal(&o->w);
    pthread_mutex_unlock(&o->w.lock);
    return NULL;
}

static void a_one_shot_thread_is_joined_by_a_stop_and_started_again(void **state)
{
    struct owner o = {0};
    (void)state;

    alarm(TEST_BOUND_S);
    for (int i = 1; i <= 2; i++) {
        assert_int_equal(worker_start(&o.w, one_shot_main, &o), 0);
        pthread_mutex_lock(&o.w.lock);
        while (o.taken < i) /* it ran, or alarm() fails the test */
            pthread_cond_wait(&o.w.cond, &o.w.lock);
        pthread_mutex_unlock(&o.w.lock);
        assert_int_equal(o.sleep_result, 0); /* a new start is not stopping */
        worker_stop(&o.w);                   /* joins the ended thread */
        assert_int_equal(worker_stopping(&o.w), 1);
    }
    alarm(0);
}

static void backoff_doubles_to_its_cap(void **state)
{
    (void)state;
    assert_int_equal(worker_backoff_ms(-1, 100, 5000), 100);
    assert_int_equal(worker_backoff_ms(0, 100, 5000), 100);
    assert_int_equal(worker_backoff_ms(1, 100, 5000), 200);
    assert_int_equal(worker_backoff_ms(5, 100, 5000), 3200);
    assert_int_equal(worker_backoff_ms(6, 100, 5000), 5000);
    assert_int_equal(worker_backoff_ms(1000, 100, 5000), 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(signal_wakes_a_wait_and_stop_ends_it),
        cmocka_unit_test(stop_cuts_a_sleep_short),
        cmocka_unit_test(a_sleep_without_a_stop_lasts_its_time),
        cmocka_unit_test(a_one_shot_thread_is_joined_by_a_stop_and_started_again),
        cmocka_unit_test(backoff_doubles_to_its_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
