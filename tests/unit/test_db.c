/*
 * Unit tests of db (SQLite backend) on real database files, each test in
 * its own directory under /tmp that its teardown removes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h"
#include "db_internal.h"
#include "util.h"

#define URL_MAX 512
#define ERR_MAX 512

struct fixture {
    char dir[64];
};

static int remove_entry(const char *path, const struct stat *sb, int flag,
                        struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));

    util_strlcpy(f->dir, "/tmp/test_db.XXXXXX", sizeof(f->dir));
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int rc = nftw(f->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);

    free(f);
    return rc;
}

/* "sqlite:DIR/NAME" plus an optional "?..." suffix. */
static const char *url_for(void **state, const char *name, const char *opts,
                           char *buf)
{
    struct fixture *f = *state;

    snprintf(buf, URL_MAX, "sqlite:%s/%s%s", f->dir, name, opts ? opts : "");
    return buf;
}

static db *open_ok(void **state, const char *name, const char *opts)
{
    char url[URL_MAX];
    char err[ERR_MAX] = "";
    db *conn = NULL;
    int rc = db_open(url_for(state, name, opts, url), &conn, err, sizeof(err));

    if (rc != DB_OK)
        fail_msg("db_open(%s): %d %s", url, rc, err);
    assert_non_null(conn);
    return conn;
}

static void exec_ok(db *conn, const char *sql)
{
    int rc = db_exec(conn, sql);

    if (rc != DB_OK)
        fail_msg("db_exec(%s): %d %s", sql, rc, db_errmsg(conn));
}

/* First column of the first row of a query without parameters. */
static int64_t query_int(db *conn, const char *sql)
{
    db_stmt *st = db_prepare(conn, sql);
    int64_t v;

    if (!st)
        fail_msg("prepare(%s): %s", sql, db_errmsg(conn));
    assert_int_equal(db_step(st), DB_ROW);
    v = db_col_int64(st, 0);
    db_stmt_reset(st);
    return v;
}

static int file_exists(const char *path)
{
    struct stat sb;

    return stat(path, &sb) == 0;
}

/* ---- opening ------------------------------------------------------------ */

static void test_open_close_and_pragmas(void **state)
{
    struct fixture *f = *state;
    char path[URL_MAX];
    db *conn = open_ok(state, "a.db", NULL);
    db_stmt *st;

    snprintf(path, sizeof(path), "%s/a.db", f->dir);
    assert_true(file_exists(path));
    assert_int_equal(db_kind(conn), DB_KIND_SQLITE);
    assert_string_equal(db_errmsg(conn), "");
    assert_int_equal(db_ping(conn), DB_OK);

    st = db_prepare(conn, "PRAGMA journal_mode");
    assert_non_null(st);
    assert_int_equal(db_step(st), DB_ROW);
    assert_string_equal(db_col_text(st, 0), "wal");
    db_stmt_reset(st);
    assert_int_equal(query_int(conn, "PRAGMA synchronous"), 2); /* FULL */
    assert_int_equal(query_int(conn, "PRAGMA foreign_keys"), 1);
    assert_int_equal(query_int(conn, "PRAGMA busy_timeout"), 5000);
    db_close(conn);

    conn = open_ok(state, "b.db", "?busy_timeout=50");
    assert_int_equal(query_int(conn, "PRAGMA busy_timeout"), 50);
    db_close(conn);
    db_close(NULL);
}

static void test_url_forms(void **state)
{
    struct fixture *f = *state;
    char url[URL_MAX];
    char path[URL_MAX];
    char cwd[URL_MAX];
    char err[ERR_MAX];
    db *conn = NULL;

    /* sqlite:///abs is absolute (the directory starts with '/'). */
    snprintf(url, sizeof(url), "sqlite://%s/abs.db", f->dir);
    assert_int_equal(db_open(url, &conn, err, sizeof(err)), DB_OK);
    db_close(conn);
    snprintf(path, sizeof(path), "%s/abs.db", f->dir);
    assert_true(file_exists(path));

    /* sqlite://rel and sqlite:rel are relative to the working directory. */
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(f->dir), 0);
    assert_int_equal(db_open("sqlite://rel1.db", &conn, err, sizeof(err)),
                     DB_OK);
    db_close(conn);
    assert_int_equal(db_open("sqlite:rel2.db", &conn, err, sizeof(err)),
                     DB_OK);
    db_close(conn);
    assert_int_equal(chdir(cwd), 0);
    snprintf(path, sizeof(path), "%s/rel1.db", f->dir);
    assert_true(file_exists(path));
    snprintf(path, sizeof(path), "%s/rel2.db", f->dir);
    assert_true(file_exists(path));
}

