/*
 * rows: answering GET endpoints from query results. A service supplies a
 * writer that turns the current row into its JSON object (it may run
 * further queries on the same connection, as invoices do for their
 * lines) and, for lists, the SQL of each filter; these helpers run the
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

struct rows_list {
    const char *select;              /* "SELECT <columns> FROM <tables>" */
    const char *const *columns;      /* sortable names, NULL-terminated */
    const char *const *column_exprs; /* their SQL expressions */
    const char *default_order;       /* ORDER BY when none is asked */
    const struct listq_filter *filters;
    /* Per filter, its condition with "$%d" where its parameter goes, e.g.
     * "user_id = $%d". Only the filters present in the query make it into
     * the WHERE clause, so each combination is its own statement and can
     * use its own index. Every piece of SQL comes from these constants. */
    const char *const *filter_sql;
    size_t filter_count;
    /* Optional: the value to bind for a text filter, malloc()ed (NULL:
     * bind the text as given). */
    char *(*text_value)(size_t filter, const char *text);
    rows_writer write;
};

/* GET .../{id}: sql takes the id as $1. */
void rows_reply_one(http_request *req, db_pool *pool, const char *sql, rows_writer write);

/* GET on a collection: validates the query string, runs the list query
 * and answers with the JSON array of its rows. */
void rows_reply_list(http_request *req, db_pool *pool, const struct rows_list *list);

#endif
