#include "groupcommit.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "metrics.h"
#include "util.h"
#include "worker.h"

struct groupcommit {
    char *url;
    int max_group;
    db *conn; /* the committer's own; NULL after it was found broken */

    struct worker w; /* its lock guards the queue */
    struct groupcommit_job *head, *tail;

    struct groupcommit_chore chore;         /* run is NULL when there is none */
    int64_t chore_due_ns;                   /* util_monotonic_ns() time */
    struct groupcommit_precommit precommit; /* run is NULL when there is none */
};

/* Makes sure the committer has a connection; DB_OK or DB_UNAVAILABLE. */
static int open_conn(groupcommit *gc)
{
    if (gc->conn && !db_alive(gc->conn)) {
        db_close(gc->conn); /* the server went away since the last group */
        gc->conn = NULL;
    }
    if (!gc->conn) {
        char err[UTIL_ERR_MAX];
        if (db_open(gc->url, &gc->conn, err, sizeof(err)) != DB_OK) {
            log_warn(NULL, "group commit: cannot open the database: %s", err);
            gc->conn = NULL;
            return DB_UNAVAILABLE;
        }
    }
    return DB_OK;
}

/* Runs one job inside its savepoint. */
static void run_job(db *conn, struct groupcommit_job *job, int *rc)
{
    if (db_exec(conn, "SAVEPOINT job") != DB_OK) {
        *rc = DB_ERROR;
        return;
    }
    *rc = job->run(conn, job);
    if (*rc != DB_OK)
        db_exec(conn, "ROLLBACK TO SAVEPOINT job");
    db_exec(conn, "RELEASE SAVEPOINT job");
}

/* One transaction for the whole group; then every job hears its fate. */
static void commit_group(groupcommit *gc, struct groupcommit_job *group, int count)
{
    int rcs_local[64];
    int *rcs = count <= 64 ? rcs_local : xcalloc((size_t)count, sizeof(int));
    int rc = open_conn(gc), i = 0, relaxed = 1;
    struct groupcommit_job *job, *next;

    for (job = group; job; job = job->next)
        relaxed = relaxed && job->relaxed;
    /* No request waits on a relaxed group: it need not pay an fsync. */
    if (rc == DB_OK && relaxed)
        relaxed = db_set_durable(gc->conn, 0) == DB_OK;
    if (rc == DB_OK)
        rc = db_begin(gc->conn);
    if (rc == DB_OK) {
        int succeeded = 0;
        for (job = group, i = 0; job; job = job->next, i++) {
            run_job(gc->conn, job, &rcs[i]);
            succeeded |= rcs[i] == DB_OK;
        }
        if (succeeded && gc->precommit.run)
            rc = gc->precommit.run(gc->conn, gc->precommit.arg);
        if (rc == DB_OK)
            rc = db_commit(gc->conn);
        if (rc != DB_OK) {
            log_warn(NULL, "group commit of %d failed: %s", count, db_errmsg(gc->conn));
            db_rollback(gc->conn);
        }
    }
    /* A connection that cannot be made durable again is not used again
     * (the group's own outcome stands: it was committed or not). */
    if (relaxed && gc->conn && db_set_durable(gc->conn, 1) != DB_OK) {
        db_close(gc->conn);
        gc->conn = NULL;
    }
    if (rc == DB_UNAVAILABLE && gc->conn) {
        db_close(gc->conn); /* reopened for the next group */
        gc->conn = NULL;
    }
    metrics_observe("group_commit_size", NULL, count);
    for (job = group, i = 0; job; job = next, i++) {
        next = job->next; /* done() may free the job */
        job->done(job, rc == DB_OK ? rcs[i] : rc);
    }
    if (rcs != rcs_local)
        free(rcs);
}

/* The chore in a transaction of its own; then when it is due again.
 * Without a working connection it waits for the next group to make one,
 * rather than retrying (and logging) a lost database every period. */
