/*
 * db: one small database API over SQLite and PostgreSQL.
 *
 * SQL is written once with $1..$n parameters. A connection (struct db) is
 * used by one thread at a time; a pool hands connections to threads.
 * Prepared statements are cached on their connection, keyed by SQL text,
 * and owned by it: callers never free them.
 *
 * Usage:
 *   db_stmt *st = db_prepare(conn, "SELECT name FROM users WHERE id = $1");
 *   if (!st) goto fail;
 *   db_bind_int64(st, 1, id);
 *   while ((rc = db_step(st)) == DB_ROW) { ... db_col_text(st, 0) ... }
 *   db_stmt_reset(st);   // always, also after an error
 *
 * A failed bind also sticks to its statement and is what the next
 * db_step returns, so a caller may bind without checking every call and
 * still never runs a statement with a value missing.
 *
 * Results: DB_OK / DB_ROW / DB_DONE, or a negative enum db_result code.
 * db_errmsg() gives the last error text for logs only (never for clients).
 */
#ifndef LIB_DB_H
#define LIB_DB_H

#include <stddef.h>
#include <stdint.h>

typedef struct db db;
typedef struct db_stmt db_stmt;
typedef struct db_pool db_pool;

enum db_result {
    DB_OK = 0,
    DB_ROW = 1,
    DB_DONE = 2,
    DB_ERROR = -1,       /* anything else: a bug or a corrupt database */
    DB_CONSTRAINT = -2,  /* foreign key / check / not null violated */
    DB_BUSY = -3,        /* locked past the busy timeout: retry later */
    DB_UNAVAILABLE = -4, /* connection lost, disk full, cannot open */
    /* A unique or primary key already holds the value (SQLite's
     * SQLITE_CONSTRAINT_UNIQUE / _PRIMARYKEY / _ROWID, PostgreSQL's
     * SQLSTATE 23505): the one violation a caller can blame on its
     * client's data. Every other violation is DB_CONSTRAINT. */
    DB_DUPLICATE = -5,
};

enum db_kind { DB_KIND_SQLITE, DB_KIND_POSTGRES };

/* url: "sqlite:PATH", "sqlite://PATH" (PATH relative or absolute, so
 * sqlite:///abs/file.db is absolute) or
 * "postgres://USER:PASSWORD@HOST:PORT/DB" ("postgresql://" too).
 *
 * SQLite: a missing file is created, a missing directory is an error.
 * Connections are set to WAL, synchronous=FULL, foreign_keys=ON and a
 * busy timeout of 5000 ms; "sqlite:PATH?busy_timeout=MS" changes the
 * timeout (tests use it to see DB_BUSY quickly).
 *
 * PostgreSQL: every table lives in one schema, "demo" unless the URL
 * says "?schema=NAME" (letters, digits, '_'); search_path is set to it,
 * and db_migrate creates it if missing. A lock wait past 5000 ms is
 * DB_BUSY ("?busy_timeout=MS" changes it, 0 waits for ever). Other query
 * options go to libpq (sslmode, connect_timeout, which defaults to 10 s).
 * SQL runs as written: $1..$n are PostgreSQL's own parameters, and a
 * parameter whose type the server cannot infer (first seen in
 * "$1 IS NULL") is taken as bigint, or text where bigint does not fit.
 * Text cannot hold a NUL byte there, nor be longer than 1 GB - 1 byte
 * (binding either is DB_ERROR).
 *
 * On failure *out is NULL and err says why (never echoing a password):
 * DB_UNAVAILABLE when the server cannot be reached, DB_ERROR for a bad
 * URL. */
int db_open(const char *url, db **out, char *err, size_t errlen);
void db_close(db *conn);

enum db_kind db_kind(const db *conn);
const char *db_errmsg(const db *conn);
/* The db_result of the connection's last failure (DB_OK once cleared), so
 * that a caller handed a bare DB_ERROR (a failed db_prepare returns NULL)
 * can still tell a lock timeout or a lost server from a real error. */
int db_last_error(const db *conn);
void db_clear_error(db *conn);

/* Runs SQL without parameters or results (may hold several statements). */
int db_exec(db *conn, const char *sql);

/* Returns the cached or newly prepared statement, reset with bindings
 * cleared; NULL on error (see db_errmsg). The pointer is good until
 * db_stmt_reset; to run it again, call db_prepare again (a cache hit).
 * One SQL statement per call; several belong in db_exec. */
db_stmt *db_prepare(db *conn, const char *sql);

