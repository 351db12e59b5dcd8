/*
 * consumer: the read side's event intake (docs/design.md). One thread, one
 * AMQP connection for consuming and one for dead letters.
 *
 * Deliveries are taken in batches (up to batch_size, bounded by prefetch)
 * and applied in ONE database transaction through the caller's apply
 * callback; after the commit, poison messages are published (confirmed)
 * to the dead-letter queue, and only then is the batch acked. Nothing is
 * acked before its effects are durable.
 *
 * One message cannot block the others. When apply() fails for a message
 * with a database error that is not transient, the batch is rolled back
 * and applied again with each delivery in its own savepoint: the failing
 * one is rolled back to its savepoint, its failed attempt is counted in
 * the inbox (inbox.h, same transaction, so the count survives
 * redeliveries and restarts), and the rest commits. The failed message is
 * nacked back to its queue and retried after a backoff, until it has
 * failed max_attempts times; then it is dead-lettered with the database's
 * error text as the reason. A dead-lettered message is recorded in the
 * dead_letters table (deadletter.h) in the transaction that decided it.
 *
 * Transient failures (the database busy or unreachable, the broker gone,
 * a commit that fails) roll the whole batch back and nack it with
 * requeue, count no attempt and dead-letter nothing; reconnects use
 * capped exponential backoff. They are visible: consecutive failed
 * batches and the age of the oldest delivery not yet applied are metrics,
 * and consumer_check() fails once that age passes stall_s.
 */
#ifndef LIB_CONSUMER_H
#define LIB_CONSUMER_H

#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "mq.h"
#include "util.h"

#define CONSUMER_REASON_MAX (UTIL_ERR_MAX + 64) /* an error and what it was doing */
#define CONSUMER_KEY_MAX 256

enum consumer_outcome {
    CONSUMER_APPLIED = 0,
    CONSUMER_DUPLICATE = 1, /* seen before: no change */
    CONSUMER_POISON = 2,    /* can never be applied: dead-letter it */
    CONSUMER_RETRY = 3,     /* the consumer's own: failed, to be retried */
};

/* What apply() tells about one delivery, for dead letters and metrics. */
struct consumer_result {
    char type[32];                    /* event type, or "unknown" */
    char reason[CONSUMER_REASON_MAX]; /* why it is poison */
    int64_t occurred_at_ms;           /* 0 when unknown */
    /* The message's identity for attempts and dead letters: apply() sets
     * the event id when it knows one; else the consumer uses the AMQP
     * message_id, else a hash of the body. */
    char key[CONSUMER_KEY_MAX];
};

/* Applies one delivery inside the open transaction. Returns an outcome
 * (for CONSUMER_POISON having written nothing and filled res->reason), or
 * a negative db_result: DB_BUSY and DB_UNAVAILABLE roll the batch back to
 * retry it later; any other is this message's failure (see above). It may
 * run twice for one delivery (the second time in a savepoint). */
typedef int (*consumer_apply_fn)(db *conn, const struct mq_delivery *d, struct consumer_result *res,
                                 void *ctx);

struct consumer_config {
    const char *database_url;
    const char *amqp_url;
    const char *service;    /* connection name in the broker */
    const char *queue_type; /* "classic" or "quorum" */
    /* Declared at every connect, and every queue of it consumed; it must
     * outlive the consumer (static data). */
    const struct mq_topology *topology;
    const char *dead_letter_queue; /* declared too; poison messages go there */
    int prefetch;
    int batch_size;
    int max_attempts; /* failed applications before a dead letter, >= 1 */
    int stall_s;      /* failing this long makes consumer_check() fail */
    consumer_apply_fn apply;
    /* Optional: runs first in each batch's transaction, before any
     * apply(), so that the callbacks decide once per transaction what
     * they need to know (the invoice service: whether a rebuild runs).
     * Returns DB_OK, or a negative db_result that fails the batch. */
    int (*begin)(db *conn, void *ctx);
    /* Optional: runs on the consumer's thread after each commit of
     * applied events, so that whoever waits for them (readwait.h) looks
     * again. */
    void (*committed)(void *ctx);
    void *ctx;
};

typedef struct consumer consumer;

/* Starts the thread (strings are copied); NULL on failure (logged). */
consumer *consumer_start(const struct consumer_config *cfg);
int consumer_connected(consumer *c);
/* For /readyz: 1 when the consumer is not stuck; else 0 with problem
 * filled (how many batches failed in a row, how long the oldest delivery
 * has waited, the last error). */
int consumer_check(consumer *c, char *problem, size_t len);
/* Stops after the batch in progress; unacked deliveries return to their
 * queues when the channel closes. */
void consumer_stop(consumer *c);

#endif
