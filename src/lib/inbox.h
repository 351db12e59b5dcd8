/*
 * inbox: the consumer's memory of applied events. Recording an event id
 * happens in the same transaction as the event's effects, so an event is
 * either applied and remembered, or neither; a redelivered event finds
 * its id and changes nothing.
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

#include "db.h"

extern const char inbox_schema_sqlite[];
extern const char inbox_schema_postgres[];

/* Records event_id inside the open transaction. Returns 1 when the id is
 * new, 0 when it was applied before, or a negative db_result. */
int inbox_record(db *conn, const char *event_id, const char *type);

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
