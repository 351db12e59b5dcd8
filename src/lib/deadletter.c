#include "deadletter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "log.h"
#include "mq.h"
#include "service.h"
#include "util.h"

/* Rows re-driven per transaction (and held in memory at once). */
#define REDRIVE_CHUNK 200
#define REDRIVE_CONFIRM_TIMEOUT_MS 30000
#define REDRIVE_HEARTBEAT_S 30

/* The body is kept as hex text: bytes that are not UTF-8 (or hold a NUL)
 * fit a TEXT column of either backend that way. */
const char deadletter_schema_sqlite[] =
    "CREATE TABLE dead_letters ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  message_key TEXT NOT NULL UNIQUE,"
    "  queue TEXT NOT NULL,"
    "  reason TEXT NOT NULL,"
    "  dead_lettered_at INTEGER NOT NULL,"
    "  body_hex TEXT NOT NULL,"
    "  message_id TEXT, type TEXT, correlation_id TEXT, app_id TEXT,"
    "  timestamp_s INTEGER NOT NULL DEFAULT 0);";

const char deadletter_schema_postgres[] =
    "CREATE TABLE dead_letters ("
    "  id BIGSERIAL PRIMARY KEY,"
    "  message_key TEXT NOT NULL UNIQUE,"
    "  queue TEXT NOT NULL,"
    "  reason TEXT NOT NULL,"
    "  dead_lettered_at BIGINT NOT NULL,"
    "  body_hex TEXT NOT NULL,"
    "  message_id TEXT, type TEXT, correlation_id TEXT, app_id TEXT,"
    "  timestamp_s BIGINT NOT NULL DEFAULT 0);";

/* ---------------------------------------------------------------- bytes */

static char *hex_encode(const void *data, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = data;
    char *out = xmalloc(len * 2 + 1);
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[len * 2] = '\0';
    return out;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes hex (malloc()ed, NUL-terminated for convenience); NULL when
 * the text is not what hex_encode wrote. */
static char *hex_decode(const char *hex, size_t hex_len, size_t *len)
{
    if (hex_len % 2)
        return NULL;
    char *out = xmalloc(hex_len / 2 + 1);
    for (size_t i = 0; i < hex_len / 2; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(out);
            return NULL;
        }
        out[i] = (char)(hi << 4 | lo);
    }
    out[hex_len / 2] = '\0';
    *len = hex_len / 2;
    return out;
}

