/*
 * db_sqlite.c: the SQLite backend of db.h (see db_internal.h for the
 * contract). conn->impl is the sqlite3 handle, a statement's impl its
 * sqlite3_stmt; both are freed here, in sqlite_close / sqlite_finalize.
 *
 * Connections are opened with SQLITE_OPEN_NOMUTEX: the db API already
 * promises one thread per connection at a time, so SQLite's own
 * per-connection mutex would only cost time.
 */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "db.h"
#include "db_internal.h"
#include "util.h"

#define SCHEME_PREFIX "sqlite:"
/* How long a writer waits for another's lock before DB_BUSY. Long enough
 * to ride out a burst of group commits, short enough that a stuck lock
 * becomes an error a client sees rather than a hung request. */
#define DEFAULT_BUSY_TIMEOUT_MS 5000
#define MAX_BUSY_TIMEOUT_MS 600000
/* Pause between attempts to switch a new file to WAL (see open_wal). */
#define WAL_RETRY_PAUSE_MS 2
/* Longest "$n" name: '$', ten digits, NUL. */
#define PARAM_NAME_MAX 16

static sqlite3 *handle_of(const db *conn)
{
    return conn->impl;
}

static sqlite3_stmt *stmt_of(const db_stmt *st)
{
    return st->impl;
}

/* rc may be an extended code: only those tell a duplicate key from the
 * other violations (all plain SQLITE_CONSTRAINT). */
static int map_code(int rc)
{
    if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY ||
        rc == SQLITE_CONSTRAINT_ROWID)
        return DB_DUPLICATE;
    switch (rc & 0xff) {
    case SQLITE_OK:
        return DB_OK;
    case SQLITE_ROW:
        return DB_ROW;
    case SQLITE_DONE:
        return DB_DONE;
    case SQLITE_CONSTRAINT:
        return DB_CONSTRAINT;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return DB_BUSY;
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_NOTADB:
    case SQLITE_PERM:
    case SQLITE_NOLFS:
    case SQLITE_PROTOCOL:
        return DB_UNAVAILABLE;
    default:
        return DB_ERROR;
    }
}

/* Records SQLite's own message for a failed call on conn. Calls answer
 * primary codes (extended result codes are off), so the connection's
 * extended code and message are taken when they are of this failure;
 * a few refusals (a bind over 2 GB) never reach the connection, and
 * then rc's generic text is all there is. */
static int fail_sqlite(db *conn, int rc, const char *what)
{
    int ext = sqlite3_extended_errcode(handle_of(conn));

    if ((ext & 0xff) != (rc & 0xff))
        return db_fail(conn, map_code(rc), "%s: %s", what, sqlite3_errstr(rc));
    return db_fail(conn, map_code(ext), "%s: %s", what, sqlite3_errmsg(handle_of(conn)));
}

/* ---- opening ------------------------------------------------------------ */

/* Options after '?', '&'-separated. Only busy_timeout=MS exists: tests
 * use it to see DB_BUSY without waiting the full default. */
static int parse_options(const char *opts, int *busy_ms, char *err, size_t errlen)
{
    static const char key[] = "busy_timeout=";
    const char *p = opts;

    while (*p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char *stop = NULL;
        long v;

        if (len < sizeof(key) - 1 || strncmp(p, key, sizeof(key) - 1) != 0) {
            db_put_err(err, errlen,
                       "sqlite: unknown URL option '%.*s' (known: "
                       "busy_timeout=MS)",
                       (int)len, p);
            return DB_ERROR;
        }
        errno = 0;
        v = strtol(p + sizeof(key) - 1, &stop, 10);
        if (errno || stop != p + len || stop == p + sizeof(key) - 1 || v < 0 ||
            v > MAX_BUSY_TIMEOUT_MS) {
            db_put_err(err, errlen, "sqlite: busy_timeout must be 0..%d milliseconds",
                       MAX_BUSY_TIMEOUT_MS);
            return DB_ERROR;
        }
        *busy_ms = (int)v;
        p += len;
        if (*p == '&')
            p++;
    }
    return DB_OK;
}

