#include "eventlog.h"

#include <string.h>

#include "admin.h"
#include "db.h"
#include "jsonw.h"
#include "log.h"
#include "service.h"

/* event_log is the view the outbox's migration makes (outbox.h): seq on
 * SQLite, the commit-time position on PostgreSQL. Both are indexed. */
static const char sql_page[] =
    "SELECT position, body FROM event_log WHERE position > $1 ORDER BY position LIMIT $2";

static int bad(struct api_error *err, const char *message, const char *name)
{
    api_error_set(err, 400, "invalid_query", NULL, message, name);
    return -1;
}

int eventlog_parse_query(const struct query_param *params, size_t count, struct eventlog_query *out,
                         struct api_error *err)
{
    int seen_after = 0, seen_limit = 0;

    out->after = 0;
    out->limit = EVENTLOG_DEFAULT_LIMIT;
    for (size_t i = 0; i < count; i++) {
        const char *key = params[i].key, *value = params[i].value;
        int is_after = strcmp(key, "after") == 0;
        int *seen = is_after ? &seen_after : &seen_limit;

        if (!is_after && strcmp(key, "limit") != 0) {
            api_error_set(err, 400, "invalid_query", NULL,
                          "unknown query parameter; allowed: after, limit");
            return -1;
        }
        /* The wording of listq.c, so every list speaks alike. */
        if (!value || !*value)
            return bad(err, "%s must not be empty", key);
        if (*seen)
            return bad(err, "%s is given more than once", key);
        *seen = 1;
        if (is_after) {
            if (listq_parse_uint(value, &out->after) != 0)
                return bad(err, "%s must be an integer of 0 or more", key);
        } else if (listq_parse_uint(value, &out->limit) != 0 || out->limit < 1 ||
                   out->limit > EVENTLOG_MAX_LIMIT) {
            return bad(err, "%s must be an integer from 1 to 1000", key);
        }
    }
    return 0;
}

/* The page as a JSON array; DB_OK or the error. */
static int write_page(db *conn, const struct eventlog_query *q, struct jsonw *w)
{
    db_stmt *st = db_prepare(conn, sql_page);
    int rc;

    if (!st)
        return DB_ERROR;
    db_bind_int64(st, 1, q->after);
    db_bind_int64(st, 2, q->limit);
    jsonw_array_begin(w);
    while ((rc = db_step(st)) == DB_ROW) {
        jsonw_object_begin(w);
        jsonw_key(w, "position");
        jsonw_int(w, db_col_int64(st, 0));
        jsonw_key(w, "event");
        /* The body as stored is the envelope as published, byte for
         * byte; outbox_append wrote it, so it is JSON. */
        jsonw_raw(w, db_col_text(st, 1), db_col_len(st, 1));
        jsonw_object_end(w);
    }
    jsonw_array_end(w);
    db_stmt_reset(st);
    return rc == DB_DONE ? DB_OK : rc;
}

void eventlog_handle_list(http_request *req, void *app)
{
    const struct service *s = app;
    const struct query_param *params;
    size_t count;
    struct eventlog_query q;
    struct api_error err;
    struct jsonw w;

    if (!admin_authorize(req, s->cfg->admin_token))
        return;
    api_error_clear(&err);
    http_query(req, &params, &count);
    if (eventlog_parse_query(params, count, &q, &err) != 0) {
        http_reply_error(req, &err);
        return;
    }
    jsonw_init(&w);
    db *conn = db_pool_acquire(s->pool);
    int rc = write_page(conn, &q, &w);
    if (rc == DB_OK) {
        http_reply(req, 200, &w);
    } else {
        log_warn(http_request_id(req), "event log query failed: %s", db_errmsg(conn));
        service_db_error(rc, &err);
        http_reply_error(req, &err);
    }
    db_pool_release(s->pool, conn);
    jsonw_free(&w);
}