static void test_bad_urls(void **state)
{
    static const char *const bad[] = {
        "",
        "no-scheme-at-all",
        "mysql://localhost/db",
        "sqlite:",
        "sqlite://",
        "sqlite:x.db?busy_timeout=abc",
        "sqlite:x.db?busy_timeout=-1",
        "sqlite:x.db?busy_timeout=",
        "sqlite:x.db?cache=shared",
    };
    char err[ERR_MAX];
    char url[URL_MAX];
    db *conn = (db *)1;

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        assert_int_equal(db_open(bad[i], &conn, err, sizeof(err)), DB_ERROR);
        assert_null(conn);
        assert_true(strlen(err) > 0);
    }

    /* An unreachable PostgreSQL server (port 1 on loopback is closed) is
     * "unavailable", and the password never shows. */
    err[0] = '\0';
    assert_int_equal(db_open("postgres://app:s3cret@127.0.0.1:1/orders",
                             &conn, err, sizeof(err)),
                     DB_UNAVAILABLE);
    assert_null(conn);
    assert_null(strstr(err, "s3cret"));
    assert_int_equal(
        db_open("postgresql://app:s3cret@127.0.0.1:1/db", &conn, err, sizeof(err)),
        DB_UNAVAILABLE);
    assert_null(strstr(err, "s3cret"));

    /* A NULL err buffer is allowed. */
    assert_int_equal(db_open("mysql://x", &conn, NULL, 0), DB_ERROR);

    /* A file that is not a database. */
    url_for(state, "junk.db", NULL, url);
    {
        FILE *fp = fopen(url + strlen("sqlite:"), "w");
        assert_non_null(fp);
        for (int i = 0; i < 64; i++)
            fputs("this is not an SQLite database file\n", fp);
        fclose(fp);
    }
    assert_int_equal(db_open(url, &conn, err, sizeof(err)), DB_UNAVAILABLE);
    assert_null(conn);
}

static void test_missing_directory(void **state)
{
    struct fixture *f = *state;
    char url[URL_MAX];
    char path[URL_MAX / 2];
    char err[ERR_MAX] = "";
    db *conn = NULL;

    snprintf(path, sizeof(path), "%s/no/such/dir", f->dir);
    snprintf(url, sizeof(url), "sqlite:%s/x.db", path);
    assert_int_equal(db_open(url, &conn, err, sizeof(err)), DB_UNAVAILABLE);
    assert_null(conn);
    assert_non_null(strstr(err, "does not exist"));
    assert_non_null(strstr(err, path));
    assert_false(file_exists(path));
}

/* ---- statements --------------------------------------------------------- */

