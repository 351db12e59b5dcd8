/*
 * inbox: the consumer's memory of applied events. Recording an event id
 * happens in the same transaction as the event's effects, so an event is
 * either applied and remembered, or neither; a redelivered event finds
 * its id and changes nothing.
 */
#ifndef LIB_INBOX_H
#define LIB_INBOX_H

#include "db.h"

extern const char inbox_schema_sqlite[];
extern const char inbox_schema_postgres[];

/* Records event_id inside the open transaction. Returns 1 when the id is
 * new, 0 when it was applied before, or a negative db_result. */
int inbox_record(db *conn, const char *event_id, const char *type);

#endif