static void run_chore(groupcommit *gc)
{
    int rc = gc->conn && db_alive(gc->conn) ? DB_OK : DB_UNAVAILABLE, done = 0;

    if (rc == DB_OK)
        rc = db_begin(gc->conn);
    if (rc == DB_OK) {
        done = gc->chore.run(gc->conn, gc->chore.arg);
        rc = done < 0 ? done : db_commit(gc->conn);
        if (rc != DB_OK) {
            log_debug(NULL, "group commit chore failed: %s", db_errmsg(gc->conn));
            db_rollback(gc->conn);
        }
    }
    if (rc == DB_UNAVAILABLE && gc->conn) {
        db_close(gc->conn);
        gc->conn = NULL;
    }
    gc->chore_due_ns = util_monotonic_ns();
    if (rc != DB_OK || done < gc->chore.batch)
        gc->chore_due_ns += (int64_t)gc->chore.period_ms * 1000000;
}

static int chore_due(const groupcommit *gc)
{
    return gc->chore.run && util_monotonic_ns() >= gc->chore_due_ns;
}

static void *committer(void *arg)
{
    groupcommit *gc = arg;

    pthread_mutex_lock(&gc->w.lock);
    for (;;) {
        while (!gc->head && !worker_stopping(&gc->w) && !chore_due(gc))
            worker_wait_until(&gc->w, gc->chore.run ? gc->chore_due_ns : WORKER_FOREVER);
        if (!gc->head && worker_stopping(&gc->w))
            break;       /* nothing left */
        if (!gc->head) { /* idle, and the chore is due */
            pthread_mutex_unlock(&gc->w.lock);
            run_chore(gc);
            pthread_mutex_lock(&gc->w.lock);
            continue;
        }
        /* Take up to max_group jobs off the queue. */
        struct groupcommit_job *group = gc->head, *last = gc->head;
        int count = 1;
        while (last->next && count < gc->max_group) {
            last = last->next;
            count++;
        }
        gc->head = last->next;
        if (!gc->head)
            gc->tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&gc->w.lock);
        commit_group(gc, group, count);
        pthread_mutex_lock(&gc->w.lock);
        if (!worker_stopping(&gc->w) && chore_due(gc)) { /* between groups, never during one */
            pthread_mutex_unlock(&gc->w.lock);
            run_chore(gc);
            pthread_mutex_lock(&gc->w.lock);
        }
    }
    pthread_mutex_unlock(&gc->w.lock);
    return NULL;
}

groupcommit *groupcommit_start(const char *url, int max_group, char *err, size_t errlen)
{
    groupcommit *gc = xcalloc(1, sizeof(*gc));

    gc->url = xstrdup(url);
    gc->max_group = max_group > 0 ? max_group : 1;
    if (db_open(url, &gc->conn, err, errlen) != DB_OK) {
        free(gc->url);
        free(gc);
        return NULL;
    }
    metrics_describe("group_commit_size", "histogram",
                     "Write requests sharing one durable commit.");
    if (worker_start(&gc->w, committer, gc) != 0) {
        snprintf(err, errlen, "cannot start the group-commit thread");
        db_close(gc->conn);
        free(gc->url);
        free(gc);
        return NULL;
    }
    return gc;
}

void groupcommit_set_chore(groupcommit *gc, const struct groupcommit_chore *chore)
{
    pthread_mutex_lock(&gc->w.lock);
    gc->chore = *chore;
    if (gc->chore.period_ms < 1)
        gc->chore.period_ms = 1;
    gc->chore_due_ns = util_monotonic_ns() + (int64_t)gc->chore.period_ms * 1000000;
    worker_signal(&gc->w);
    pthread_mutex_unlock(&gc->w.lock);
}

void groupcommit_set_precommit(groupcommit *gc, const struct groupcommit_precommit *step)
{
    pthread_mutex_lock(&gc->w.lock);
    gc->precommit = *step;
    pthread_mutex_unlock(&gc->w.lock);
}

void groupcommit_submit(groupcommit *gc, struct groupcommit_job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&gc->w.lock);
    if (gc->tail)
        gc->tail->next = job;
    else
        gc->head = job;
    gc->tail = job;
    worker_signal(&gc->w);
    pthread_mutex_unlock(&gc->w.lock);
}

void groupcommit_stop(groupcommit *gc)
{
    if (!gc)
        return;
    worker_stop(&gc->w); /* the queue is drained first */
    if (gc->conn)
        db_close(gc->conn);
    free(gc->url);
    free(gc);
}