static void test_bind_step_columns(void **state)
{
    static const char odd[] = "ab\0cd";   /* 5 bytes, a NUL inside */
    static const char utf8[] = "h\xc3\xa9llo"; /* "héllo", 6 bytes */
    db *conn = open_ok(state, "a.db", NULL);
    db_stmt *st;
    int rows = 0;

    exec_ok(conn, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, "
                  "n INTEGER)");
    st = db_prepare(conn, "INSERT INTO t (id, name, n) VALUES ($1, $2, $3)");
    assert_non_null(st);
    assert_int_equal(db_bind_int64(st, 1, 1), DB_OK);
    assert_int_equal(db_bind_text(st, 2, utf8, strlen(utf8)), DB_OK);
    assert_int_equal(db_bind_int64(st, 3, INT64_MAX), DB_OK);
    assert_int_equal(db_step(st), DB_DONE);
    db_stmt_reset(st);

    st = db_prepare(conn, "INSERT INTO t (id, name, n) VALUES ($1, $2, $3)");
    assert_int_equal(db_bind_int64(st, 1, 2), DB_OK);
    assert_int_equal(db_bind_null(st, 2), DB_OK);
    assert_int_equal(db_bind_int64(st, 3, INT64_MIN), DB_OK);
    assert_int_equal(db_step(st), DB_DONE);
    db_stmt_reset(st);

    st = db_prepare(conn, "INSERT INTO t (id, name, n) VALUES ($1, $2, $3)");
    assert_int_equal(db_bind_int64(st, 1, 3), DB_OK);
    assert_int_equal(db_bind_text(st, 2, odd, sizeof(odd) - 1), DB_OK);
    assert_int_equal(db_bind_text(st, 3, NULL, 0), DB_OK); /* NULL text */
    assert_int_equal(db_step(st), DB_DONE);
    db_stmt_reset(st);

    st = db_prepare(conn, "SELECT id, name, n FROM t ORDER BY id");
    assert_non_null(st);
    while (db_step(st) == DB_ROW) {
        int64_t id = db_col_int64(st, 0);
        rows++;
        if (id == 1) {
            assert_false(db_col_is_null(st, 1));
            assert_string_equal(db_col_text(st, 1), utf8);
            assert_int_equal(db_col_len(st, 1), 6);
            assert_true(db_col_int64(st, 2) == INT64_MAX);
        } else if (id == 2) {
            assert_true(db_col_is_null(st, 1));
            assert_null(db_col_text(st, 1));
            assert_int_equal(db_col_len(st, 1), 0);
            assert_true(db_col_int64(st, 2) == INT64_MIN);
        } else {
            /* Length before text still measures the whole value. */
            assert_int_equal(db_col_len(st, 1), 5);
            assert_memory_equal(db_col_text(st, 1), odd, 5);
            assert_true(db_col_is_null(st, 2));
        }
    }
    db_stmt_reset(st);
    assert_int_equal(rows, 3);

    /* An integer column read as text. */
    st = db_prepare(conn, "SELECT n FROM t WHERE id = $1");
    assert_int_equal(db_bind_int64(st, 1, 1), DB_OK);
    assert_int_equal(db_step(st), DB_ROW);
    assert_string_equal(db_col_text(st, 0), "9223372036854775807");
    assert_int_equal(db_col_len(st, 0), 19);
    assert_int_equal(db_step(st), DB_DONE);
    db_stmt_reset(st);
    db_close(conn);
}

static void test_param_order_and_reuse(void **state)
{
    db *conn = open_ok(state, "a.db", NULL);
    db_stmt *st;

    /* $2 before $1, $1 used twice, and an index the SQL does not use. */
    st = db_prepare(conn, "SELECT $2 - $1, $1 * $1");
    assert_non_null(st);
    assert_int_equal(db_bind_int64(st, 1, 3), DB_OK);
    assert_int_equal(db_bind_int64(st, 2, 10), DB_OK);
    assert_int_equal(db_bind_int64(st, 7, 99), DB_OK);
    assert_int_equal(db_bind_text(st, 8, "x", 1), DB_OK);
    assert_int_equal(db_bind_null(st, 9), DB_OK);
    assert_int_equal(db_step(st), DB_ROW);
    assert_int_equal(db_col_int64(st, 0), 7);
    assert_int_equal(db_col_int64(st, 1), 9);
    db_stmt_reset(st);

    /* Index 0 is a caller bug, reported. */
    st = db_prepare(conn, "SELECT $1");
    assert_int_equal(db_bind_int64(st, 0, 1), DB_ERROR);
    assert_true(strlen(db_errmsg(conn)) > 0);
    db_stmt_reset(st);

    /* Bindings are cleared by prepare: unbound $1 is NULL. */
    st = db_prepare(conn, "SELECT $1");
    assert_int_equal(db_bind_int64(st, 1, 5), DB_OK);
    db_stmt_reset(st);
    st = db_prepare(conn, "SELECT $1");
    assert_int_equal(db_step(st), DB_ROW);
    assert_true(db_col_is_null(st, 0));
    db_stmt_reset(st);
    db_close(conn);
}