/* index is the n of $n (1-based); an index the SQL does not use is
 * ignored. Text is copied; NULL text binds SQL NULL.
 *
 * Each returns DB_OK or the error, which also sticks to the statement:
 * db_step then returns the first failed bind's code (and db_errmsg its
 * message) without running the statement, until db_stmt_reset or the
 * next db_prepare. Binds fail on an index below 1, a text longer than
 * the engine takes (SQLite's length limit, 1 GB by default), the
 * engine running out of memory, and PostgreSQL's text rules above. */
int db_bind_int64(db_stmt *st, int index, int64_t value);
int db_bind_text(db_stmt *st, int index, const char *text, size_t len);
int db_bind_null(db_stmt *st, int index);
/* A NUL-terminated string, or SQL NULL when text is NULL. */
int db_bind_str(db_stmt *st, int index, const char *text);

int db_step(db_stmt *st);
void db_stmt_reset(db_stmt *st);

/* Column reads on the current row (0-based). Text is borrowed until the
 * next step or reset; NULL for SQL NULL. */
int db_col_is_null(db_stmt *st, int col);
int64_t db_col_int64(db_stmt *st, int col);
const char *db_col_text(db_stmt *st, int col);
size_t db_col_len(db_stmt *st, int col);

/* Transactions. db_begin starts a write transaction (BEGIN IMMEDIATE on
 * SQLite so lock waits happen up front, not at commit). On PostgreSQL a
 * failed statement aborts the whole transaction (a failed db_prepare does
 * not): roll back, or to a savepoint taken before it; db_commit of an
 * aborted transaction rolls it back and returns DB_ERROR. */
int db_begin(db *conn);
int db_commit(db *conn);
/* With durable 0, the connection's later commits no longer wait for the
 * disk: each is visible at once and consistent after a crash, but a power
 * cut (SQLite) or a server crash (PostgreSQL) may undo it. Only for
 * writes that are safe to lose, such as marking outbox rows published (a
 * lost mark only means the events go out once more). durable 1 restores
 * the default. Call it outside a transaction (SQLite refuses a change of
 * its synchronous setting inside one). SQLite: synchronous=NORMAL (in WAL
 * mode the next FULL commit of any connection syncs those commits along);
 * PostgreSQL: synchronous_commit for the session. */
int db_set_durable(db *conn, int durable);
/* A no-op returning DB_OK when no transaction is open, so error paths
 * can call it unconditionally. */
int db_rollback(db *conn);

/* Whether the connection is still usable as far as can be known without
 * a round trip (PostgreSQL: the server has not closed it). Long-lived
 * connections outside a pool check it before a unit of work and reopen. */
int db_alive(db *conn);

/* Cheap liveness check for /readyz. */
int db_ping(db *conn);

/* Session-level advisory locks, so that one of several processes on the
 * same database does a job (the outbox relay of replicas). try returns 1
 * when this connection holds key (now or already: a repeated try does not
 * stack), 0 when another connection holds it, or a negative db_result.
 * The lock lasts until db_advisory_unlock or until the connection ends,
 * also when its process dies. PostgreSQL: pg_try_advisory_lock with the
 * one-key form (db_migrate's own lock never collides). SQLite, one
 * process per file: always 1, and unlock does nothing. */
int db_try_advisory_lock(db *conn, int64_t key);
void db_advisory_unlock(db *conn, int64_t key);

/* Numbered schema migrations, applied in order inside one transaction
 * each, recorded in schema_migrations(version, name, applied_at) with
 * applied_at in ms since the epoch. Versions already recorded are
 * skipped, so every start-up calls it; two processes starting at once is
 * safe (PostgreSQL: they queue on a transaction-level advisory lock). The
 * list need not be sorted; versions are >= 1 and unique. */
struct db_migration {
    int version;
    const char *name;
    const char *sqlite_sql;
    const char *postgres_sql;
};
int db_migrate(db *conn, const struct db_migration *list, size_t count, char *err, size_t errlen);

/* A fixed-size pool of connections to one URL, all opened by
 * db_pool_open (NULL and err on failure). acquire blocks until one is
 * free and never returns NULL; a connection whose last error was
 * DB_UNAVAILABLE, or that the server dropped while it was idle in the
 * pool (PostgreSQL restarted, backend terminated), is reopened on the
 * next acquire. release resets the connection's statements and rolls
 * back a transaction left open.
 * db_pool_close closes every connection: release them all first. */
db_pool *db_pool_open(const char *url, int size, char *err, size_t errlen);
db *db_pool_acquire(db_pool *pool);
void db_pool_release(db_pool *pool, db *conn);
void db_pool_close(db_pool *pool);

#endif
