/*
 * inbox: the consumer's memory of applied events. Recording an event id
 * happens in the same transaction as the event's effects, so an event is
 * either applied and remembered, or neither; a redelivered event finds
 * its id and changes nothing.
 *
 * An event that a writer's relay published also carries its writer's
 * name (the envelope's "source") and its outbox seq; the inbox keeps both,
 * so a reader can ask whether every event a consistency token names has
 * been applied (ctoken.h), whichever consumer of a shared database
 * applied it.
 *
 * It also remembers the messages whose application failed, and how
 * often (delivery_attempts, keyed by the message's key: its event id, or
 * what stands in for one, consumer.h): the count is written in the
 * transaction of the batch that saw the failure, so it survives
 * redeliveries and restarts, and a message is dead-lettered after a
 * bounded number of attempts whatever happens to the process.
 */
#ifndef LIB_INBOX_H
#define LIB_INBOX_H

#include <stdint.h>

#include "db.h"

extern const char inbox_schema_sqlite[];
extern const char inbox_schema_postgres[];
/* A later migration: the source and seq columns and their index. */
extern const char inbox_positions_sqlite[];
extern const char inbox_positions_postgres[];

/* Records event_id inside the open transaction. Returns 1 when the id is
 * new, 0 when it was applied before, or a negative db_result. */
int inbox_record(db *conn, const char *event_id, const char *type);
/* The same, with the writer's name and the event's outbox seq (NULL and
 * 0 when the event does not tell them). */
int inbox_record_at(db *conn, const char *event_id, const char *type, const char *source,
                    int64_t seq);
/* The same into another table of the inbox's columns (a rebuild's shadow
 * inbox); table is a constant of the caller's, never input. */
int inbox_record_into(db *conn, const char *table, const char *event_id, const char *type,
                      const char *source, int64_t seq);

/* For an event_id recorded without a position (a rebuild read it from its
 * writer's log, which names events by log position, not by seq): records
 * source and seq now. Returns 1 when it did, 0 when there was nothing to
 * do (no seq given, or the row has one), or a negative db_result. */
int inbox_note_position(db *conn, const char *event_id, const char *source, int64_t seq);

/* Sets *count to how many of the seqs first..last of source are recorded.
 * Returns DB_OK or a negative db_result. */
int inbox_count_applied(db *conn, const char *source, int64_t first, int64_t last, int64_t *count);

extern const char inbox_attempts_schema_sqlite[];
extern const char inbox_attempts_schema_postgres[];

/* Counts one more failed attempt of the message key (from queue, failing
 * with error) inside the open transaction; *attempts is the count now.
 * Returns DB_OK or a negative db_result. */
int inbox_attempt_failed(db *conn, const char *key, const char *queue, const char *error,
                         int *attempts);
/* Forgets the attempts of key (applied, or dead-lettered at last). */
int inbox_attempts_clear(db *conn, const char *key);

#endif