static void test_prepare_errors(void **state)
{
    db *conn = open_ok(state, "a.db", NULL);

    assert_null(db_prepare(conn, "SELEKT 1"));
    assert_non_null(strstr(db_errmsg(conn), "syntax error"));
    assert_null(db_prepare(conn, "SELECT * FROM missing_table"));
    assert_null(db_prepare(conn, "SELECT 1; SELECT 2"));
    assert_non_null(strstr(db_errmsg(conn), "more than one"));
    assert_null(db_prepare(conn, "   "));
    assert_int_equal(db_stmt_cache_size(conn), 0);
    /* Trailing blanks, semicolons and comments are fine. */
    assert_non_null(db_prepare(conn, "SELECT 1;  \n"));
    assert_non_null(db_prepare(conn, "SELECT 2; -- two"));
    assert_int_equal(db_exec(conn, "NOT SQL"), DB_ERROR);
    db_close(conn);
}

static void test_statement_cache(void **state)
{
    db *conn = open_ok(state, "a.db", NULL);
    db_stmt *a = db_prepare(conn, "SELECT $1 + 1");
    db_stmt *b;
    char sql[64];

    assert_non_null(a);
    db_stmt_reset(a);
    b = db_prepare(conn, "SELECT $1 + 1");
    assert_ptr_equal(a, b);
    assert_int_equal(db_stmt_cache_size(conn), 1);

    /* b stays held (not reset) while many other statements pass through
     * the cache: it must survive eviction and still work. */
    assert_int_equal(db_bind_int64(b, 1, 41), DB_OK);
    for (int i = 0; i < DB_STMT_CACHE_MAX * 3; i++) {
        db_stmt *st;
        snprintf(sql, sizeof(sql), "SELECT %d", i);
        st = db_prepare(conn, sql);
        assert_non_null(st);
        assert_int_equal(db_step(st), DB_ROW);
        assert_int_equal(db_col_int64(st, 0), i);
        db_stmt_reset(st);
        assert_true(db_stmt_cache_size(conn) <= DB_STMT_CACHE_MAX);
    }
    assert_int_equal(db_step(b), DB_ROW);
    assert_int_equal(db_col_int64(b, 0), 42);
    db_stmt_reset(b);
    assert_int_equal(db_stmt_cache_size(conn), DB_STMT_CACHE_MAX);

    /* The most recent ones are still cached. */
    snprintf(sql, sizeof(sql), "SELECT %d", DB_STMT_CACHE_MAX * 3 - 1);
    a = db_prepare(conn, sql);
    db_stmt_reset(a);
    assert_int_equal(db_stmt_cache_size(conn), DB_STMT_CACHE_MAX);
    db_close(conn);
}

static void test_constraints(void **state)
{
    db *conn = open_ok(state, "a.db", NULL);
    db_stmt *st;

    exec_ok(conn, "CREATE TABLE p (id INTEGER PRIMARY KEY, email TEXT "
                  "UNIQUE NOT NULL, n INTEGER CHECK (n >= 0));"
                  "CREATE TABLE c (id INTEGER PRIMARY KEY, "
                  "p_id INTEGER NOT NULL REFERENCES p(id));"
                  "INSERT INTO p (id, email, n) VALUES (1, 'a@x', 0)");

    st = db_prepare(conn, "INSERT INTO p (email, n) VALUES ($1, $2)");
    assert_int_equal(db_bind_text(st, 1, "a@x", 3), DB_OK);
    assert_int_equal(db_bind_int64(st, 2, 1), DB_OK);
    assert_int_equal(db_step(st), DB_CONSTRAINT);
    assert_non_null(strstr(db_errmsg(conn), "UNIQUE"));
    db_stmt_reset(st);

    st = db_prepare(conn, "INSERT INTO p (email, n) VALUES ($1, $2)");
    assert_int_equal(db_bind_text(st, 1, "b@x", 3), DB_OK);
    assert_int_equal(db_bind_int64(st, 2, -1), DB_OK);
    assert_int_equal(db_step(st), DB_CONSTRAINT);
    db_stmt_reset(st);

    st = db_prepare(conn, "INSERT INTO p (email, n) VALUES ($1, $2)");
    assert_int_equal(db_bind_null(st, 1), DB_OK);
    assert_int_equal(db_step(st), DB_CONSTRAINT);
    db_stmt_reset(st);

    /* foreign_keys=ON is in force. */
    st = db_prepare(conn, "INSERT INTO c (p_id) VALUES ($1)");
    assert_int_equal(db_bind_int64(st, 1, 999), DB_OK);
    assert_int_equal(db_step(st), DB_CONSTRAINT);
    assert_non_null(strstr(db_errmsg(conn), "FOREIGN KEY"));
    db_stmt_reset(st);

    assert_int_equal(
        db_exec(conn, "INSERT INTO p (id, email) VALUES (1, 'z')"),
        DB_CONSTRAINT);

    /* The statement is usable again after the error and reset. */
    st = db_prepare(conn, "INSERT INTO p (email, n) VALUES ($1, $2)");
    assert_int_equal(db_bind_text(st, 1, "c@x", 3), DB_OK);
    assert_int_equal(db_step(st), DB_DONE);
    db_stmt_reset(st);
    assert_int_equal(query_int(conn, "SELECT count(*) FROM p"), 2);
    db_close(conn);
}