/* Length of the well-formed UTF-8 sequence at s (1..4), or 0. */
static size_t utf8_sequence(const unsigned char *s, size_t left)
{
    size_t n;
    unsigned cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        n = 2;
        cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        n = 3;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        n = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (left < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

/* Writes bytes as a JSON string; what is not UTF-8 becomes U+FFFD. */
static void write_body(struct jsonw *w, const char *bytes, size_t len)
{
    static const char replacement[] = "\xef\xbf\xbd";
    const unsigned char *s = (const unsigned char *)bytes;
    size_t i = 0, seq;

    while (i < len && (seq = utf8_sequence(s + i, len - i)) > 0)
        i += seq;
    if (i == len) {
        jsonw_string_len(w, bytes, len);
        return;
    }
    char *clean = xmalloc(len * 3 + 1);
    size_t out = 0;
    for (i = 0; i < len;) {
        seq = utf8_sequence(s + i, len - i);
        if (seq) {
            memcpy(clean + out, s + i, seq);
            out += seq;
            i += seq;
        } else {
            memcpy(clean + out, replacement, 3);
            out += 3;
            i++;
        }
    }
    jsonw_string_len(w, clean, out);
    free(clean);
}

/* --------------------------------------------------------------- record */

int deadletter_record(db *conn, const struct deadletter_entry *e)
{
    db_stmt *st =
        db_prepare(conn,
                   "INSERT INTO dead_letters (message_key, queue, reason, dead_lettered_at,"
                   " body_hex, message_id, type, correlation_id, app_id, timestamp_s)"
                   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                   " ON CONFLICT (message_key) DO UPDATE SET queue = excluded.queue,"
                   " reason = excluded.reason, dead_lettered_at = excluded.dead_lettered_at,"
                   " body_hex = excluded.body_hex");
    char *hex = hex_encode(e->body, e->body_len);
    int rc = DB_ERROR;

    if (!st)
        goto out;
    db_bind_str(st, 1, e->key);
    db_bind_str(st, 2, e->queue);
    db_bind_str(st, 3, e->reason);
    db_bind_int64(st, 4, util_now_ms());
    db_bind_str(st, 5, hex);
    db_bind_str(st, 6, e->message_id);
    db_bind_str(st, 7, e->type);
    db_bind_str(st, 8, e->correlation_id);
    db_bind_str(st, 9, e->app_id);
    db_bind_int64(st, 10, e->timestamp_s);
    rc = db_step(st);
    db_stmt_reset(st);
    rc = rc == DB_DONE || rc == DB_ROW ? DB_OK : rc;
out:
    free(hex);
    return rc;
}

/* ------------------------------------------------------------------ GET */

static int write_dead_letter(db *conn, db_stmt *st, struct jsonw *w)
{
    size_t len = 0;
    char *body = hex_decode(db_col_text(st, 4), db_col_len(st, 4), &len);
    (void)conn;

    jsonw_object_begin(w);
    jsonw_key(w, "id");
    jsonw_int(w, db_col_int64(st, 0));
    jsonw_key(w, "queue");
    jsonw_string(w, db_col_text(st, 1));
    jsonw_key(w, "reason");
    jsonw_string(w, db_col_text(st, 2));
    jsonw_key(w, "dead_lettered_at");
    jsonw_time(w, db_col_int64(st, 3));
    jsonw_key(w, "body");
    if (body)
        write_body(w, body, len);
    else
        jsonw_null(w); /* not written by this module: never happens */
    jsonw_object_end(w);
    free(body);
    return DB_OK;
}

static const char *const dl_columns[] = {"id", NULL};
static const char *const dl_column_exprs[] = {"id"};

const struct rows_list deadletter_rows = {
    .select = "SELECT id, queue, reason, dead_lettered_at, body_hex FROM dead_letters",
    .id_expr = "id",
    .columns = dl_columns,
    .column_exprs = dl_column_exprs,
    .default_order = "id",
    .filters = NULL,
    .filter_sql = NULL,
    .filter_count = 0,
    .write = write_dead_letter,
};

void deadletter_handle_list(http_request *req, void *app)
{
    const struct service *s = app;
    if (admin_authorize(req, s->cfg->admin_token))
        rows_handle_list(req, app);
}

void deadletter_handle_get(http_request *req, void *app)
{
    const struct service *s = app;
    if (admin_authorize(req, s->cfg->admin_token))
        rows_handle_get(req, app);
}

/* --------------------------------------------------------------- redrive */

/* Publishes the rows of st (from the DELETE ... RETURNING below) and
 * waits for the confirms; *rows counts them, *db_rc is the query's last
 * result (DB_DONE when it went well). MQ_OK or an error. */
static int publish_rows(mq *out, db_stmt *st, const char *service, int *rows, int *db_rc)
{
    int rc, mrc = MQ_OK;

    *rows = 0;
    while ((rc = db_step(st)) == DB_ROW) {
        size_t len = 0;
        char *body = hex_decode(db_col_text(st, 2), db_col_len(st, 2), &len);
        if (!body) {
            mrc = MQ_ERR_PROTOCOL;
            break;
        }
        struct mq_message msg = {
            .exchange = "",
            .routing_key = db_col_text(st, 1),
            .body = body,
            .body_len = len,
            .message_id = db_col_text(st, 3),
            .type = db_col_text(st, 4),
            .correlation_id = db_col_text(st, 5),
            .app_id = db_col_text(st, 6) ? db_col_text(st, 6) : service,
            .timestamp_s = db_col_int64(st, 7),
        };
        mrc = mq_publish(out, &msg);
        free(body);
        if (mrc != MQ_OK)
            break;
        (*rows)++;
    }
    *db_rc = rc == DB_ROW ? DB_DONE : rc; /* a row left: the broker failed first */
    db_stmt_reset(st);
    if (mrc == MQ_OK && *rows > 0)
        mrc = mq_wait_confirms(out, REDRIVE_CONFIRM_TIMEOUT_MS);
    return mrc;
}

/* Re-drives the rows with id in [1, up_to] (only the one id when exact),
 * REDRIVE_CHUNK per transaction. Returns the count, or -1 with err set. */
static int64_t redrive(const struct service *s, int64_t up_to, int exact, const char *request_id,
                       struct api_error *err)
{
    char mqerr[256], name[128];
    int64_t total = 0;
    mq *out = NULL;
    db *conn = NULL;

    snprintf(name, sizeof(name), "%s re-drive", s->cfg->service);
    out = mq_open(s->cfg->amqp_url, name, REDRIVE_HEARTBEAT_S, mqerr, sizeof(mqerr));
    if (!out || mq_confirm_select(out) != MQ_OK) {
        log_warn(request_id, "re-drive: cannot reach the broker: %s",
                 out ? mq_last_error(out) : mqerr);
        goto unavailable;
    }
    conn = db_pool_acquire(s->pool);
    /* Each round removes what it sent, so it ends when a round finds
     * fewer rows than a chunk; messages dead-lettered again meanwhile
     * have higher ids and wait for the next re-drive. */
    for (;;) {
        int rows = 0, rc = db_begin(conn);
        db_stmt *st = NULL;
        if (rc == DB_OK)
            st = db_prepare(conn, exact ? "DELETE FROM dead_letters WHERE id = $1"
                                          " RETURNING id, queue, body_hex, message_id, type,"
                                          " correlation_id, app_id, timestamp_s"
                                        : "DELETE FROM dead_letters WHERE id IN (SELECT id FROM"
                                          " dead_letters WHERE id <= $1 ORDER BY id LIMIT $2)"
                                          " RETURNING id, queue, body_hex, message_id, type,"
                                          " correlation_id, app_id, timestamp_s");
        if (!st) {
            log_warn(request_id, "re-drive: %s", db_errmsg(conn));
            db_rollback(conn);
            service_db_error(rc == DB_OK ? DB_ERROR : rc, err);
            goto fail;
        }
        db_bind_int64(st, 1, up_to);
        db_bind_int64(st, 2, REDRIVE_CHUNK);
        int db_rc = DB_DONE;
        int mrc = publish_rows(out, st, s->cfg->service, &rows, &db_rc);
        if (db_rc != DB_DONE) {
            /* What was sent stays listed: a later re-drive sends it
             * again, and the consumer's inbox makes that harmless. */
            log_warn(request_id, "re-drive: %s", db_errmsg(conn));
            db_rollback(conn);
            service_db_error(db_rc, err);
            goto fail;
        }
        if (mrc != MQ_OK) {
            log_warn(request_id,
                     "re-drive: the broker did not take the messages (%s); nothing"
                     " removed",
                     mq_last_error(out));
            db_rollback(conn);
            goto unavailable;
        }
        if ((rc = db_commit(conn)) != DB_OK) {
            /* Sent but still listed: a later re-drive sends them again,
             * and the consumer's inbox makes that harmless. */
            log_warn(request_id, "re-drive: commit failed: %s", db_errmsg(conn));
            service_db_error(rc, err);
            goto fail;
        }
        total += rows;
        if (exact || rows < REDRIVE_CHUNK)
            break;
    }
    if (total > 0)
        log_info(request_id, "re-drove %lld dead letter(s)", (long long)total);
    db_pool_release(s->pool, conn);
    mq_close(out);
    return total;
unavailable:
    api_error_set(err, 503, "unavailable", NULL,
                  "the broker did not confirm the re-drive; nothing was removed, retry later");
fail:
    if (conn)
        db_pool_release(s->pool, conn);
    if (out)
        mq_close(out);
    return -1;
}

static void reply_redriven(http_request *req, int64_t count)
{
    struct jsonw w;
    jsonw_init(&w);
    jsonw_object_begin(&w);
    jsonw_key(&w, "redriven");
    jsonw_int(&w, count);
    jsonw_object_end(&w);
    http_reply(req, 202, &w);
    jsonw_free(&w);
}

void deadletter_handle_redrive(http_request *req, void *app)
{
    const struct service *s = app;
    struct api_error err;

    if (!admin_authorize(req, s->cfg->admin_token) || http_refuse_query(req))
        return;
    api_error_clear(&err);
    int64_t n = redrive(s, http_path_id(req), 1, http_request_id(req), &err);
    if (n < 0) {
        http_reply_error(req, &err);
        return;
    }
    if (n == 0) {
        api_error_set(&err, 404, "not_found", NULL, "no such dead letter");
        http_reply_error(req, &err);
        return;
    }
    reply_redriven(req, n);
}

void deadletter_handle_redrive_all(http_request *req, void *app)
{
    const struct service *s = app;
    struct api_error err;
    int64_t up_to = 0;

    if (!admin_authorize(req, s->cfg->admin_token) || http_refuse_query(req))
        return;
    api_error_clear(&err);
    db *conn = db_pool_acquire(s->pool);
    db_stmt *st = db_prepare(conn, "SELECT COALESCE(MAX(id), 0) FROM dead_letters");
    int rc = st ? db_step(st) : DB_ERROR;
    if (rc == DB_ROW)
        up_to = db_col_int64(st, 0);
    if (st)
        db_stmt_reset(st);
    if (rc != DB_ROW)
        log_warn(http_request_id(req), "re-drive: %s", db_errmsg(conn));
    db_pool_release(s->pool, conn);
    if (rc != DB_ROW) {
        service_db_error(rc, &err);
        http_reply_error(req, &err);
        return;
    }
    int64_t n = up_to > 0 ? redrive(s, up_to, 0, http_request_id(req), &err) : 0;
    if (n < 0)
        http_reply_error(req, &err);
    else
        reply_redriven(req, n);
}
