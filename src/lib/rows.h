/*
 * rows: answering GET endpoints from query results. A service describes
 * each collection in a struct rows_list: its SELECT, a writer that turns
 * the current row into its JSON object (it may run further queries on the
 * same connection, as invoices do for their lines) and, for lists, the
 * sortable columns and the SQL of each filter. Its two GET routes carry
 * that table as their data (http.h) and have the handlers below, which
 * run the query on a pooled connection of the service (struct service,
 * service.h) and answer 200 (array or object), 400, 404 or 503.
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
    const char *id_expr;             /* GET .../{id}: "<select> WHERE <id_expr> = $1" */
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
    /* Set when write() runs queries of its own (an invoice's lines): the
     * row and what write() reads must come from one snapshot, so the
     * whole answer is read in one read-only transaction. */
    int nested_reads;
};

/* GET on a collection: validates the query string, runs the list query
 * and answers with the JSON array of its rows. */
void rows_handle_list(http_request *req, void *app);

/* GET .../{id}: answers with the row of that id, or 404. */
void rows_handle_get(http_request *req, void *app);

#endif
