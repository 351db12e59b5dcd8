/*
 * rows: answering GET endpoints from query results. A service supplies a
 * writer that turns the current row into its JSON object; these helpers
 * step the statement and answer 200 (array or object), 404 or 503.
 */
#ifndef LIB_ROWS_H
#define LIB_ROWS_H

#include <stdint.h>

#include "db.h"
#include "http.h"
#include "jsonw.h"
#include "listq.h"

typedef void (*rows_writer)(db_stmt *st, struct jsonw *w);

/* GET .../{id}: sql takes the id as $1. */
void rows_reply_one(http_request *req, db_pool *pool, const char *sql, rows_writer write);

/* Steps a prepared, bound statement and answers with the JSON array of
 * its rows; resets the statement. */
void rows_reply_list(http_request *req, db *conn, db_stmt *st, rows_writer write);

/* Parses the list query of req against columns and filters; answers the
 * 400 itself and returns -1 when it is invalid. */
int rows_parse_query(http_request *req, const char *const *columns,
                     const struct listq_filter *defs, size_t ndefs, struct listq *q);

#endif
