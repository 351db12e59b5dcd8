/*
 * consumer: the read side's event intake (docs/design.md). One thread, one
 * AMQP connection for consuming and one for dead letters.
 *
 * Deliveries are taken in batches (up to batch_size, bounded by prefetch)
 * and applied in ONE database transaction through the caller's apply
 * callback; after the commit, poison messages are published (confirmed)
 * to the dead-letter queue, and only then is the whole batch acked with
 * one multiple-ack. Nothing is acked before its effects are durable. On a
 * database error the transaction is rolled back and the batch is nacked
 * with requeue; on a lost connection the broker requeues it by itself.
 * Reconnects use capped exponential backoff.
 */
#ifndef LIB_CONSUMER_H
#define LIB_CONSUMER_H

#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "mq.h"

#define CONSUMER_REASON_MAX 256

enum consumer_outcome {
    CONSUMER_APPLIED = 0,
    CONSUMER_DUPLICATE = 1, /* seen before: no change */
    CONSUMER_POISON = 2,    /* can never be applied: dead-letter it */
};

/* What apply() tells about one delivery, for dead letters and metrics. */
struct consumer_result {
    char type[32];                      /* event type, or "unknown" */
    char reason[CONSUMER_REASON_MAX];   /* why it is poison */
    int64_t occurred_at_ms;             /* 0 when unknown */
};

/* Applies one delivery inside the open transaction. Returns an outcome
 * (for CONSUMER_POISON having written nothing and filled res->reason), or
 * a negative db_result to roll the batch back and retry it later. */
typedef int (*consumer_apply_fn)(db *conn, const struct mq_delivery *d,
                                 struct consumer_result *res, void *ctx);

struct consumer_config {
    const char *database_url;
    const char *amqp_url;
    const char *service;     /* connection name in the broker */
    const char *queue_type;  /* "classic" or "quorum" */
    const char *const *queues; /* NULL-terminated */
    int prefetch;
    int batch_size;
    consumer_apply_fn apply;
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
/* Stops after the batch in progress; unacked deliveries return to their
 * queues when the channel closes. */
void consumer_stop(consumer *c);

#endif
