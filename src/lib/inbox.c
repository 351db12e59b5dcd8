#include "inbox.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

#define INBOX_SQL_MAX 256 /* the insert, with a table name */

const char inbox_schema_sqlite[] =
    "CREATE TABLE inbox ("
    "  event_id TEXT PRIMARY KEY,"
    "  type TEXT NOT NULL,"
    "  applied_at INTEGER NOT NULL);";

const char inbox_schema_postgres[] =
    "CREATE TABLE inbox ("
    "  event_id TEXT PRIMARY KEY,"
    "  type TEXT NOT NULL,"
    "  applied_at BIGINT NOT NULL);";

/* Not unique: a message published straight to a queue could repeat a
 * (source, seq) under another id, and must not make its batch fail. */
const char inbox_positions_sqlite[] =
    "ALTER TABLE inbox ADD COLUMN source TEXT;"
    "ALTER TABLE inbox ADD COLUMN source_seq INTEGER;"
    "CREATE INDEX inbox_position ON inbox (source, source_seq) WHERE source_seq IS NOT NULL;";

const char inbox_positions_postgres[] =
    "ALTER TABLE inbox ADD COLUMN source TEXT;"
    "ALTER TABLE inbox ADD COLUMN source_seq BIGINT;"
    "CREATE INDEX inbox_position ON inbox (source, source_seq) WHERE source_seq IS NOT NULL;";

int inbox_record(db *conn, const char *event_id, const char *type)
{
    return inbox_record_at(conn, event_id, type, NULL, 0);
}

int inbox_record_at(db *conn, const char *event_id, const char *type, const char *source,
                    int64_t seq)
{
    return inbox_record_into(conn, "inbox", event_id, type, source, seq);
}

int inbox_record_into(db *conn, const char *table, const char *event_id, const char *type,
                      const char *source, int64_t seq)
{
    char sql[INBOX_SQL_MAX];
    db_stmt *st;
    int rc;

    rc = snprintf(sql, sizeof(sql),
                  "INSERT INTO %s (event_id, type, applied_at, source, source_seq)"
                  " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING"
                  " RETURNING event_id",
                  table);
    if (rc < 0 || (size_t)rc >= sizeof(sql))
        return DB_ERROR;
    st = db_prepare(conn, sql);
    if (!st)
        return DB_ERROR;
    db_bind_text(st, 1, event_id, strlen(event_id));
    db_bind_text(st, 2, type, strlen(type));
    db_bind_int64(st, 3, util_now_ms());
    if (source && seq > 0) {
        db_bind_str(st, 4, source);
        db_bind_int64(st, 5, seq);
    } else {
        db_bind_null(st, 4);
        db_bind_null(st, 5);
    }
    rc = db_step(st);
    db_stmt_reset(st);
    if (rc == DB_ROW)
        return 1;
    if (rc == DB_DONE)
        return 0;
    return rc;
}

int inbox_note_position(db *conn, const char *event_id, const char *source, int64_t seq)
{
    db_stmt *st;
    int rc;

    if (!source || seq <= 0)
        return 0;
    st = db_prepare(conn,
                    "UPDATE inbox SET source = $2, source_seq = $3"
                    " WHERE event_id = $1 AND source_seq IS NULL RETURNING event_id");
    if (!st)
        return DB_ERROR;
    db_bind_str(st, 1, event_id);
    db_bind_str(st, 2, source);
    db_bind_int64(st, 3, seq);
    rc = db_step(st);
    db_stmt_reset(st);
    if (rc == DB_ROW)
        return 1;
    return rc == DB_DONE ? 0 : rc;
}

int inbox_count_applied(db *conn, const char *source, int64_t first, int64_t last, int64_t *count)
{
    db_stmt *st = db_prepare(conn,
                             "SELECT count(DISTINCT source_seq) FROM inbox"
                             " WHERE source = $1 AND source_seq BETWEEN $2 AND $3");
    int rc;

    if (!st)
        return DB_ERROR;
    db_bind_str(st, 1, source);
    db_bind_int64(st, 2, first);
    db_bind_int64(st, 3, last);
    rc = db_step(st);
    if (rc == DB_ROW)
        *count = db_col_int64(st, 0);
    db_stmt_reset(st);
    return rc == DB_ROW ? DB_OK : rc < 0 ? rc : DB_ERROR;
}

const char inbox_attempts_schema_sqlite[] =
    "CREATE TABLE delivery_attempts ("
    "  message_key TEXT PRIMARY KEY,"
    "  queue TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL,"
    "  last_error TEXT NOT NULL,"
    "  first_failed_at INTEGER NOT NULL,"
    "  last_failed_at INTEGER NOT NULL);";

const char inbox_attempts_schema_postgres[] =
    "CREATE TABLE delivery_attempts ("
    "  message_key TEXT PRIMARY KEY,"
    "  queue TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL,"
    "  last_error TEXT NOT NULL,"
    "  first_failed_at BIGINT NOT NULL,"
    "  last_failed_at BIGINT NOT NULL);";

int inbox_attempt_failed(db *conn, const char *key, const char *queue, const char *error,
                         int *attempts)
{
    db_stmt *st =
        db_prepare(conn,
                   "INSERT INTO delivery_attempts (message_key, queue, attempts, last_error,"
                   " first_failed_at, last_failed_at) VALUES ($1, $2, 1, $3, $4, $4)"
                   " ON CONFLICT (message_key) DO UPDATE SET"
                   " attempts = delivery_attempts.attempts + 1, queue = excluded.queue,"
                   " last_error = excluded.last_error, last_failed_at = excluded.last_failed_at"
                   " RETURNING attempts");
    int rc;

    *attempts = 0;
    if (!st)
        return DB_ERROR;
    db_bind_str(st, 1, key);
    db_bind_str(st, 2, queue);
    db_bind_str(st, 3, error);
    db_bind_int64(st, 4, util_now_ms());
    rc = db_step(st);
    if (rc == DB_ROW)
        *attempts = (int)db_col_int64(st, 0);
    db_stmt_reset(st);
    return rc == DB_ROW ? DB_OK : rc < 0 ? rc : DB_ERROR;
}

int inbox_attempts_clear(db *conn, const char *key)
{
    db_stmt *st = db_prepare(conn, "DELETE FROM delivery_attempts WHERE message_key = $1");
    int rc;

    if (!st)
        return DB_ERROR;
    db_bind_str(st, 1, key);
    rc = db_step(st);
    db_stmt_reset(st);
    return rc == DB_DONE || rc == DB_ROW ? DB_OK : rc;
}
