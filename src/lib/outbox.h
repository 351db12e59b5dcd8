/*
 * outbox: the transactional outbox and its relay (docs/design.md).
 *
 * A request handler calls outbox_append() inside the same database
 * transaction that writes the entity, so the event exists if and only if
 * the entity does. The relay thread reads unpublished rows in sequence
 * order, publishes them in batches on a confirm-mode channel (mandatory),
 * and marks them published only after the broker confirmed the batch. On
 * a nack, a return or a lost connection it reconnects with capped backoff
 * and retries from the first unconfirmed row. Published rows are kept: the
 * table is the service's event log.
 *
 * The envelope published (docs/api.md):
 *   {"id":"<uuid>","type":"order.created","version":1,
 *    "source":"order-service","occurred_at":"...Z","data":{...}}
 */
#ifndef LIB_OUTBOX_H
#define LIB_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "groupcommit.h"

/* Migration SQL creating the outbox table, for a service's list. */
extern const char outbox_schema_sqlite[];
extern const char outbox_schema_postgres[];

struct outbox_event {
    const char *type;           /* "order.created"; also the routing key */
    const char *data_json;      /* serialized JSON object (borrowed) */
    size_t data_len;            /* 0: data_json is NUL-terminated */
    const char *correlation_id; /* request id, may be NULL */
    int64_t occurred_at_ms;
};

/* Appends one event row inside the caller's open transaction. source is
 * the service name. Returns DB_OK or a negative db_result. */
int outbox_append(db *conn, const char *source, const struct outbox_event *ev);
/* The same, telling the row's seq: its position in this service's outbox,
 * which the relay publishes in the header MQ_SEQ_HEADER and consistency
 * tokens name (ctoken.h). */
int outbox_append_seq(db *conn, const char *source, const struct outbox_event *ev, int64_t *seq);

typedef struct outbox_relay outbox_relay;

struct outbox_relay_config {
    const char *database_url;  /* the relay opens its own connection */
    const char *amqp_url;
    const char *service;       /* app_id and "source" */
    const char *queue_type;    /* "classic" or "quorum" */
    int batch_size;            /* rows per confirmed batch */
    int poll_interval_ms;      /* fallback when no wake-up arrives */
    groupcommit *gc;           /* optional: the service's writer, through
                                  which rows are marked published; must
                                  outlive the relay */
};

/* Starts the relay thread; NULL on failure (logged). Strings are copied. */
outbox_relay *outbox_relay_start(const struct outbox_relay_config *cfg);

/* Wakes the relay at once (call after committing new events). */
void outbox_relay_wake(outbox_relay *relay);

/* Whether the relay currently holds a working broker connection. */
int outbox_relay_connected(outbox_relay *relay);

/* Stops: finishes (or abandons, if the broker is gone) the batch in
 * flight without marking unconfirmed rows, closes the connection, joins
 * the thread and frees the relay. */
void outbox_relay_stop(outbox_relay *relay);

#endif
