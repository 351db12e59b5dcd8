/*
 * deadletter: the consumer's own record of the messages it dead-lettered,
 * and the admin routes that let an operator work with them (docs/api.md "Dead
 * letters").
 *
 * The record is a table (dead_letters) of the consumer's database, one
 * row per message key (consumer.h: event id, else AMQP message_id, else a
 * hash of the body), written by deadletter_record() in the transaction of
 * the batch that decided to dead-letter the message. The consumer also
 * publishes a copy to the topology's dead-letter queue, for tools; the
 * service never reads that queue back, and a re-drive does not touch
 * it: the table is the list, the queue an audit trail the operator may
 * purge (or bound with a max-length policy).
 *
 * Re-driving publishes the stored message (body and properties as
 * received) to its original queue through the default exchange, with
 * publisher confirms, and removes its row in the same database
 * transaction, committed only after the broker confirmed: a message is
 * never both gone from the list and unsent. If it fails again, the
 * consumer records it anew (a new id, the new reason).
 *
 * The handlers take struct service (service.h) as their app pointer and
 * call admin_authorize() first: every route here is an admin route.
 */
#ifndef LIB_DEADLETTER_H
#define LIB_DEADLETTER_H

#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "http.h"
#include "rows.h"

extern const char deadletter_schema_sqlite[];
extern const char deadletter_schema_postgres[];

/* What is kept of a dead-lettered message (all borrowed; NULL for an
 * absent property). */
struct deadletter_entry {
    const char *key;
    const char *queue; /* where it came from, where a re-drive sends it */
    const char *reason;
    const void *body;
    size_t body_len;
    const char *message_id, *type, *correlation_id, *app_id;
    int64_t timestamp_s; /* 0 when absent */
};

/* Records e inside the open transaction. A message already on the list
 * (same key) keeps its id and gets the new reason and time. */
int deadletter_record(db *conn, const struct deadletter_entry *e);

/* GET .../dead-letters (limit, offset; by id) and GET .../dead-letters/{id}:
 * their routes carry deadletter_rows as data (rows.h). Each item is
 * {"id", "queue", "reason", "dead_lettered_at", "body"}, body the bytes
 * as received as a string (invalid UTF-8 shown as U+FFFD; a re-drive
 * sends the original bytes). */
extern const struct rows_list deadletter_rows;
void deadletter_handle_list(http_request *req, void *app);
void deadletter_handle_get(http_request *req, void *app);
/* Their route data is what rows_handle_list and rows_handle_get read. */
typedef rows_handle_list_data deadletter_handle_list_data; /* route.h */
typedef rows_handle_get_data deadletter_handle_get_data;
/* POST .../dead-letters/{id}/redrive and POST .../dead-letters/redrive:
 * 202 {"redriven": N}; 404 for an unknown id; 503 when the broker does
 * not confirm (nothing is removed then). */
void deadletter_handle_redrive(http_request *req, void *app);
void deadletter_handle_redrive_all(http_request *req, void *app);
typedef void deadletter_handle_redrive_data; /* no route data (route.h) */
typedef void deadletter_handle_redrive_all_data;

#endif