/* ---- transactions ------------------------------------------------------- */

static void test_transactions(void **state)
{
    db *conn = open_ok(state, "a.db", NULL);

    exec_ok(conn, "CREATE TABLE t (x INTEGER)");

    /* Rollback with nothing open: no error, no message. */
    assert_int_equal(db_rollback(conn), DB_OK);
    assert_string_equal(db_errmsg(conn), "");

    assert_int_equal(db_begin(conn), DB_OK);
    exec_ok(conn, "INSERT INTO t VALUES (1)");
    assert_int_equal(db_commit(conn), DB_OK);

    assert_int_equal(db_begin(conn), DB_OK);
    exec_ok(conn, "INSERT INTO t VALUES (2)");
    assert_int_equal(query_int(conn, "SELECT count(*) FROM t"), 2);
    assert_int_equal(db_rollback(conn), DB_OK);
    assert_int_equal(query_int(conn, "SELECT count(*) FROM t"), 1);
    assert_int_equal(db_rollback(conn), DB_OK);

    /* Nested begin is an error; commit without a transaction too. */
    assert_int_equal(db_begin(conn), DB_OK);
    assert_int_equal(db_begin(conn), DB_ERROR);
    assert_int_equal(db_rollback(conn), DB_OK);
    assert_int_equal(db_commit(conn), DB_ERROR);

    /* Committed data is seen by another connection. */
    {
        db *other = open_ok(state, "a.db", NULL);
        assert_int_equal(query_int(other, "SELECT max(x) FROM t"), 1);
        db_close(other);
    }
    db_close(conn);
}

static void test_busy(void **state)
{
    db *a = open_ok(state, "a.db", "?busy_timeout=50");
    db *b = open_ok(state, "a.db", "?busy_timeout=50");
    int64_t start;
    int64_t waited_ms;

    exec_ok(a, "CREATE TABLE t (x INTEGER)");
    assert_int_equal(db_begin(a), DB_OK);
    exec_ok(a, "INSERT INTO t VALUES (1)");

    start = util_monotonic_ns();
    assert_int_equal(db_begin(b), DB_BUSY);
    waited_ms = (util_monotonic_ns() - start) / 1000000;
    assert_true(waited_ms >= 40);
    assert_true(waited_ms < 2000);
    assert_true(strlen(db_errmsg(b)) > 0);
    assert_int_equal(db_rollback(b), DB_OK);

    /* A write outside a transaction is busy too; reads are not (WAL). */
    assert_int_equal(db_exec(b, "INSERT INTO t VALUES (2)"), DB_BUSY);
    assert_int_equal(query_int(b, "SELECT count(*) FROM t"), 0);

    assert_int_equal(db_commit(a), DB_OK);
    assert_int_equal(db_begin(b), DB_OK);
    exec_ok(b, "INSERT INTO t VALUES (2)");
    assert_int_equal(db_commit(b), DB_OK);
    assert_int_equal(query_int(a, "SELECT count(*) FROM t"), 2);
    db_close(a);
    db_close(b);
}

/* ---- migrations --------------------------------------------------------- */

