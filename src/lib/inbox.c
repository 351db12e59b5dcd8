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
