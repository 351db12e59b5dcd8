/*
 * db.c: the engine-neutral half of db.h. It picks a backend from the URL
 * scheme, keeps each connection's statement cache, applies migrations and
 * runs the pool; everything that talks to an engine goes through
 * conn->backend (db_internal.h).
 */
#include "db.h"

#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_internal.h"
#include "util.h"

/* Upper bound on db_pool_open's size: far above what two cores can use,
 * low enough to catch a mistyped configuration value. */
#define DB_POOL_MAX_SIZE 256

struct scheme {
    const char *name;
    const struct db_backend *backend;
};

static const struct scheme schemes[] = {
    {"sqlite", &db_sqlite_backend},
    {"postgres", &db_postgres_backend},
    {"postgresql", &db_postgres_backend},
};

struct db_pool {
    char *url;
    pthread_mutex_t lock;
    pthread_cond_t freed;
    pthread_mutex_t write_lock; /* see struct db */
    int size;
    db **conns;      /* by slot; a slot's conn changes only on reopen */
    int *free_slots; /* stack of slots not acquired */
    int free_count;
    int waiting; /* threads blocked in acquire, for tests */
};

int db_fail(db *conn, int result, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(conn->errmsg, sizeof(conn->errmsg), fmt, ap);
    va_end(ap);
    conn->last_error = result;
    return result;
}

void db_put_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- opening ------------------------------------------------------------ */

static int is_scheme_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '-' || c == '.';
}

/* Never echoes the URL itself: a postgres:// URL may carry a password. */
static int find_backend(const char *url, const struct db_backend **out, char *err, size_t errlen)
{
    size_t len = 0;

    while (is_scheme_char(url[len]))
        len++;
    if (len == 0 || url[len] != ':') {
        db_put_err(err, errlen,
                   "database URL has no scheme (expected sqlite:PATH or "
                   "postgres://...)");
        return DB_ERROR;
    }
    for (size_t i = 0; i < ARRAY_LEN(schemes); i++) {
        if (strlen(schemes[i].name) != len || strncmp(url, schemes[i].name, len) != 0)
            continue;
        *out = schemes[i].backend;
        return DB_OK;
    }
    db_put_err(err, errlen,
               "unsupported database URL scheme '%.*s' (expected sqlite:PATH "
               "or postgres://...)",
               (int)len, url);
    return DB_ERROR;
}

int db_open(const char *url, db **out, char *err, size_t errlen)
{
    const struct db_backend *backend = NULL;
    db *conn = NULL;
    int rc;

    *out = NULL;
    if (!url) {
        db_put_err(err, errlen, "no database URL given");
        rc = DB_ERROR;
        goto out;
    }
    rc = find_backend(url, &backend, err, errlen);
    if (rc != DB_OK)
        goto out;
    conn = xcalloc(1, sizeof(*conn));
    conn->backend = backend;
    rc = backend->open(conn, url, err, errlen);
    if (rc != DB_OK)
        goto out;
    *out = conn;
    conn = NULL;
out:
    free(conn);
    return rc;
}

/* ---- statement cache ---------------------------------------------------- */

