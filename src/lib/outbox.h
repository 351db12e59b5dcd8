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
 *   {"id":"<uuid>","type":"<type>","version":1,
 *    "source":"<service>","occurred_at":"...Z","data":{...}}
 */
#ifndef LIB_OUTBOX_H
#define LIB_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "groupcommit.h"
#include "mq.h"

/* Migration SQL creating the outbox table, for a service's list. */
extern const char outbox_schema_sqlite[];
extern const char outbox_schema_postgres[];
/* The next migration, for both backends: the traceparent column. */
extern const char outbox_trace_schema[];

/*
 * The event log (docs/eventlog.md): every committed row of the outbox,
 * in commit order, under a position that never changes. The migration
 * below (after outbox_schema_*) creates the view event_log(position,
 * body), which the log route reads.
 *
 * SQLite: the position is seq. PostgreSQL: seq is taken at INSERT, not at
 * COMMIT, so rows get a separate position just before their transaction
 * commits, by outbox_assign_positions(), in the order of the commits.
 * Every transaction that appends must therefore call it right before its
 * COMMIT (the writers' group commit does, as its precommit step); a row
 * committed without a position is not in the log until the next
 * transaction that calls it.
 */
extern const char outbox_positions_schema_sqlite[];
extern const char outbox_positions_schema_postgres[];

/* Gives the rows this transaction appended their log positions (see
 * above); service names the lock. Call last before COMMIT, in the same
 * transaction. A no-op on SQLite, and on PostgreSQL when the transaction
 * appended nothing; else it waits for the service's position lock, held
 * until COMMIT. Returns DB_OK or a negative db_result. */
int outbox_assign_positions(db *conn, const char *service);

struct outbox_event {
    const char *type;           /* the event's type; also the routing key */
    const char *data_json;      /* serialized JSON object (borrowed) */
    size_t data_len;            /* 0: data_json is NUL-terminated */
    const char *correlation_id; /* request id, may be NULL */
    int64_t occurred_at_ms;
    const char *traceparent; /* the event's span (trace.h), may be NULL */
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
    const char *database_url; /* the relay opens its own connection */
    const char *amqp_url;
    const char *service;    /* app_id and "source" */
    const char *queue_type; /* "classic" or "quorum" */
    /* Declared at every connect; events go to its exchange. It must
     * outlive the relay (static data). */
    const struct mq_topology *topology;
    int batch_size;       /* rows per confirmed batch */
    int poll_interval_ms; /* fallback when no wake-up arrives */
    groupcommit *gc;      /* optional: the service's writer, through
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