/* "sqlite:PATH" or "sqlite://PATH"; after the "//" PATH is taken as
 * written, so sqlite:///abs is absolute and sqlite://rel relative. */
static int parse_url(const char *url, char **path, int *busy_ms, char *err, size_t errlen)
{
    const char *p = url + strlen(SCHEME_PREFIX);
    const char *query;
    size_t len;

    if (strncmp(p, "//", 2) == 0)
        p += 2;
    query = strchr(p, '?');
    len = query ? (size_t)(query - p) : strlen(p);
    if (len == 0) {
        db_put_err(err, errlen, "sqlite: database URL has an empty path");
        return DB_ERROR;
    }
    *busy_ms = DEFAULT_BUSY_TIMEOUT_MS;
    if (query && parse_options(query + 1, busy_ms, err, errlen) != DB_OK)
        return DB_ERROR;
    *path = xstrndup(p, len);
    return DB_OK;
}

/* SQLite would create a missing directory's file no more than we want it
 * to, but its "unable to open database file" does not say why. */
static int check_directory(const char *path, char *err, size_t errlen)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    struct stat sb;
    int rc = DB_OK;

    if (!slash)
        dir = xstrdup(".");
    else if (slash == path)
        dir = xstrdup("/");
    else
        dir = xstrndup(path, (size_t)(slash - path));
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        db_put_err(err, errlen, "sqlite: directory '%s' of database '%s' does not exist", dir,
                   path);
        rc = DB_UNAVAILABLE;
    }
    free(dir);
    return rc;
}

/* WAL lets readers run beside the one writer; the journal_mode pragma
 * answers the mode actually in force, which is not WAL on some file
 * systems, so it is checked rather than assumed. */
