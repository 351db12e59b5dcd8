/*
 * Unit tests of the group committer (src/lib/groupcommit.c) on both
 * backends: jobs queued while a group is being written form the next
 * group (no larger than max_group), each job hears its own result, a
 * failing job's rows are rolled back while the others of its group
 * commit, a failing precommit step fails the whole group, and stopping
 * drains the queue.
 *
 * The SQLite tests run on files in a temporary directory; the PostgreSQL
 * ones on TEST_PG_URL, in schemas of their own (dbtest.h), and are
 * reported as not run without it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "dbtest.h"
#include "groupcommit.h"
#include "util.h"

#define JOBS_MAX 16
#define WAIT_MS 30000  /* bound on any wait for the committer */
#define FAIL_VALUE 666 /* a job with this value inserts, then fails */

/* What the jobs of one test share with it; guarded by lock. */
struct shared {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int groups;       /* precommit steps run: groups with a success */
    int gate_open;    /* the gated job may finish its run */
    int gated_inside; /* the gated job is inside its run */
    int done;         /* done() callbacks heard */
    int precommit_rc; /* what the precommit step returns */
};

struct test_job {
    struct groupcommit_job gc_job; /* first: the committer hands it back */
    struct shared *shared;
    int64_t value; /* inserted into t */
    int gated;     /* waits in run until the gate opens */
    int group;     /* shared->groups when it ran */
    int runs;
    int rc;    /* what done() heard */
    int dones; /* how often done() ran */
};

static void shared_init(struct shared *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
}

static void shared_destroy(struct shared *s)
{
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
}

/* Waits (bounded) until *flag reaches at least want; fails the test
 * otherwise. */
static void wait_for(struct shared *s, const int *flag, int want, const char *what)
{
    int64_t deadline = util_monotonic_ns() + (int64_t)WAIT_MS * 1000000;

    pthread_mutex_lock(&s->lock);
    while (*flag < want && util_monotonic_ns() < deadline) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&s->cond, &s->lock, &ts);
    }
    int got = *flag;
    pthread_mutex_unlock(&s->lock);
    if (got < want)
        fail_msg("timed out waiting for %s (%d of %d)", what, got, want);
}

static int run_job(db *conn, struct groupcommit_job *gc_job)
{
    struct test_job *job = (struct test_job *)gc_job;
    struct shared *s = job->shared;

    pthread_mutex_lock(&s->lock);
    job->runs++;
    job->group = s->groups;
    if (job->gated) {
        s->gated_inside = 1;
        pthread_cond_broadcast(&s->cond);
        while (!s->gate_open)
            pthread_cond_wait(&s->cond, &s->lock);
    }
    pthread_mutex_unlock(&s->lock);

    db_stmt *st = db_prepare(conn, "INSERT INTO t (v) VALUES ($1)");
    if (!st)
        return DB_ERROR;
    db_bind_int64(st, 1, job->value);
    int rc = db_step(st);
    db_stmt_reset(st);
    if (rc != DB_DONE)
        return rc;
    /* Its row is in: a failure now must take it back out. */
    return job->value == FAIL_VALUE ? DB_CONSTRAINT : DB_OK;
}

static void done_job(struct groupcommit_job *gc_job, int rc)
{
    struct test_job *job = (struct test_job *)gc_job;
    struct shared *s = job->shared;

    pthread_mutex_lock(&s->lock);
    job->rc = rc;
    job->dones++;
    s->done++;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static int precommit(db *conn, void *arg)
{
    struct shared *s = arg;
    (void)conn;

    pthread_mutex_lock(&s->lock);
    s->groups++;
    int rc = s->precommit_rc;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static void job_init(struct test_job *job, struct shared *s, int64_t value)
{
    memset(job, 0, sizeof(*job));
    job->gc_job.run = run_job;
    job->gc_job.done = done_job;
    job->shared = s;
    job->value = value;
}

/* Creates table t in database 0 and starts a committer on it with the
 * precommit step counting groups. */
static groupcommit *start(void **state, struct shared *s, int max_group, db **conn)
{
    char url[DBTEST_URL_MAX], err[DBTEST_ERR_MAX] = "";

    *conn = dbtest_open(state, 0, NULL);
    dbtest_exec(*conn, "CREATE TABLE t (v BIGINT NOT NULL)");
    groupcommit *gc =
        groupcommit_start(dbtest_url(state, 0, NULL, url), max_group, err, sizeof(err));
    if (!gc)
        fail_msg("groupcommit_start: %s", err);
    struct groupcommit_precommit step = {precommit, s};
    groupcommit_set_precommit(gc, &step);
    return gc;
}

static int64_t count_value(db *conn, int64_t value)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM t WHERE v = %lld", (long long)value);
    return dbtest_query_int(conn, sql);
}

/* Jobs queued while one is being written wait for it, then go together,
 * max_group at a time. */
static void test_groups_form(void **state)
{
    struct shared s;
    struct test_job jobs[6];
    db *conn;

    shared_init(&s);
    groupcommit *gc = start(state, &s, 3, &conn);
    for (int i = 0; i < 6; i++)
        job_init(&jobs[i], &s, i + 1);
    jobs[0].gated = 1;
    groupcommit_submit(gc, &jobs[0].gc_job);
    wait_for(&s, &s.gated_inside, 1, "the first job to run");
    for (int i = 1; i < 6; i++)
        groupcommit_submit(gc, &jobs[i].gc_job);
    pthread_mutex_lock(&s.lock);
    s.gate_open = 1;
    pthread_cond_broadcast(&s.cond);
    pthread_mutex_unlock(&s.lock);
    wait_for(&s, &s.done, 6, "every job's answer");

    /* Group 0: the first job alone; then 1..3 and 4..5 (max_group 3). */
    assert_int_equal(jobs[0].group, 0);
    for (int i = 1; i <= 3; i++)
        assert_int_equal(jobs[i].group, 1);
    for (int i = 4; i <= 5; i++)
        assert_int_equal(jobs[i].group, 2);
    assert_int_equal(s.groups, 3);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(jobs[i].rc, DB_OK);
        assert_int_equal(jobs[i].dones, 1);
        assert_int_equal(jobs[i].runs, 1);
        assert_int_equal(count_value(conn, i + 1), 1);
    }
    groupcommit_stop(gc);
    db_close(conn);
    shared_destroy(&s);
}