static const struct db_migration migrations[] = {
    /* Listed out of order on purpose: 2 needs 1's table. */
    {2, "seed", "INSERT INTO t (x) VALUES (1); INSERT INTO t (x) VALUES (2)",
     "INSERT INTO t (x) VALUES (1), (2)"},
    {1, "create t", "CREATE TABLE t (x INTEGER NOT NULL)",
     "CREATE TABLE t (x BIGINT NOT NULL)"},
};

static void test_migrate(void **state)
{
    db *conn = open_ok(state, "a.db", NULL);
    char err[ERR_MAX] = "";
    int64_t before = util_now_ms();
    db_stmt *st;
    int rows = 0;

    assert_int_equal(db_migrate(conn, migrations, ARRAY_LEN(migrations), err,
                                sizeof(err)),
                     DB_OK);
    /* Twice: nothing is applied again (a second CREATE TABLE t would
     * fail, a second seed would double the rows). */
    assert_int_equal(db_migrate(conn, migrations, ARRAY_LEN(migrations), err,
                                sizeof(err)),
                     DB_OK);
    assert_int_equal(query_int(conn, "SELECT count(*) FROM t"), 2);

    st = db_prepare(conn, "SELECT version, name, applied_at "
                          "FROM schema_migrations ORDER BY version");
    while (db_step(st) == DB_ROW) {
        rows++;
        assert_int_equal(db_col_int64(st, 0), rows);
        assert_string_equal(db_col_text(st, 1),
                            rows == 1 ? "create t" : "seed");
        assert_true(db_col_int64(st, 2) >= before);
        assert_true(db_col_int64(st, 2) <= util_now_ms());
    }
    db_stmt_reset(st);
    assert_int_equal(rows, 2);

    /* A fresh connection (a restart) applies nothing either. */
    db_close(conn);
    conn = open_ok(state, "a.db", NULL);
    assert_int_equal(db_migrate(conn, migrations, ARRAY_LEN(migrations), err,
                                sizeof(err)),
                     DB_OK);
    assert_int_equal(query_int(conn, "SELECT count(*) FROM t"), 2);

    /* An empty list only creates the table. */
    db_close(conn);
    conn = open_ok(state, "empty.db", NULL);
    assert_int_equal(db_migrate(conn, NULL, 0, err, sizeof(err)), DB_OK);
    assert_int_equal(query_int(conn, "SELECT count(*) FROM schema_migrations"),
                     0);
    db_close(conn);
}

static void test_migrate_failure(void **state)
{
    static const struct db_migration broken[] = {
        {1, "create t", "CREATE TABLE t (x INTEGER)", NULL},
        {2, "half", "INSERT INTO t VALUES (1); INSERT INTO nowhere VALUES (1)",
         NULL},
        {3, "never", "INSERT INTO t VALUES (3)", NULL},
    };
    static const struct db_migration dup[] = {
        {1, "a", "SELECT 1", NULL},
        {1, "b", "SELECT 1", NULL},
    };
    static const struct db_migration no_sql[] = {
        {1, "pg only", NULL, "SELECT 1"},
    };
    db *conn = open_ok(state, "a.db", NULL);
    char err[ERR_MAX] = "";

    assert_int_equal(
        db_migrate(conn, broken, ARRAY_LEN(broken), err, sizeof(err)),
        DB_ERROR);
    assert_non_null(strstr(err, "migration 2 (half)"));
    assert_non_null(strstr(err, "nowhere"));
    /* 1 is recorded, 2 left nothing behind, 3 was not tried. */
    assert_int_equal(query_int(conn, "SELECT count(*) FROM t"), 0);
    assert_int_equal(
        query_int(conn, "SELECT count(*) FROM schema_migrations"), 1);
    assert_int_equal(
        query_int(conn, "SELECT max(version) FROM schema_migrations"), 1);
    /* No transaction is left open. */
    assert_int_equal(db_begin(conn), DB_OK);
    assert_int_equal(db_rollback(conn), DB_OK);

    err[0] = '\0';
    assert_int_equal(db_migrate(conn, dup, ARRAY_LEN(dup), err, sizeof(err)),
                     DB_ERROR);
    assert_non_null(strstr(err, "twice"));
    err[0] = '\0';
    assert_int_equal(
        db_migrate(conn, no_sql, ARRAY_LEN(no_sql), err, sizeof(err)),
        DB_ERROR);
    assert_non_null(strstr(err, "sqlite"));
    db_close(conn);
}