static int enable_wal(sqlite3 *h, const char *path, char *err, size_t errlen)
{
    sqlite3_stmt *stmt = NULL;
    const char *mode;
    int rc;

    rc = sqlite3_prepare_v2(h, "PRAGMA journal_mode=WAL", -1, &stmt, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(stmt);
    if (rc != SQLITE_ROW) {
        db_put_err(err, errlen, "sqlite: '%s': %s", path, sqlite3_errmsg(h));
        rc = map_code(rc);
        goto out;
    }
    mode = (const char *)sqlite3_column_text(stmt, 0);
    if (!mode || sqlite3_stricmp(mode, "wal") != 0) {
        db_put_err(err, errlen, "sqlite: '%s': cannot use WAL (mode is %s)", path,
                   mode ? mode : "unknown");
        rc = DB_UNAVAILABLE;
        goto out;
    }
    rc = DB_OK;
out:
    sqlite3_finalize(stmt);
    return rc;
}

/* Switching a new file to WAL needs an exclusive lock for a moment, and
 * SQLite answers SQLITE_BUSY at once instead of calling the busy handler
 * when several connections open the same new file together (a service
 * and its relay starting, say). So the wait is done here, within the same
 * busy timeout. */
static int open_wal(sqlite3 *h, const char *path, int busy_ms, char *err, size_t errlen)
{
    const struct timespec pause = {0, WAL_RETRY_PAUSE_MS * 1000000L};
    int64_t deadline = util_monotonic_ns() + (int64_t)busy_ms * 1000000;
    int rc;

    for (;;) {
        rc = enable_wal(h, path, err, errlen);
        if (rc != DB_BUSY || util_monotonic_ns() >= deadline)
            return rc;
        nanosleep(&pause, NULL);
    }
}

static pthread_once_t configure_once = PTHREAD_ONCE_INIT;

/* Once, before the first connection (SQLite takes settings only before it
 * initialises; a process that has already used it keeps its own and the
 * call is refused harmlessly). Memory statistics off: with them on, every
 * allocation SQLite makes takes one process-wide mutex, which the HTTP
 * threads' reads then contend for (docs/performance.md, "SQLite's
 * allocation mutex"). Nothing here reads those statistics. */
static void configure_sqlite(void)
{
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

static int sqlite_open(db *conn, const char *url, char *err, size_t errlen)
{
    const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    char *path = NULL;
    sqlite3 *h = NULL;
    int busy_ms = 0;
    int rc;

    /* NOMUTEX still relies on SQLite's global locks, absent in a
     * single-threaded build. */
    if (!sqlite3_threadsafe()) {
        db_put_err(err, errlen, "sqlite: library built without threads");
        rc = DB_ERROR;
        goto out;
    }
    pthread_once(&configure_once, configure_sqlite);
    rc = parse_url(url, &path, &busy_ms, err, errlen);
    if (rc != DB_OK)
        goto out;
    rc = check_directory(path, err, errlen);
    if (rc != DB_OK)
        goto out;
    rc = sqlite3_open_v2(path, &h, flags, NULL);
    if (rc != SQLITE_OK) {
        db_put_err(err, errlen, "sqlite: cannot open '%s': %s", path,
                   h ? sqlite3_errmsg(h) : sqlite3_errstr(rc));
        rc = map_code(rc);
        goto out;
    }
    /* Set before the first pragma: switching to WAL takes a lock that
     * another process opening the same file may hold for a moment. */
    sqlite3_busy_timeout(h, busy_ms);
    rc = open_wal(h, path, busy_ms, err, errlen);
    if (rc != DB_OK)
        goto out;
    /* FULL: a commit we answered 201 for survives a power cut. */
    /* temp_store: the group commit's savepoint journals stay in memory
     * instead of spilling to a temporary file. */
    rc = sqlite3_exec(h,
                      "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
                      " PRAGMA temp_store=MEMORY",
                      NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        db_put_err(err, errlen, "sqlite: '%s': %s", path, sqlite3_errmsg(h));
        rc = map_code(rc);
        goto out;
    }
    conn->impl = h;
    h = NULL;
out:
    sqlite3_close(h);
    free(path);
    return rc;
}

static void sqlite_close(db *conn)
{
    /* db.c finalized every statement first, so plain close succeeds. */
    sqlite3_close(handle_of(conn));
    conn->impl = NULL;
}

/* ---- statements --------------------------------------------------------- */

static int sqlite_exec(db *conn, const char *sql)
{
    int rc = sqlite3_exec(handle_of(conn), sql, NULL, NULL, NULL);

    return rc == SQLITE_OK ? DB_OK : fail_sqlite(conn, rc, "exec");
}

static int is_blank(const char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    return *s == '\0';
}

static int sqlite_prepare(db *conn, const char *sql, void **impl)
{
    sqlite3 *h = handle_of(conn);
    sqlite3_stmt *stmt = NULL;
    sqlite3_stmt *extra = NULL;
    const char *tail = NULL;
    int rc;

    /* PERSISTENT: cached statements live as long as the connection. */
    rc = sqlite3_prepare_v3(h, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, &tail);
    if (rc != SQLITE_OK) {
        rc = fail_sqlite(conn, rc, "prepare");
        goto out;
    }
    if (!stmt) {
        rc = db_fail(conn, DB_ERROR, "prepare: no SQL statement in text");
        goto out;
    }
    /* SQLite would silently ignore a second statement; trailing comments
     * compile to nothing and are fine. */
    if (tail && !is_blank(tail)) {
        rc = sqlite3_prepare_v2(h, tail, -1, &extra, NULL);
        if (rc != SQLITE_OK || extra) {
            rc = db_fail(conn, DB_ERROR,
                         "prepare: more than one SQL statement (use "
                         "db_exec)");
            goto out;
        }
    }
    *impl = stmt;
    stmt = NULL;
    rc = DB_OK;
out:
    sqlite3_finalize(extra);
    sqlite3_finalize(stmt);
    return rc;
}

static void sqlite_finalize(db *conn, void *impl)
{
    (void)conn;
    sqlite3_finalize(impl);
}

/* In SQLite "$1" is a named parameter, so $n is found by name: SQL may
 * use $2 before $1 or $1 twice. 0 means the SQL does not use it. */
static int param_slot(db_stmt *st, int index)
{
    char name[PARAM_NAME_MAX];

    snprintf(name, sizeof(name), "$%d", index);
    return sqlite3_bind_parameter_index(stmt_of(st), name);
}

static int bind_result(db_stmt *st, int rc)
{
    return rc == SQLITE_OK ? DB_OK : fail_sqlite(st->conn, rc, "bind");
}

static int sqlite_bind_int64(db_stmt *st, int index, int64_t value)
{
    int slot = param_slot(st, index);

    if (slot == 0)
        return DB_OK;
    return bind_result(st, sqlite3_bind_int64(stmt_of(st), slot, value));
}

static int sqlite_bind_text(db_stmt *st, int index, const char *text, size_t len)
{
    int slot = param_slot(st, index);

    if (slot == 0)
        return DB_OK;
    return bind_result(
        st, sqlite3_bind_text64(stmt_of(st), slot, text, len, SQLITE_TRANSIENT, SQLITE_UTF8));
}

static int sqlite_bind_null(db_stmt *st, int index)
{
    int slot = param_slot(st, index);

    if (slot == 0)
        return DB_OK;
    return bind_result(st, sqlite3_bind_null(stmt_of(st), slot));
}

static int sqlite_step(db_stmt *st)
{
    int rc = sqlite3_step(stmt_of(st));

    if (rc == SQLITE_ROW)
        return DB_ROW;
    if (rc == SQLITE_DONE)
        return DB_DONE;
    return fail_sqlite(st->conn, rc, "step");
}

static void sqlite_reset(db_stmt *st)
{
    /* reset repeats the last step's error, already recorded by step. */
    sqlite3_reset(stmt_of(st));
    sqlite3_clear_bindings(stmt_of(st));
}

static int sqlite_col_is_null(db_stmt *st, int col)
{
    return sqlite3_column_type(stmt_of(st), col) == SQLITE_NULL;
}

static int64_t sqlite_col_int64(db_stmt *st, int col)
{
    return sqlite3_column_int64(stmt_of(st), col);
}

static const char *sqlite_col_text(db_stmt *st, int col)
{
    return (const char *)sqlite3_column_text(stmt_of(st), col);
}

static size_t sqlite_col_len(db_stmt *st, int col)
{
    /* text first: bytes() then text() may measure a value that text()
     * then converts, while text() then bytes() always agree. */
    sqlite3_column_text(stmt_of(st), col);
    return (size_t)sqlite3_column_bytes(stmt_of(st), col);
}

/* ---- transactions ------------------------------------------------------- */

static int sqlite_begin(db *conn)
{
    /* IMMEDIATE takes the write lock now, so waiting for it happens here
     * under the busy timeout, never as a failed commit of finished work. */
    int rc = sqlite3_exec(handle_of(conn), "BEGIN IMMEDIATE", NULL, NULL, NULL);

    return rc == SQLITE_OK ? DB_OK : fail_sqlite(conn, rc, "begin");
}

static int sqlite_commit(db *conn)
{
    int rc = sqlite3_exec(handle_of(conn), "COMMIT", NULL, NULL, NULL);

    return rc == SQLITE_OK ? DB_OK : fail_sqlite(conn, rc, "commit");
}

static int sqlite_rollback(db *conn)
{
    int rc;

    /* Error paths roll back unconditionally; SQLite may already have
     * ended the transaction itself (after an I/O error, say). */
    if (sqlite3_get_autocommit(handle_of(conn)))
        return DB_OK;
    rc = sqlite3_exec(handle_of(conn), "ROLLBACK", NULL, NULL, NULL);
    return rc == SQLITE_OK ? DB_OK : fail_sqlite(conn, rc, "rollback");
}

const struct db_backend db_sqlite_backend = {
    .name = "sqlite",
    .kind = DB_KIND_SQLITE,
    .migrations_table_sql =
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, "
        "name TEXT NOT NULL, "
        "applied_at INTEGER NOT NULL /* ms since the epoch */)",
    .open = sqlite_open,
    .close = sqlite_close,
    .exec = sqlite_exec,
    .prepare = sqlite_prepare,
    .finalize = sqlite_finalize,
    .bind_int64 = sqlite_bind_int64,
    .bind_text = sqlite_bind_text,
    .bind_null = sqlite_bind_null,
    .step = sqlite_step,
    .reset = sqlite_reset,
    .col_is_null = sqlite_col_is_null,
    .col_int64 = sqlite_col_int64,
    .col_text = sqlite_col_text,
    .col_len = sqlite_col_len,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
};
