/*
 * rows: answering GET endpoints from query results. A service supplies a
 * writer that turns the current row into its JSON object (it may run
 * further queries on the same connection, as invoices do for their
 * lines) and, for lists, a binder for its filters; these helpers run the
 * query on a pooled connection and answer 200 (array or object), 400,
 * 404 or 503.
 */
#ifndef LIB_ROWS_H
#define LIB_ROWS_H

#include <stdint.h>

#include "db.h"
#include "http.h"
#include "jsonw.h"
#include "listq.h"

/* Writes the current row of st; returns DB_OK or an error. */
typedef int (*rows_writer)(db *conn, db_stmt *st, struct jsonw *w);

/* Binds the list's filters (its $1..$n before LIMIT and OFFSET). */
typedef void (*rows_binder)(db_stmt *st, const struct listq *q);

struct rows_list {
    const char *const *columns;       /* sortable names, NULL-terminated */
    const char *const *column_exprs;  /* their SQL expressions */
    const char *default_order;        /* ORDER BY when none is asked */
    const struct listq_filter *filters;
    size_t filter_count;
    /* "SELECT ... WHERE ... ORDER BY %s LIMIT $n OFFSET $n+1": %s is the
     * order (from the constants above only), limit_param is n. */
    const char *sql_format;
    int limit_param;
    rows_binder bind;
    rows_writer write;
};

/* GET .../{id}: sql takes the id as $1. */
void rows_reply_one(http_request *req, db_pool *pool, const char *sql, rows_writer write);

/* GET on a collection: validates the query string, runs the list query
 * and answers with the JSON array of its rows. */
void rows_reply_list(http_request *req, db_pool *pool, const struct rows_list *list);

#endif
