#include "rows.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "service.h"

#define SQL_MAX 2048

/* Steps st, writing each row (an array, or the one object); returns
 * DB_OK, DB_DONE when single and there was no row, or an error. */
static int write_rows(db *conn, db_stmt *st, int single, const struct rows_list *list,
                      struct jsonw *w)
{
    int rc, rows = 0;

    if (!single)
        jsonw_array_begin(w);
    rc = db_step(st);
    while (rc == DB_ROW) {
        rows++;
        if (list->child_join) {
            rc = list->write(conn, st, w); /* steps past the object's rows */
        } else {
            if ((rc = list->write(conn, st, w)) != DB_OK)
                break;
            rc = db_step(st);
        }
    }
    if (!single)
        jsonw_array_end(w);
    db_stmt_reset(st);
    if (rc != DB_DONE)
        return rc;
    return single && rows == 0 ? DB_DONE : DB_OK;
}

/* sql = inner wrapped with the list's children, or inner itself. The SQL
 * comes from constants only, so it always fits; if a change ever made it
 * not fit, sql is left empty and the query fails (500) rather than run cut
 * short. */
static void with_children(const struct rows_list *list, const char *inner, const char *order,
                          char *sql, size_t size)
{
    int n;

    if (!list->child_join)
        n = snprintf(sql, size, "%s", inner);
    else
        n = snprintf(sql, size, "SELECT b.*, %s FROM (%s) b %s ORDER BY %s%s%s",
                     list->child_columns, inner, list->child_join, order ? order : "",
                     order ? ", " : "", list->child_order);
    if (n < 0 || (size_t)n >= size)
        sql[0] = '\0';
}

/* Answers 200 with w, 404 for a missing single row, or the db error. */
static void reply(http_request *req, db *conn, int rc, struct jsonw *w)
{
    struct api_error err;

    if (rc == DB_OK) {
        http_reply(req, 200, w);
        return;
    }
    if (rc == DB_DONE) {
        api_error_set(&err, 404, "not_found", NULL, "no such resource");
    } else {
        log_warn(http_request_id(req), "query failed: %s", db_errmsg(conn));
        service_db_error(rc, &err);
    }
    http_reply_error(req, &err);
}

int rows_write_one(db *conn, const struct rows_list *list, int64_t id, struct jsonw *w)
{
    char inner[SQL_MAX], sql[2 * SQL_MAX];

    snprintf(inner, sizeof(inner), "%s WHERE %s = $1", list->select, list->id_expr);
    with_children(list, inner, NULL, sql, sizeof(sql));
    db_stmt *st = db_prepare(conn, sql);
    if (!st)
        return DB_ERROR;
    db_bind_int64(st, 1, id);
    return write_rows(conn, st, 1, list, w);
}

void rows_handle_get(http_request *req, void *app)
{
    const struct service *s = app;
    const rows_handle_get_data *list = http_route_data(req);
    struct jsonw w;

    if (http_refuse_query(req))
        return;
    db *conn = db_pool_acquire(s->pool);
    jsonw_init(&w);
    int rc = rows_write_one(conn, list, http_path_id(req), &w);
    reply(req, conn, rc, &w);
    db_pool_release(s->pool, conn);
    jsonw_free(&w);
}

/* "<select> WHERE <present filters> ORDER BY <order> LIMIT $n OFFSET $m";
 * returns the number of the LIMIT parameter. */
static int build_list_sql(const struct rows_list *list, const struct listq *q, char *sql,
                          size_t size)
{
    char order[128];
    int param = 1;
    size_t used = (size_t)snprintf(sql, size, "%s", list->select);

    for (size_t f = 0; f < list->filter_count && used < size; f++) {
        if (!q->filters[f].present)
            continue;
        used += (size_t)snprintf(sql + used, size - used, param == 1 ? " WHERE " : " AND ");
        if (used < size)
            used += (size_t)snprintf(sql + used, size - used, list->filter_sql[f], param);
        param++;
    }
    listq_order_sql(q, list->column_exprs, list->default_order, order, sizeof(order));
    if (used < size)
        snprintf(sql + used, size - used, " ORDER BY %s LIMIT $%d OFFSET $%d", order, param,
                 param + 1);
    return param;
}

static void bind_filters(db_stmt *st, const struct rows_list *list, const struct listq *q)
{
    int param = 1;

    for (size_t f = 0; f < list->filter_count; f++) {
        const struct listq_value *v = &q->filters[f];
        if (!v->present)
            continue;
        if (list->filters[f].kind == LISTQ_ID || list->filters[f].kind == LISTQ_INT_RANGE) {
            db_bind_int64(st, param++, v->num);
            continue;
        }
        char *value = list->text_value ? list->text_value(f, v->text) : NULL;
        db_bind_str(st, param++, value ? value : v->text); /* the binding copies */
        free(value);
    }
}

void rows_handle_list(http_request *req, void *app)
{
    const struct service *s = app;
    const rows_handle_list_data *list = http_route_data(req);
    const struct query_param *params;
    size_t count;
    struct api_error err;
    struct listq q;
    char inner[SQL_MAX], sql[2 * SQL_MAX], order[128];
    struct jsonw w;

    api_error_clear(&err);
    http_query(req, &params, &count);
    if (listq_parse(params, count, list->columns, list->filters, list->filter_count, &q, &err) !=
        0) {
        http_reply_error(req, &err);
        return;
    }
    int limit_param = build_list_sql(list, &q, inner, sizeof(inner));
    if (list->child_join)
        listq_order_sql(&q, list->outer_exprs, list->outer_default_order, order, sizeof(order));
    with_children(list, inner, order, sql, sizeof(sql));

    db *conn = db_pool_acquire(s->pool);
    db_stmt *st = db_prepare(conn, sql);
    int rc = DB_ERROR;

    jsonw_init(&w);
    if (st) {
        bind_filters(st, list, &q);
        db_bind_int64(st, limit_param, q.limit);
        db_bind_int64(st, limit_param + 1, q.offset);
        rc = write_rows(conn, st, 0, list, &w);
    }
    reply(req, conn, rc, &w);
    db_pool_release(s->pool, conn);
    jsonw_free(&w);
}
