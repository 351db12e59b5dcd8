#include "inbox.h"

#include <string.h>

#include "util.h"

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

int inbox_record(db *conn, const char *event_id, const char *type)
{
    db_stmt *st = db_prepare(conn, "INSERT INTO inbox (event_id, type, applied_at)"
                                   " VALUES ($1, $2, $3)"
                                   " ON CONFLICT (event_id) DO NOTHING RETURNING event_id");
    int rc;

    if (!st)
        return DB_ERROR;
    db_bind_text(st, 1, event_id, strlen(event_id));
    db_bind_text(st, 2, type, strlen(type));
    db_bind_int64(st, 3, util_now_ms());
    rc = db_step(st);
    db_stmt_reset(st);
    if (rc == DB_ROW)
        return 1;
    if (rc == DB_DONE)
        return 0;
    return rc;
}

const char inbox_attempts_schema_sqlite[] = "CREATE TABLE delivery_attempts ("
                                            "  message_key TEXT PRIMARY KEY,"
                                            "  queue TEXT NOT NULL,"
                                            "  attempts INTEGER NOT NULL,"
                                            "  last_error TEXT NOT NULL,"
                                            "  first_failed_at INTEGER NOT NULL,"
                                            "  last_failed_at INTEGER NOT NULL);";

const char inbox_attempts_schema_postgres[] = "CREATE TABLE delivery_attempts ("
                                              "  message_key TEXT PRIMARY KEY,"
                                              "  queue TEXT NOT NULL,"
                                              "  attempts INTEGER NOT NULL,"
                                              "  last_error TEXT NOT NULL,"
                                              "  first_failed_at BIGINT NOT NULL,"
                                              "  last_failed_at BIGINT NOT NULL);";

int inbox_attempt_failed(db *conn, const char *key, const char *queue, const char *error,
                         int *attempts)
{
    db_stmt *st = db_prepare(
        conn, "INSERT INTO delivery_attempts (message_key, queue, attempts, last_error,"
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
