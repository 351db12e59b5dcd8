/*
 * db_internal: the seam between db.c (URL dispatch, statement cache,
 * migrations, pool) and one file per database engine (db_sqlite.c,
 * db_postgres.c). Only those files include it, plus the db unit tests.
 *
 * A backend fills one const struct db_backend and never sees the cache or
 * the pool. db.c owns struct db and struct db_stmt; a backend owns what
 * their impl fields point to and frees it in close / finalize. Backends
 * report errors through db_fail(), which keeps the message and the code on
 * the connection so db_errmsg() and the pool's reopen rule see them.
 */
#ifndef LIB_DB_INTERNAL_H
#define LIB_DB_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "util.h"

/* Big enough for an engine's message plus our context. */
#define DB_ERRMSG_MAX UTIL_ERR_MAX
/* Distinct SQL texts kept prepared per connection. A service has a few
 * dozen; the cap only matters for code that builds SQL on the fly. */
#define DB_STMT_CACHE_MAX 64
/* Hash buckets of the statement cache (a power of two). */
#define DB_STMT_BUCKETS 128

struct db_backend {
    const char *name; /* for messages: "sqlite" */
    enum db_kind kind;
    /* CREATE TABLE IF NOT EXISTS schema_migrations in this dialect. */
    const char *migrations_table_sql;

    /* Sets conn->impl, or fills err and returns a negative db_result
     * leaving nothing allocated. url is whole, scheme included. */
    int (*open)(db *conn, const char *url, char *err, size_t errlen);
    void (*close)(db *conn);
    int (*exec)(db *conn, const char *sql);
    /* Sets *impl to a new prepared statement, or calls db_fail. */
    int (*prepare)(db *conn, const char *sql, void **impl);
    void (*finalize)(db *conn, void *impl);
    /* Binding an index the SQL does not use succeeds and does nothing.
     * A failure calls db_fail; db.c keeps it on the statement. */
    int (*bind_int64)(db_stmt *st, int index, int64_t value);
    int (*bind_text)(db_stmt *st, int index, const char *text, size_t len);
    int (*bind_null)(db_stmt *st, int index);
    int (*step)(db_stmt *st);
    /* Back to the start, bindings cleared; never reports an error. */
    void (*reset)(db_stmt *st);
    int (*col_is_null)(db_stmt *st, int col);
    int64_t (*col_int64)(db_stmt *st, int col);
    const char *(*col_text)(db_stmt *st, int col);
    size_t (*col_len)(db_stmt *st, int col);
    int (*begin)(db *conn);
    int (*commit)(db *conn);
    /* A no-op returning DB_OK when no transaction is open. */
    int (*rollback)(db *conn);

    /* Optional hooks; NULL where the engine needs nothing. */
    /* Runs first in every migration transaction: serialises processes
     * migrating one database until the transaction ends, and makes sure
     * migrations_table_sql can run (PostgreSQL: the lock and the schema;
     * SQLite's BEGIN IMMEDIATE already serialises). */
    int (*migration_lock)(db *conn);
    /* Cheap check, without waiting, that an idle connection is still
     * usable; 0 when the server is known to have dropped it, so that the
     * pool reopens it before handing it out. */
    int (*alive)(db *conn);
    /* Session-level advisory lock (see db_try_advisory_lock). */
    int (*try_advisory_lock)(db *conn, int64_t key);
    void (*advisory_unlock)(db *conn, int64_t key);
};

struct db_stmt {
    db *conn;
    void *impl; /* backend statement (sqlite3_stmt *) */
    char *sql;  /* cache key, owned */
    uint64_t hash;
    int held; /* between db_prepare and db_stmt_reset */
    int done; /* a step returned DB_DONE since the reset */
    /* The first failed bind since the reset (a negative db_result) and
     * its message, owned: what the next db_step reports. */
    int bind_error;
    char *bind_errmsg;
    db_stmt *bucket_next; /* hash chain */
    db_stmt *newer;       /* recency list, for eviction */
    db_stmt *older;
};

struct db {
    const struct db_backend *backend;
    void *impl;     /* backend connection (sqlite3 *) */
    int last_error; /* last negative db_result, 0 if none */
    char errmsg[DB_ERRMSG_MAX];
    db_stmt *buckets[DB_STMT_BUCKETS];
    db_stmt *newest;
    db_stmt *oldest;
    size_t stmt_count;
    /* SQLite admits one writer per file. Connections of one pool take
     * this process-wide lock around write transactions, so threads queue
     * for it fairly instead of sleeping in SQLite's busy handler and
     * timing out under load. NULL outside pools and for PostgreSQL. */
    pthread_mutex_t *write_lock;
    int holds_write_lock;
};

extern const struct db_backend db_sqlite_backend;
extern const struct db_backend db_postgres_backend;

/* Records an error on conn and returns result, so a backend can write
 * `return db_fail(conn, DB_BUSY, "...", ...)`. */
int db_fail(db *conn, int result, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Formats into a caller's err buffer; err may be NULL or errlen 0. */
void db_put_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Statements currently cached on conn (for tests). */
size_t db_stmt_cache_size(const db *conn);

/* Threads blocked in db_pool_acquire waiting for a connection (for
 * tests: proof that a thread is waiting, not merely slow to start). */
int db_pool_waiting(db_pool *pool);

#endif
