/*
 * groupcommit: durable writes that share their fsync.
 *
 * With synchronous=FULL every commit costs an fsync. Requests that arrive
 * together are therefore written by one committer thread in ONE
 * transaction, each inside its own savepoint (so one request's conflict
 * rolls back only its own rows), and all are answered after that single
 * commit. No request hears success before its rows are durable, and a
 * failed commit fails every request of the group.
 *
 * A job is owned by its submitter and must stay valid until its done()
 * callback has run; done() runs on the committer thread.
 */
#ifndef LIB_GROUPCOMMIT_H
#define LIB_GROUPCOMMIT_H

#include "db.h"

typedef struct groupcommit groupcommit;
struct groupcommit_job;

/* Writes inside the open transaction; returns DB_OK or an error (the
 * job's savepoint is then rolled back). */
typedef int (*groupcommit_run_fn)(db *conn, struct groupcommit_job *job);
/* Told the final outcome: DB_OK only if the group committed. */
typedef void (*groupcommit_done_fn)(struct groupcommit_job *job, int rc);

struct groupcommit_job {
    groupcommit_run_fn run;
    groupcommit_done_fn done;
    void *arg;
    /* 1: the job's writes may be lost in a power cut (they are redone
     * anyway, like marking outbox rows published). A group made only of
     * such jobs commits without waiting for the disk (db_set_durable);
     * in a group with any other job they are as durable as it is. */
    int relaxed;
    struct groupcommit_job *next; /* queue link, owned by groupcommit */
};

/* Starts the committer with its own connection to url; NULL on failure
 * (err filled). max_group bounds the jobs sharing one transaction. */
groupcommit *groupcommit_start(const char *url, int max_group, char *err, size_t errlen);

/* Housekeeping the committer does between groups, in a transaction of
 * its own, so it never holds a write lock that a request waits for: run
 * returns how much it did (0 when there was nothing to do) or a negative
 * db_result. It runs every period_ms, and again right after the next
 * group (or at once when idle) while it reports full batches (>= batch).
 * arg must outlive the committer. */
struct groupcommit_chore {
    int (*run)(db *conn, void *arg);
    void *arg;
    int period_ms;
    int batch;
};

/* Sets the chore (one per committer; call before submitting jobs). */
void groupcommit_set_chore(groupcommit *gc, const struct groupcommit_chore *chore);

/* A step run once per group after its jobs, inside the same transaction,
 * right before COMMIT, when at least one job succeeded (the writers
 * give their events log positions in commit order there: outbox.h). A
 * failure rolls the whole group back and is what every job hears. arg
 * must outlive the committer. */
struct groupcommit_precommit {
    int (*run)(db *conn, void *arg);
    void *arg;
};

/* Sets the precommit step (call before submitting jobs). */
void groupcommit_set_precommit(groupcommit *gc, const struct groupcommit_precommit *step);

/* Queues a job; its done() will be called exactly once. */
void groupcommit_submit(groupcommit *gc, struct groupcommit_job *job);

/* Finishes every queued job, then stops the thread and frees. */
void groupcommit_stop(groupcommit *gc);

#endif
