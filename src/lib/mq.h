/*
 * mq: a RabbitMQ connection (rabbitmq-c) for one role: publishing with
 * confirms, or consuming with manual acks. One thread uses a connection.
 *
 * A topology is a durable topic exchange and durable queues bound to it,
 * which the caller describes (struct mq_topology; the services' own is in
 * src/contract). Declaring is idempotent. With queue type "quorum" the
 * queues are declared with x-queue-type=quorum.
 *
 * Functions return MQ_OK or a negative enum mq_result. After
 * MQ_ERR_CONNECTION the connection is unusable: close it and open anew
 * (mq_backoff_ms() gives the capped exponential delay between attempts).
 * A request the broker refuses (MQ_ERR_PROTOCOL from a declare, say) also
 * closes our channel, so later calls on that connection fail as well.
 * mq_last_error() tells what happened, for logs (never with a password).
 */
#ifndef LIB_MQ_H
#define LIB_MQ_H

#include <stddef.h>
#include <stdint.h>

/* The header in which a writer's relay sends an event's outbox seq
 * (decimal text), so the read side can record which position of which
 * writer it applied (consistency tokens, ctoken.h). */
#define MQ_SEQ_HEADER "x-outbox-seq"

typedef struct mq mq;

/* A durable queue and the routing key that binds it to the exchange. */
struct mq_binding {
    const char *queue;
    const char *routing_key; /* a topic pattern: "user.*" */
};

struct mq_topology {
    const char *exchange; /* topic, durable */
    const struct mq_binding *queues;
    size_t queue_count;
};

enum mq_result {
    MQ_OK = 0,
    MQ_TIMEOUT = 1,         /* nothing arrived in time; still usable */
    MQ_ERR_CONNECTION = -1, /* socket or channel gone */
    MQ_ERR_REJECTED = -2,   /* a publish was nacked or returned */
    MQ_ERR_PROTOCOL = -3,   /* bad URL or unexpected broker answer */
};

/* Connects (TCP, login, channel 1) to an AMQP URL such as
 * amqp://guest:guest@127.0.0.1:5672/ ; vhost "/" when the path is empty.
 * For a cluster, url may list several URLs separated by commas: they are
 * tried in order and the first that answers is used.
 * name is shown in the broker's connection list. heartbeat in seconds.
 * Returns NULL and fills err on failure. */
mq *mq_open(const char *url, const char *name, int heartbeat_s, char *err, size_t errlen);
void mq_close(mq *conn);

/* queue_type: "classic" or "quorum". Declares exchange, queues, bindings. */
int mq_declare_topology(mq *conn, const struct mq_topology *topology, const char *queue_type);
/* Declares one more durable queue (e.g. the dead-letter queue). */
int mq_declare_queue(mq *conn, const char *queue, const char *queue_type);
/* Binds queue to exchange with a routing key (idempotent). */
int mq_bind_queue(mq *conn, const char *queue, const char *exchange, const char *routing_key);
/* Deletes a queue with its messages (tests and tools). */
int mq_delete_queue(mq *conn, const char *queue);

/* Why the last call on conn failed; borrowed, valid until the next call.
 * "" when nothing failed yet. */
const char *mq_last_error(const mq *conn);

/* ---- publishing with confirms ---- */

int mq_confirm_select(mq *conn);

struct mq_header {
    const char *key;
    const char *value;
};

struct mq_message {
    const char *exchange; /* "" for the default exchange */
    const char *routing_key;
    const void *body;
    size_t body_len;
    const char *message_id;          /* optional (NULL) */
    const char *type;                /* optional */
    const char *app_id;              /* optional */
    const char *correlation_id;      /* optional */
    int64_t timestamp_s;             /* 0 = not set */
    const struct mq_header *headers; /* optional string headers */
    size_t header_count;
};

/* Publishes persistent, mandatory, content_type application/json.
 * Does not wait: confirms are collected by mq_wait_confirms(). */
int mq_publish(mq *conn, const struct mq_message *msg);

/* Waits until every message published since the last call is confirmed.
 * MQ_OK if all were acked (and none returned), MQ_ERR_REJECTED if any was
 * nacked or returned as unroutable, MQ_TIMEOUT, or MQ_ERR_CONNECTION. */
int mq_wait_confirms(mq *conn, int timeout_ms);

/* For a publisher that keeps publishing while earlier messages await
 * their confirms (never mixed with mq_wait_confirms on one connection):
 * mq_last_tag is the confirm tag of the latest publish (tags count from 1
 * after mq_confirm_select, so they restart with every connection), and
 * mq_wait_confirmed waits until every message up to tag is settled.
 * MQ_OK when all of them were acked; MQ_ERR_REJECTED as soon as one of
 * them may have been nacked or returned (a return carries no tag, so it
 * counts against the oldest unsettled one; the caller starts over from
 * there anyway); MQ_TIMEOUT; MQ_ERR_CONNECTION. */
uint64_t mq_last_tag(const mq *conn);
int mq_wait_confirmed(mq *conn, uint64_t tag, int timeout_ms);

/* Lets the library answer heartbeats while idle; MQ_OK or an error. */
int mq_poll(mq *conn);

/* ---- consuming ---- */

int mq_qos(mq *conn, uint16_t prefetch);
/* Starts consuming queue with manual acks; the consumer tag is the queue
 * name so deliveries can tell which queue they came from. */
int mq_consume(mq *conn, const char *queue);

struct mq_delivery {
    uint64_t tag;
    char *queue; /* source queue (from the consumer tag) */
    char *routing_key;
    char *message_id;    /* NULL when absent */
    char *type;          /* NULL when absent */
    int64_t timestamp_s; /* 0 when absent */
    void *body;          /* body_len bytes plus a NUL, for convenience */
    size_t body_len;
    int redelivered;
    char *correlation_id; /* NULL when absent */
    char *app_id;         /* NULL when absent */
    char *content_type;   /* NULL when absent */
    int delivery_mode;    /* 2 = persistent, 0 when absent */
    int64_t outbox_seq;   /* header MQ_SEQ_HEADER; 0 when absent or
                               not a positive integer */
    char *traceparent;    /* header "traceparent" (trace.h) as sent, not
                               yet checked; NULL when absent */
};

/* Waits up to timeout_ms for the next delivery: MQ_OK (fills *out, free
 * with mq_delivery_free), MQ_TIMEOUT, or MQ_ERR_CONNECTION. Confirms for
 * messages published on the same connection are taken in on the way, and
 * deliveries that arrive while mq_wait_confirms() or mq_poll() runs are
 * kept for this function, so one connection can consume and publish. */
int mq_next_delivery(mq *conn, int timeout_ms, struct mq_delivery *out);
void mq_delivery_free(struct mq_delivery *d);

int mq_ack(mq *conn, uint64_t tag, int multiple);
int mq_nack(mq *conn, uint64_t tag, int multiple, int requeue);

/* Capped exponential backoff: attempt 0 -> 100 ms, doubling, max 5000 ms,
 * with up to 20% jitter. */
int mq_backoff_ms(int attempt);

#endif