struct migrate_job {
    char url[URL_MAX];
    int rc;
    char err[ERR_MAX];
};

static void *migrate_thread(void *arg)
{
    struct migrate_job *job = arg;
    db *conn = NULL;

    job->rc = db_open(job->url, &conn, job->err, sizeof(job->err));
    if (job->rc == DB_OK)
        job->rc = db_migrate(conn, migrations, ARRAY_LEN(migrations),
                             job->err, sizeof(job->err));
    db_close(conn);
    return NULL;
}

/* Two processes starting at once on one file: each has its own
 * connection, as here, and neither may apply a migration twice. */
static void test_migrate_concurrent(void **state)
{
    enum { JOBS = 4, MIGRATE_ROUNDS = 20 };
    struct migrate_job jobs[JOBS];
    pthread_t threads[JOBS];
    db *conn;

    for (int round = 0; round < MIGRATE_ROUNDS; round++) {
        char name[32];
        snprintf(name, sizeof(name), "m%d.db", round);
        for (int i = 0; i < JOBS; i++) {
            memset(&jobs[i], 0, sizeof(jobs[i]));
            url_for(state, name, NULL, jobs[i].url);
            assert_int_equal(
                pthread_create(&threads[i], NULL, migrate_thread, &jobs[i]),
                0);
        }
        /* All joined before any check: a failed check leaves the test,
         * and the threads write into jobs. */
        for (int i = 0; i < JOBS; i++)
            pthread_join(threads[i], NULL);
        for (int i = 0; i < JOBS; i++) {
            if (jobs[i].rc != DB_OK)
                fail_msg("job %d: %d %s", i, jobs[i].rc, jobs[i].err);
        }
        conn = open_ok(state, name, NULL);
        assert_int_equal(query_int(conn, "SELECT count(*) FROM t"), 2);
        assert_int_equal(
            query_int(conn, "SELECT count(*) FROM schema_migrations"), 2);
        db_close(conn);
    }
}

/* ---- pool --------------------------------------------------------------- */

enum { POOL_SIZE = 3, POOL_THREADS = 8, POOL_ITERATIONS = 15 };

struct pool_shared {
    db_pool *pool;
    pthread_mutex_t lock;
    int in_use;
    int max_in_use;
    int failures;
};

static void *pool_worker(void *arg)
{
    struct pool_shared *s = arg;

    for (int i = 0; i < POOL_ITERATIONS; i++) {
        db *conn = db_pool_acquire(s->pool);
        db_stmt *st;
        int rc;

        pthread_mutex_lock(&s->lock);
        if (++s->in_use > s->max_in_use)
            s->max_in_use = s->in_use;
        pthread_mutex_unlock(&s->lock);

        rc = db_begin(conn);
        st = rc == DB_OK ? db_prepare(conn, "INSERT INTO t (x) VALUES ($1)")
                         : NULL;
        if (st) {
            db_bind_int64(st, 1, i);
            rc = db_step(st) == DB_DONE ? DB_OK : DB_ERROR;
            db_stmt_reset(st);
        } else {
            rc = DB_ERROR;
        }
        rc = rc == DB_OK ? db_commit(conn) : rc;
        if (rc != DB_OK) {
            db_rollback(conn);
            pthread_mutex_lock(&s->lock);
            s->failures++;
            pthread_mutex_unlock(&s->lock);
        }

        pthread_mutex_lock(&s->lock);
        s->in_use--;
        pthread_mutex_unlock(&s->lock);
        db_pool_release(s->pool, conn);
    }
    return NULL;
}

