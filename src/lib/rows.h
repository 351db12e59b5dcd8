/*
 * rows: answering GET endpoints from query results. A service describes
 * each collection in a struct rows_list: its SELECT, a writer that turns
 * the current row into its JSON object and, for lists, the
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

/* Writes the current row of st; returns DB_OK or an error. For a list with
 * children (below), st is on the first row of an object and the writer
 * steps through all of that object's rows: it returns what the step after
 * them returned (DB_ROW: st is on the next object's first row; DB_DONE;
 * or an error). */
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
    /* Optional: a list inside each object (an invoice's lines), read by
     * the same statement so that an object and its children come from one
     * snapshot in one round trip, however many objects a page holds:
     *   SELECT b.*, <child_columns> FROM (<the query above>) b <child_join>
     *   ORDER BY <the order, over outer_exprs>, id, <child_order>
     * Each object's rows come together (ordered by the object's order,
     * then its id), the columns of the query first, the children's after
     * them (NULL for an object without children, with a LEFT JOIN). */
    const char *child_columns;      /* "l.a, l.b" */
    const char *child_join;         /* "LEFT JOIN t l ON l.parent = b.id" */
    const char *child_order;        /* "l.a, l.b" */
    const char *const *outer_exprs; /* column_exprs as named outside: "b.total" */
    const char *outer_default_order;
};

/* GET on a collection: validates the query string, runs the list query
 * and answers with the JSON array of its rows. */
void rows_handle_list(http_request *req, void *app);
typedef struct rows_list rows_handle_list_data; /* route data (route.h) */

/* Writes the object of row id of list (its select WHERE its id_expr = id,
 * children included) to w: DB_OK, DB_DONE when there is no such row, or
 * the error. For a handler that answers one row its own way (a rebuild's
 * status); rows_handle_get is this plus the usual answers. */
int rows_write_one(db *conn, const struct rows_list *list, int64_t id, struct jsonw *w);

/* GET .../{id}: answers with the row of that id, or 404. */
void rows_handle_get(http_request *req, void *app);
typedef struct rows_list rows_handle_get_data;

#endif