/* In one group, a job that fails hears its own error and leaves no row;
 * the others commit and hear success. */
static void test_failing_job_alone(void **state)
{
    struct shared s;
    struct test_job jobs[5];
    db *conn;

    shared_init(&s);
    groupcommit *gc = start(state, &s, 8, &conn);
    for (int i = 0; i < 5; i++)
        job_init(&jobs[i], &s, i == 2 ? FAIL_VALUE : 100 + i);
    jobs[0].gated = 1;
    groupcommit_submit(gc, &jobs[0].gc_job);
    wait_for(&s, &s.gated_inside, 1, "the first job to run");
    for (int i = 1; i < 5; i++)
        groupcommit_submit(gc, &jobs[i].gc_job);
    pthread_mutex_lock(&s.lock);
    s.gate_open = 1;
    pthread_cond_broadcast(&s.cond);
    pthread_mutex_unlock(&s.lock);
    wait_for(&s, &s.done, 5, "every job's answer");

    /* Jobs 1..4 shared one group, the failing one among them. */
    for (int i = 1; i < 5; i++)
        assert_int_equal(jobs[i].group, jobs[1].group);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(jobs[i].dones, 1);
        if (i == 2) {
            assert_int_equal(jobs[i].rc, DB_CONSTRAINT);
            assert_int_equal(count_value(conn, FAIL_VALUE), 0);
        } else {
            assert_int_equal(jobs[i].rc, DB_OK);
            assert_int_equal(count_value(conn, 100 + i), 1);
        }
    }
    groupcommit_stop(gc);
    db_close(conn);
    shared_destroy(&s);
}

/* A group whose commit fails (here its precommit step) fails every job
 * of it, and nothing of it is written; the next group is unaffected. */
static void test_failed_commit_fails_group(void **state)
{
    struct shared s;
    struct test_job jobs[3], after;
    db *conn;

    shared_init(&s);
    s.precommit_rc = DB_ERROR;
    groupcommit *gc = start(state, &s, 8, &conn);
    for (int i = 0; i < 3; i++)
        job_init(&jobs[i], &s, 200 + i);
    jobs[0].gated = 1;
    groupcommit_submit(gc, &jobs[0].gc_job);
    wait_for(&s, &s.gated_inside, 1, "the first job to run");
    pthread_mutex_lock(&s.lock);
    s.gate_open = 1;
    pthread_cond_broadcast(&s.cond);
    pthread_mutex_unlock(&s.lock);
    wait_for(&s, &s.done, 1, "the first job's answer");
    for (int i = 1; i < 3; i++)
        groupcommit_submit(gc, &jobs[i].gc_job);
    wait_for(&s, &s.done, 3, "every job's answer");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(jobs[i].rc, DB_ERROR);
        assert_int_equal(jobs[i].dones, 1);
        assert_int_equal(count_value(conn, 200 + i), 0);
    }

    pthread_mutex_lock(&s.lock);
    s.precommit_rc = DB_OK;
    pthread_mutex_unlock(&s.lock);
    job_init(&after, &s, 300);
    groupcommit_submit(gc, &after.gc_job);
    wait_for(&s, &s.done, 4, "the next job's answer");
    assert_int_equal(after.rc, DB_OK);
    assert_int_equal(count_value(conn, 300), 1);
    groupcommit_stop(gc);
    db_close(conn);
    shared_destroy(&s);
}

/* groupcommit_stop answers and commits every job queued before it. */
static void test_stop_drains(void **state)
{
    struct shared s;
    struct test_job jobs[JOBS_MAX];
    db *conn;

    shared_init(&s);
    groupcommit *gc = start(state, &s, 4, &conn);
    for (int i = 0; i < JOBS_MAX; i++) {
        job_init(&jobs[i], &s, 400 + i);
        groupcommit_submit(gc, &jobs[i].gc_job);
    }
    groupcommit_stop(gc);
    assert_int_equal(s.done, JOBS_MAX);
    for (int i = 0; i < JOBS_MAX; i++) {
        assert_int_equal(jobs[i].dones, 1);
        assert_int_equal(jobs[i].rc, DB_OK);
    }
    assert_int_equal(dbtest_query_int(conn, "SELECT count(*) FROM t"), JOBS_MAX);
    /* At most max_group per group: at least JOBS_MAX / 4 groups. */
    assert_true(s.groups >= JOBS_MAX / 4);
    db_close(conn);
    shared_destroy(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DBTEST_BOTH(test_groups_form),
        DBTEST_BOTH(test_failing_job_alone),
        DBTEST_BOTH(test_failed_commit_fails_group),
        DBTEST_BOTH(test_stop_drains),
    };

    return cmocka_run_group_tests_name("groupcommit", tests, NULL, NULL);
}
