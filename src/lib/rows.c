#include "rows.h"

#include "log.h"
#include "service.h"

void rows_reply_list(http_request *req, db *conn, db_stmt *st, rows_writer write)
{
    struct jsonw w;
    struct api_error err;
    int rc;

    jsonw_init(&w);
    jsonw_array_begin(&w);
    while ((rc = db_step(st)) == DB_ROW)
        write(st, &w);
    jsonw_array_end(&w);
    db_stmt_reset(st);
    if (rc != DB_DONE) {
        service_db_error(rc, &err);
        log_warn(http_request_id(req), "list failed: %s", db_errmsg(conn));
        http_reply_error(req, &err);
    } else {
        http_reply(req, 200, &w);
    }
    jsonw_free(&w);
}

void rows_reply_one(http_request *req, db_pool *pool, const char *sql, rows_writer write)
{
    struct jsonw w;
    struct api_error err;
    db *conn = db_pool_acquire(pool);
    db_stmt *st = db_prepare(conn, sql);
    int rc = DB_ERROR;

    jsonw_init(&w);
    if (st) {
        db_bind_int64(st, 1, http_path_id(req));
        rc = db_step(st);
        if (rc == DB_ROW)
            write(st, &w);
        db_stmt_reset(st);
    }
    if (rc == DB_ROW) {
        http_reply(req, 200, &w);
    } else if (rc == DB_DONE) {
        api_error_set(&err, 404, "not_found", NULL, "no such resource");
        http_reply_error(req, &err);
    } else {
        log_warn(http_request_id(req), "get failed: %s", db_errmsg(conn));
        service_db_error(rc, &err);
        http_reply_error(req, &err);
    }
    db_pool_release(pool, conn);
    jsonw_free(&w);
}

int rows_parse_query(http_request *req, const char *const *columns,
                     const struct listq_filter *defs, size_t ndefs, struct listq *q)
{
    const struct query_param *params;
    size_t count;
    struct api_error err;

    api_error_clear(&err);
    http_query(req, &params, &count);
    if (listq_parse(params, count, columns, defs, ndefs, q, &err) != 0) {
        http_reply_error(req, &err);
        return -1;
    }
    return 0;
}