/* FNV-1a: short SQL texts, no adversary, and it is five lines. */
static uint64_t hash_sql(const char *sql)
{
    uint64_t h = 14695981039346656037ULL;

    for (const unsigned char *p = (const unsigned char *)sql; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    return h;
}

static db_stmt **bucket_of(db *conn, uint64_t hash)
{
    return &conn->buckets[hash & (DB_STMT_BUCKETS - 1)];
}

static void recency_unlink(db *conn, db_stmt *st)
{
    if (st->newer)
        st->newer->older = st->older;
    else
        conn->newest = st->older;
    if (st->older)
        st->older->newer = st->newer;
    else
        conn->oldest = st->newer;
    st->newer = st->older = NULL;
}

static void recency_push_newest(db *conn, db_stmt *st)
{
    st->older = conn->newest;
    st->newer = NULL;
    if (conn->newest)
        conn->newest->newer = st;
    else
        conn->oldest = st;
    conn->newest = st;
}

static db_stmt *cache_find(db *conn, const char *sql, uint64_t hash)
{
    for (db_stmt *st = *bucket_of(conn, hash); st; st = st->bucket_next)
        if (st->hash == hash && strcmp(st->sql, sql) == 0)
            return st;
    return NULL;
}

static void cache_remove(db *conn, db_stmt *st)
{
    db_stmt **link = bucket_of(conn, st->hash);

    while (*link != st)
        link = &(*link)->bucket_next;
    *link = st->bucket_next;
    recency_unlink(conn, st);
    conn->stmt_count--;
    conn->backend->finalize(conn, st->impl);
    free(st->bind_errmsg);
    free(st->sql);
    free(st);
}

/* Evicts the least recently prepared statements beyond the cap, skipping
 * held ones: a caller may prepare several statements and use them
 * together, and freeing one under it would be a use after free. */
static void cache_trim(db *conn)
{
    db_stmt *st = conn->oldest;

    while (st && conn->stmt_count > DB_STMT_CACHE_MAX) {
        db_stmt *next = st->newer;
        if (!st->held)
            cache_remove(conn, st);
        st = next;
    }
}

size_t db_stmt_cache_size(const db *conn)
{
    return conn->stmt_count;
}

int db_pool_waiting(db_pool *pool)
{
    int n;

    pthread_mutex_lock(&pool->lock);
    n = pool->waiting;
    pthread_mutex_unlock(&pool->lock);
    return n;
}

void db_close(db *conn)
{
    if (!conn)
        return;
    while (conn->oldest)
        cache_remove(conn, conn->oldest);
    conn->backend->close(conn);
    free(conn);
}

enum db_kind db_kind(const db *conn)
{
    return conn->backend->kind;
}

const char *db_errmsg(const db *conn)
{
    return conn ? conn->errmsg : "no database connection";
}

int db_last_error(const db *conn)
{
    return conn ? conn->last_error : DB_UNAVAILABLE;
}

void db_clear_error(db *conn)
{
    if (conn)
        conn->last_error = DB_OK;
}

int db_exec(db *conn, const char *sql)
{
    return conn->backend->exec(conn, sql);
}

/* Forgets a failed bind along with the bindings. */
static void clear_bind_error(db_stmt *st)
{
    st->bind_error = 0;
    free(st->bind_errmsg);
    st->bind_errmsg = NULL;
}

db_stmt *db_prepare(db *conn, const char *sql)
{
    uint64_t hash = hash_sql(sql);
    db_stmt *st = cache_find(conn, sql, hash);
    void *impl = NULL;

    if (st) {
        conn->backend->reset(st);
        st->done = 0;
        clear_bind_error(st);
        recency_unlink(conn, st);
        recency_push_newest(conn, st);
        st->held = 1;
        return st;
    }
    if (conn->backend->prepare(conn, sql, &impl) != DB_OK)
        return NULL;
    st = xcalloc(1, sizeof(*st));
    st->conn = conn;
    st->impl = impl;
    st->sql = xstrdup(sql);
    st->hash = hash;
    st->held = 1;
    st->bucket_next = *bucket_of(conn, hash);
    *bucket_of(conn, hash) = st;
    recency_push_newest(conn, st);
    conn->stmt_count++;
    cache_trim(conn);
    return st;
}

/* The code of the error a failed db_prepare left, for callers that must
 * return one. */
static int prepare_error(const db *conn)
{
    return conn->last_error < 0 ? conn->last_error : DB_ERROR;
}

/* Keeps the first failed bind on the statement for db_step, with the
 * message db_fail left on the connection: a value that did not bind
 * would otherwise run as the previous binding or as NULL (an INSERT
 * storing NULL, a lookup finding nothing), and callers do not check
 * every bind. Later failures do not replace the first, the cause. */
static int bind_result(db_stmt *st, int rc)
{
    if (rc < 0 && st->bind_error == 0) {
        st->bind_error = rc;
        st->bind_errmsg = xstrdup(st->conn->errmsg);
    }
    return rc;
}

static int check_index(db_stmt *st, int index)
{
    if (index >= 1)
        return DB_OK;
    return db_fail(st->conn, DB_ERROR, "bind: parameter index %d < 1", index);
}

int db_bind_int64(db_stmt *st, int index, int64_t value)
{
    int rc = check_index(st, index);

    if (rc == DB_OK)
        rc = st->conn->backend->bind_int64(st, index, value);
    return bind_result(st, rc);
}

int db_bind_text(db_stmt *st, int index, const char *text, size_t len)
{
    int rc = check_index(st, index);

    if (rc == DB_OK && !text)
        rc = st->conn->backend->bind_null(st, index);
    else if (rc == DB_OK)
        rc = st->conn->backend->bind_text(st, index, text, len);
    return bind_result(st, rc);
}

int db_bind_str(db_stmt *st, int index, const char *text)
{
    return text ? db_bind_text(st, index, text, strlen(text)) : db_bind_null(st, index);
}

int db_bind_null(db_stmt *st, int index)
{
    int rc = check_index(st, index);

    if (rc == DB_OK)
        rc = st->conn->backend->bind_null(st, index);
    return bind_result(st, rc);
}

/* A finished statement stays finished until it is reset: SQLite would
 * run it again on the next step (an INSERT twice), PostgreSQL does not.
 * A failed bind is reported again (the connection may have recorded
 * other errors since) and the statement is not run. */
int db_step(db_stmt *st)
{
    int rc;

    if (st->bind_error)
        return db_fail(st->conn, st->bind_error, "%s", st->bind_errmsg);
    if (st->done)
        return DB_DONE;
    rc = st->conn->backend->step(st);
    st->done = rc == DB_DONE;
    return rc;
}

void db_stmt_reset(db_stmt *st)
{
    if (!st)
        return;
    st->conn->backend->reset(st);
    st->held = 0;
    st->done = 0;
    clear_bind_error(st);
}

int db_col_is_null(db_stmt *st, int col)
{
    return st->conn->backend->col_is_null(st, col);
}

int64_t db_col_int64(db_stmt *st, int col)
{
    return st->conn->backend->col_int64(st, col);
}

const char *db_col_text(db_stmt *st, int col)
{
    return st->conn->backend->col_text(st, col);
}

size_t db_col_len(db_stmt *st, int col)
{
    return st->conn->backend->col_len(st, col);
}

static void release_write_lock(db *conn)
{
    if (conn->holds_write_lock) {
        conn->holds_write_lock = 0;
        pthread_mutex_unlock(conn->write_lock);
    }
}

int db_begin(db *conn)
{
    if (conn->write_lock && !conn->holds_write_lock) {
        pthread_mutex_lock(conn->write_lock);
        conn->holds_write_lock = 1;
    }
    int rc = conn->backend->begin(conn);
    if (rc != DB_OK)
        release_write_lock(conn);
    return rc;
}

int db_commit(db *conn)
{
    int rc = conn->backend->commit(conn);
    if (rc == DB_OK)
        release_write_lock(conn); /* else the caller rolls back */
    return rc;
}

int db_set_durable(db *conn, int durable)
{
    if (db_kind(conn) == DB_KIND_POSTGRES)
        return db_exec(conn,
                       durable ? "SET synchronous_commit = on" : "SET synchronous_commit = off");
    return db_exec(conn, durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
}

int db_rollback(db *conn)
{
    int rc = conn->backend->rollback(conn);
    release_write_lock(conn);
    return rc;
}

int db_alive(db *conn)
{
    return conn->last_error != DB_UNAVAILABLE &&
           (!conn->backend->alive || conn->backend->alive(conn));
}

int db_ping(db *conn)
{
    db_stmt *st = db_prepare(conn, "SELECT 1");
    int rc;

    if (!st)
        return prepare_error(conn);
    rc = db_step(st);
    if (rc == DB_ROW && db_col_int64(st, 0) == 1)
        rc = DB_OK;
    else if (rc >= 0)
        rc = db_fail(conn, DB_ERROR, "ping: SELECT 1 did not answer 1");
    db_stmt_reset(st);
    return rc;
}

int db_try_advisory_lock(db *conn, int64_t key)
{
    if (!conn->backend->try_advisory_lock)
        return 1;
    return conn->backend->try_advisory_lock(conn, key);
}

void db_advisory_unlock(db *conn, int64_t key)
{
    if (conn->backend->advisory_unlock)
        conn->backend->advisory_unlock(conn, key);
}

/* ---- migrations --------------------------------------------------------- */

static int compare_version(const void *a, const void *b)
{
    const struct db_migration *x = *(const struct db_migration *const *)a;
    const struct db_migration *y = *(const struct db_migration *const *)b;

    return (x->version > y->version) - (x->version < y->version);
}

static const char *migration_sql(const db *conn, const struct db_migration *m)
{
    return conn->backend->kind == DB_KIND_SQLITE ? m->sqlite_sql : m->postgres_sql;
}

static int is_applied(db *conn, int version, int *applied)
{
    db_stmt *st = db_prepare(conn, "SELECT 1 FROM schema_migrations WHERE version = $1");
    int rc;

    if (!st)
        return prepare_error(conn);
    rc = db_bind_int64(st, 1, version);
    if (rc == DB_OK)
        rc = db_step(st);
    db_stmt_reset(st);
    if (rc == DB_ROW || rc == DB_DONE) {
        *applied = rc == DB_ROW;
        rc = DB_OK;
    }
    return rc;
}

static int record_applied(db *conn, const struct db_migration *m)
{
    db_stmt *st = db_prepare(conn,
                             "INSERT INTO schema_migrations "
                             "(version, name, applied_at) "
                             "VALUES ($1, $2, $3)");
    int rc;

    if (!st)
        return prepare_error(conn);
    rc = db_bind_int64(st, 1, m->version);
    if (rc == DB_OK)
        rc = db_bind_text(st, 2, m->name, strlen(m->name));
    if (rc == DB_OK)
        rc = db_bind_int64(st, 3, util_now_ms());
    if (rc == DB_OK)
        rc = db_step(st);
    db_stmt_reset(st);
    return rc == DB_DONE ? DB_OK : rc;
}

/* Starts a migration transaction: processes starting together queue on
 * its lock (SQLite's write lock, PostgreSQL's advisory lock) rather than
 * race on the schema. */
static int begin_migration(db *conn)
{
    int rc = db_begin(conn);

    if (rc == DB_OK && conn->backend->migration_lock)
        rc = conn->backend->migration_lock(conn);
    return rc;
}

static int create_migrations_table(db *conn)
{
    int rc = begin_migration(conn);

    if (rc == DB_OK)
        rc = db_exec(conn, conn->backend->migrations_table_sql);
    if (rc == DB_OK)
        rc = db_commit(conn);
    db_rollback(conn);
    return rc;
}

static int apply_one(db *conn, const struct db_migration *m, char *err, size_t errlen)
{
    int applied = 0;
    int rc;

    /* Checked first without a lock: at most start-ups every migration is
     * already there, and a read does not queue behind other writers. */
    rc = is_applied(conn, m->version, &applied);
    if (rc != DB_OK || applied)
        goto out;
    rc = begin_migration(conn);
    if (rc != DB_OK)
        goto out;
    /* Checked again under the write lock: another process starting at the
     * same moment may have applied it since. */
    rc = is_applied(conn, m->version, &applied);
    if (rc != DB_OK || applied)
        goto out;
    rc = db_exec(conn, migration_sql(conn, m));
    if (rc == DB_OK)
        rc = record_applied(conn, m);
    if (rc == DB_OK)
        rc = db_commit(conn);
out:
    if (rc != DB_OK)
        db_put_err(err, errlen, "migration %d (%s): %s", m->version, m->name, db_errmsg(conn));
    /* Ends the transaction when the re-check found the work done, and
     * undoes a half-applied migration; a no-op after a commit. */
    db_rollback(conn);
    return rc;
}

int db_migrate(db *conn, const struct db_migration *list, size_t count, char *err, size_t errlen)
{
    const struct db_migration **order = NULL;
    int rc;

    /* Validate everything before touching the database, so a bad list
     * never leaves a schema half way between two versions. */
    order = xcalloc(count, sizeof(*order));
    for (size_t i = 0; i < count; i++)
        order[i] = &list[i];
    qsort(order, count, sizeof(*order), compare_version);
    for (size_t i = 0; i < count; i++) {
        const struct db_migration *m = order[i];
        if (m->version < 1 || !m->name || !migration_sql(conn, m)) {
            db_put_err(err, errlen,
                       "migration %d (%s): version must be >= 1 and name and "
                       "%s SQL must be set",
                       m->version, m->name ? m->name : "?", conn->backend->name);
            rc = DB_ERROR;
            goto out;
        }
        if (i > 0 && order[i - 1]->version == m->version) {
            db_put_err(err, errlen, "migration version %d listed twice", m->version);
            rc = DB_ERROR;
            goto out;
        }
    }
    rc = create_migrations_table(conn);
    if (rc != DB_OK) {
        db_put_err(err, errlen, "creating schema_migrations: %s", db_errmsg(conn));
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        rc = apply_one(conn, order[i], err, errlen);
        if (rc != DB_OK)
            goto out;
    }
out:
    free(order);
    return rc;
}

/* ---- pool --------------------------------------------------------------- */

static void share_write_lock(db_pool *pool, db *conn)
{
    if (db_kind(conn) == DB_KIND_SQLITE)
        conn->write_lock = &pool->write_lock;
}

db_pool *db_pool_open(const char *url, int size, char *err, size_t errlen)
{
    db_pool *pool = NULL;
    int rc = DB_OK;

    if (size < 1 || size > DB_POOL_MAX_SIZE) {
        db_put_err(err, errlen, "database pool size %d not in 1..%d", size, DB_POOL_MAX_SIZE);
        return NULL;
    }
    pool = xcalloc(1, sizeof(*pool));
    pool->url = xstrdup(url ? url : "");
    pool->size = size;
    pool->conns = xcalloc((size_t)size, sizeof(*pool->conns));
    pool->free_slots = xcalloc((size_t)size, sizeof(*pool->free_slots));
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->freed, NULL);
    pthread_mutex_init(&pool->write_lock, NULL);
    /* Opened up front so a bad URL or a missing directory stops start-up
     * instead of surfacing on the first request. */
    for (int i = 0; i < size; i++) {
        rc = db_open(url, &pool->conns[i], err, errlen);
        if (rc != DB_OK)
            goto out;
        share_write_lock(pool, pool->conns[i]);
        pool->free_slots[pool->free_count++] = i;
    }
out:
    if (rc != DB_OK) {
        db_pool_close(pool);
        pool = NULL;
    }
    return pool;
}

db *db_pool_acquire(db_pool *pool)
{
    char err[DB_ERRMSG_MAX];
    db *conn;
    db *fresh = NULL;
    int slot;

    pthread_mutex_lock(&pool->lock);
    while (pool->free_count == 0) {
        pool->waiting++;
        pthread_cond_wait(&pool->freed, &pool->lock);
        pool->waiting--;
    }
    slot = pool->free_slots[--pool->free_count];
    conn = pool->conns[slot];
    pthread_mutex_unlock(&pool->lock);
    /* Also reopened when the server is known to have dropped it while it
     * sat in the pool (a restart, a terminated backend). */
    if (db_alive(conn))
        return conn;

    /* Reopened outside the lock: opening may wait on disk or network and
     * the slot is ours until release. If it fails, the old connection is
     * handed out anyway (acquire never returns NULL); its next call
     * reports the trouble and the next acquire tries again. */
    if (db_open(pool->url, &fresh, err, sizeof(err)) != DB_OK) {
        db_fail(conn, DB_UNAVAILABLE, "reopen failed: %s", err);
        return conn;
    }
    share_write_lock(pool, fresh);
    pthread_mutex_lock(&pool->lock);
    pool->conns[slot] = fresh;
    pthread_mutex_unlock(&pool->lock);
    db_close(conn);
    return fresh;
}

void db_pool_release(db_pool *pool, db *conn)
{
    int slot = -1;

    if (!conn)
        return;
    /* A statement left unreset keeps a read snapshot open (WAL cannot
     * checkpoint past it) and a forgotten transaction would keep the
     * write lock: clear both before another thread gets the connection. */
    for (db_stmt *st = conn->newest; st; st = st->older)
        if (st->held)
            db_stmt_reset(st);
    db_rollback(conn);

    pthread_mutex_lock(&pool->lock);
    for (int i = 0; i < pool->size; i++)
        if (pool->conns[i] == conn)
            slot = i;
    assert(slot >= 0 && "db_pool_release: connection not from this pool");
    if (slot >= 0) {
        pool->free_slots[pool->free_count++] = slot;
        pthread_cond_signal(&pool->freed);
    }
    pthread_mutex_unlock(&pool->lock);
}

void db_pool_close(db_pool *pool)
{
    if (!pool)
        return;
    for (int i = 0; i < pool->size; i++)
        db_close(pool->conns[i]);
    pthread_cond_destroy(&pool->freed);
    pthread_mutex_destroy(&pool->lock);
    pthread_mutex_destroy(&pool->write_lock);
    free(pool->free_slots);
    free(pool->conns);
    free(pool->url);
    free(pool);
}