static void test_pool_threads(void **state)
{
    struct pool_shared s = {0};
    pthread_t threads[POOL_THREADS];
    char url[URL_MAX];
    char err[ERR_MAX] = "";
    db *conn;

    s.pool = db_pool_open(url_for(state, "pool.db", NULL, url), POOL_SIZE,
                          err, sizeof(err));
    if (!s.pool)
        fail_msg("db_pool_open: %s", err);
    pthread_mutex_init(&s.lock, NULL);
    conn = db_pool_acquire(s.pool);
    exec_ok(conn, "CREATE TABLE t (x INTEGER)");
    db_pool_release(s.pool, conn);

    for (int i = 0; i < POOL_THREADS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, pool_worker, &s),
                         0);
    for (int i = 0; i < POOL_THREADS; i++)
        pthread_join(threads[i], NULL);

    assert_int_equal(s.failures, 0);
    assert_true(s.max_in_use >= 1);
    assert_true(s.max_in_use <= POOL_SIZE);
    conn = db_pool_acquire(s.pool);
    assert_int_equal(query_int(conn, "SELECT count(*) FROM t"),
                     POOL_THREADS * POOL_ITERATIONS);
    db_pool_release(s.pool, conn);
    pthread_mutex_destroy(&s.lock);
    db_pool_close(s.pool);
}

struct blocked_acquire {
    db_pool *pool;
    atomic_int done; /* read while the thread may still run */
    db *got;
};

static void *acquire_thread(void *arg)
{
    struct blocked_acquire *b = arg;

    b->got = db_pool_acquire(b->pool);
    atomic_store(&b->done, 1);
    db_pool_release(b->pool, b->got);
    return NULL;
}

static void test_pool_blocks_and_cleans_up(void **state)
{
    char url[URL_MAX];
    char err[ERR_MAX] = "";
    struct blocked_acquire b = {.pool = NULL};
    pthread_t thread;
    db *conn;
    db_stmt *st;
    int done_while_held;

    assert_null(db_pool_open(url_for(state, "p.db", NULL, url), 0, err,
                             sizeof(err)));
    assert_true(strlen(err) > 0);
    assert_null(db_pool_open("postgres://u:pw@h/db", 2, err, sizeof(err)));
    assert_non_null(strstr(err, "PostgreSQL"));

    b.pool = db_pool_open(url_for(state, "p.db", NULL, url), 1, err,
                          sizeof(err));
    assert_non_null(b.pool);
    conn = db_pool_acquire(b.pool);
    exec_ok(conn, "CREATE TABLE t (x INTEGER)");

    /* Left behind by a careless caller: an open transaction and a
     * statement in the middle of its rows. */
    assert_int_equal(db_begin(conn), DB_OK);
    exec_ok(conn, "INSERT INTO t VALUES (1), (2)");
    st = db_prepare(conn, "SELECT x FROM t");
    assert_int_equal(db_step(st), DB_ROW);

    assert_int_equal(pthread_create(&thread, NULL, acquire_thread, &b), 0);
    usleep(100 * 1000);
    done_while_held = atomic_load(&b.done);
    db_pool_release(b.pool, conn);
    pthread_join(thread, NULL);
    assert_int_equal(done_while_held, 0);
    assert_int_equal(atomic_load(&b.done), 1);
    assert_ptr_equal(b.got, conn);

    /* The release rolled back and reset: another writer gets the lock. */
    conn = db_pool_acquire(b.pool);
    assert_int_equal(query_int(conn, "SELECT count(*) FROM t"), 0);
    {
        db *other = open_ok(state, "p.db", "?busy_timeout=50");
        assert_int_equal(db_begin(other), DB_OK);
        assert_int_equal(db_commit(other), DB_OK);
        db_close(other);
    }

    /* A connection whose last error was DB_UNAVAILABLE is reopened on the
     * next acquire: its statement cache and message start afresh. */
    assert_non_null(db_prepare(conn, "SELECT 1"));
    assert_true(db_stmt_cache_size(conn) > 0);
    db_fail(conn, DB_UNAVAILABLE, "disk I/O error (simulated)");
    db_pool_release(b.pool, conn);
    conn = db_pool_acquire(b.pool);
    assert_int_equal(db_stmt_cache_size(conn), 0);
    assert_string_equal(db_errmsg(conn), "");
    assert_int_equal(db_ping(conn), DB_OK);
    db_pool_release(b.pool, conn);
    db_pool_close(b.pool);
    db_pool_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_close_and_pragmas, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_url_forms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_directory, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bind_step_columns, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_param_order_and_reuse, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_prepare_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_statement_cache, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_constraints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transactions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_failure, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_migrate_concurrent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pool_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_blocks_and_cleans_up, setup,
                                        teardown),
    };

    return cmocka_run_group_tests_name("db", tests, NULL, NULL);
}
