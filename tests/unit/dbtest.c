/*
 * The db API's shared unit tests and their fixture (dbtest.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "db.h"
#include "db_internal.h"
#include "dbtest.h"
#include "testutil.h"
#include "util.h"

/* Bound on waiting for another thread to reach a state, and the pause
 * between looks. */
#define WAIT_MS 5000
#define POLL_MS 5

/* ---- fixture ------------------------------------------------------------ */

const char *dbtest_pg_url(void)
{
    const char *url = getenv("TEST_PG_URL");

    return url && *url ? url : NULL;
}

int dbtest_setup_sqlite(void **state)
{
    struct dbtest *f = xcalloc(1, sizeof(*f));

    f->kind = DB_KIND_SQLITE;
    if (testutil_mkdtemp(f->dir, sizeof(f->dir), "test_db") != 0) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

int dbtest_setup_postgres(void **state)
{
    static atomic_int counter;
    struct dbtest *f;

    if (!dbtest_pg_url()) {
        print_error(
            "TEST_PG_URL is not set: these tests need a PostgreSQL "
            "server (scripts/run-tests.sh starts one with "
            "scripts/postgres.sh)\n");
        return -1;
    }
    f = xcalloc(1, sizeof(*f));
    f->kind = DB_KIND_POSTGRES;
    snprintf(f->schema, sizeof(f->schema), "test_db_pg_%d_%d", (int)getpid(),
             atomic_fetch_add(&counter, 1));
    *state = f;
    return 0;
}

/* Drops every schema the test was handed (at least database 0's). */
static int drop_schemas(void **state)
{
    struct dbtest *f = *state;
    char schema[DBTEST_NAME_MAX];
    char sql[128];
    db *conn = NULL;
    int rc = db_open(dbtest_pg_url(), &conn, NULL, 0);

    for (int n = 0; rc == DB_OK && (n == 0 || n < f->databases); n++) {
        snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS \"%s\" CASCADE",
                 dbtest_schema(state, n, schema));
        rc = db_exec(conn, sql);
    }
    db_close(conn);
    return rc == DB_OK ? 0 : -1;
}

int dbtest_teardown(void **state)
{
    struct dbtest *f = *state;
    int rc = f->kind == DB_KIND_SQLITE ? testutil_rmtree(f->dir) : drop_schemas(state);

    free(f);
    return rc;
}

enum db_kind dbtest_kind(void **state)
{
    struct dbtest *f = *state;

    return f->kind;
}

const char *dbtest_schema(void **state, int n, char *buf)
{
    struct dbtest *f = *state;

    if (n == 0)
        snprintf(buf, DBTEST_NAME_MAX, "%s", f->schema);
    else
        snprintf(buf, DBTEST_NAME_MAX, "%.50s_%d", f->schema, n);
    return buf;
}

const char *dbtest_url(void **state, int n, const char *opts, char *buf)
{
    struct dbtest *f = *state;
    char schema[DBTEST_NAME_MAX];
    const char *base;

    if (n >= f->databases)
        f->databases = n + 1;
    if (f->kind == DB_KIND_SQLITE) {
        snprintf(buf, DBTEST_URL_MAX, "sqlite:%s/db%d.db%s%s", f->dir, n, opts ? "?" : "",
                 opts ? opts : "");
        return buf;
    }
    base = dbtest_pg_url();
    snprintf(buf, DBTEST_URL_MAX, "%s%cschema=%s%s%s", base, strchr(base, '?') ? '&' : '?',
             dbtest_schema(state, n, schema), opts ? "&" : "", opts ? opts : "");
    return buf;
}

db *dbtest_open_url(const char *url)
{
    char err[DBTEST_ERR_MAX] = "";
    db *conn = NULL;
    int rc = db_open(url, &conn, err, sizeof(err));

    if (rc != DB_OK)
        fail_msg("db_open: %d %s", rc, err);
    assert_non_null(conn);
    return conn;
}

db *dbtest_open(void **state, int n, const char *opts)
{
    char url[DBTEST_URL_MAX];
    char schema[DBTEST_NAME_MAX];
    char sql[128];
    db *conn = dbtest_open_url(dbtest_url(state, n, opts, url));

    if (db_kind(conn) == DB_KIND_POSTGRES) {
        snprintf(sql, sizeof(sql), "CREATE SCHEMA IF NOT EXISTS \"%s\"",
                 dbtest_schema(state, n, schema));
        dbtest_exec(conn, sql);
    }
    return conn;
}

void dbtest_exec(db *conn, const char *sql)
{
    int rc = db_exec(conn, sql);

    if (rc != DB_OK)
        fail_msg("db_exec(%s): %d %s", sql, rc, db_errmsg(conn));
}

db_stmt *dbtest_prepare(db *conn, const char *sql)
{
    db_stmt *st = db_prepare(conn, sql);

    if (!st)
        fail_msg("prepare(%s): %s", sql, db_errmsg(conn));
    return st;
}

int64_t dbtest_query_int(db *conn, const char *sql)
{
    db_stmt *st = dbtest_prepare(conn, sql);
    int64_t v;
    int rc = db_step(st);

    if (rc != DB_ROW)
        fail_msg("step(%s): %d %s", sql, rc, db_errmsg(conn));
    v = db_col_int64(st, 0);
    db_stmt_reset(st);
    return v;
}

const char *dbtest_query_text(db *conn, const char *sql, char *buf, size_t size)
{
    db_stmt *st = dbtest_prepare(conn, sql);

    assert_int_equal(db_step(st), DB_ROW);
    util_strlcpy(buf, db_col_text(st, 0) ? db_col_text(st, 0) : "(null)", size);
    db_stmt_reset(st);
    return buf;
}

int dbtest_run(db_stmt *st)
{
    int rc = db_step(st);

    db_stmt_reset(st);
    return rc == DB_DONE ? DB_OK : rc;
}

/* ---- statements --------------------------------------------------------- */

void test_bind_step_columns(void **state)
{
    static const char insert[] = "INSERT INTO t (id, name, n) VALUES ($1, $2, $3)";
    static const char odd[] = "ab\0cd";        /* 5 bytes, a NUL inside */
    static const char utf8[] = "h\xc3\xa9llo"; /* "héllo", 6 bytes */
    int pg = dbtest_kind(state) == DB_KIND_POSTGRES;
    /* What of odd is stored: PostgreSQL's text cannot hold a NUL. */
    size_t odd_len = pg ? 2 : sizeof(odd) - 1;
    db *conn = dbtest_open(state, 0, NULL);
    db_stmt *st;
    int rows = 0;

    dbtest_exec(conn,
                "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT, "
                "n BIGINT)");
    st = dbtest_prepare(conn, insert);
    assert_int_equal(db_bind_int64(st, 1, 1), DB_OK);
    assert_int_equal(db_bind_text(st, 2, utf8, strlen(utf8)), DB_OK);
    assert_int_equal(db_bind_int64(st, 3, INT64_MAX), DB_OK);
    assert_int_equal(db_step(st), DB_DONE);
    db_stmt_reset(st);

    st = dbtest_prepare(conn, insert);
    assert_int_equal(db_bind_int64(st, 1, 2), DB_OK);
    assert_int_equal(db_bind_null(st, 2), DB_OK);
    assert_int_equal(db_bind_int64(st, 3, INT64_MIN), DB_OK);
    assert_int_equal(db_step(st), DB_DONE);
    db_stmt_reset(st);

    /* SQLite stores text with a NUL whole; PostgreSQL refuses it rather
     * than cut it short, and the refusal sticks: the statement does not
     * run (test_failed_bind_sticks), also when a later bind succeeds. */
    if (pg) {
        st = dbtest_prepare(conn, insert);
        assert_int_equal(db_bind_int64(st, 1, 3), DB_OK);
        assert_int_equal(db_bind_text(st, 2, odd, sizeof(odd) - 1), DB_ERROR);
        assert_non_null(strstr(db_errmsg(conn), "NUL"));
        assert_int_equal(db_bind_text(st, 2, odd, odd_len), DB_OK);
        assert_int_equal(db_step(st), DB_ERROR);
        assert_non_null(strstr(db_errmsg(conn), "NUL"));
        db_stmt_reset(st);
    }
    st = dbtest_prepare(conn, insert);
    assert_int_equal(db_bind_int64(st, 1, 3), DB_OK);
    assert_int_equal(db_bind_text(st, 2, odd, odd_len), DB_OK);
    assert_int_equal(db_bind_text(st, 3, NULL, 0), DB_OK); /* NULL text */
    assert_int_equal(db_step(st), DB_DONE);
    db_stmt_reset(st);

    st = dbtest_prepare(conn, "SELECT id, name, n FROM t ORDER BY id");
    /* Before the first step there is no row to read. */
    assert_true(db_col_is_null(st, 0));
    assert_null(db_col_text(st, 0));
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
            assert_int_equal(db_col_len(st, 1), odd_len);
            assert_memory_equal(db_col_text(st, 1), odd, odd_len);
            assert_true(db_col_is_null(st, 2));
            assert_int_equal(db_col_int64(st, 2), 0);
        }
        /* Out of range columns read as NULL. */
        assert_true(db_col_is_null(st, 3));
        assert_null(db_col_text(st, -1));
    }
    /* Stepping past the end stays done. */
    assert_int_equal(db_step(st), DB_DONE);
    db_stmt_reset(st);
    assert_int_equal(rows, 3);

    /* An integer column read as text; booleans read as 0/1. */
    st = dbtest_prepare(conn, "SELECT n, n > 0, n < 0 FROM t WHERE id = $1");
    assert_int_equal(db_bind_int64(st, 1, 1), DB_OK);
    assert_int_equal(db_step(st), DB_ROW);
    assert_string_equal(db_col_text(st, 0), "9223372036854775807");
    assert_int_equal(db_col_len(st, 0), 19);
    assert_int_equal(db_col_int64(st, 1), 1);
    assert_int_equal(db_col_int64(st, 2), 0);
    assert_int_equal(db_step(st), DB_DONE);
    db_stmt_reset(st);

    if (pg) {
        /* Invalid UTF-8 is the server's error, not a crash, and a second
         * step repeats the failure. */
        st = dbtest_prepare(conn, "SELECT $1::text");
        assert_int_equal(db_bind_text(st, 1, "\xff\xfe", 2), DB_OK);
        assert_int_equal(db_step(st), DB_ERROR);
        assert_int_equal(db_step(st), DB_ERROR);
        db_stmt_reset(st);
    }
    db_close(conn);
}

void test_param_order_and_reuse(void **state)
{
    db *conn = dbtest_open(state, 0, NULL);
    db_stmt *st;

    /* $2 before $1, $1 used twice, an index the SQL does not use; on
     * PostgreSQL the server cannot choose "unknown - unknown" itself. */
    st = dbtest_prepare(conn, "SELECT $2 - $1, $1 * $1");
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
    st = dbtest_prepare(conn, "SELECT $1");
    assert_int_equal(db_bind_int64(st, 0, 1), DB_ERROR);
    assert_true(strlen(db_errmsg(conn)) > 0);
    db_stmt_reset(st);

    /* Bindings are cleared by prepare: unbound $1 is NULL. */
    st = dbtest_prepare(conn, "SELECT $1");
    assert_int_equal(db_bind_int64(st, 1, 5), DB_OK);
    db_stmt_reset(st);
    st = dbtest_prepare(conn, "SELECT $1");
    assert_int_equal(db_step(st), DB_ROW);
    assert_true(db_col_is_null(st, 0));
    db_stmt_reset(st);

    /* A gap: $1 is never used, only $2. */
    st = dbtest_prepare(conn, "SELECT $2 + 1");
    assert_int_equal(db_bind_int64(st, 2, 41), DB_OK);
    assert_int_equal(db_step(st), DB_ROW);
    assert_int_equal(db_col_int64(st, 0), 42);
    db_stmt_reset(st);

    /* "$1 IS NULL" alone (PostgreSQL cannot infer its type: bigint is
     * taken). */
    st = dbtest_prepare(conn, "SELECT $1 IS NULL");
    assert_int_equal(db_step(st), DB_ROW);
    assert_int_equal(db_col_int64(st, 0), 1);
    db_stmt_reset(st);
    st = dbtest_prepare(conn, "SELECT $1 IS NULL");
    assert_int_equal(db_bind_int64(st, 1, 5), DB_OK);
    assert_int_equal(db_step(st), DB_ROW);
    assert_int_equal(db_col_int64(st, 0), 0);
    db_stmt_reset(st);

    if (dbtest_kind(state) == DB_KIND_POSTGRES) {
        /* Dollar signs inside literals, quoted names and comments are not
         * parameters (dollar quotes and E'' are PostgreSQL's syntax). */
        st = dbtest_prepare(conn,
                            "SELECT '$3' AS \"$4\", $1 /* $5 */ -- $6\n"
                            ", $$ $7 $$, E'\\' $8'");
        assert_int_equal(db_bind_int64(st, 1, 11), DB_OK);
        assert_int_equal(db_step(st), DB_ROW);
        assert_string_equal(db_col_text(st, 0), "$3");
        assert_string_equal(db_col_text(st, 1), "11");
        assert_string_equal(db_col_text(st, 2), " $7 ");
        assert_string_equal(db_col_text(st, 3), "' $8");
        db_stmt_reset(st);
    }
    db_close(conn);
}

void test_prepare_errors(void **state)
{
    int pg = dbtest_kind(state) == DB_KIND_POSTGRES;
    db *conn = dbtest_open(state, 0, NULL);
    db_stmt *st;

    dbtest_exec(conn, "CREATE TABLE t (x BIGINT)");
    assert_null(db_prepare(conn, "SELEKT 1"));
    assert_non_null(strstr(db_errmsg(conn), "syntax error"));
    assert_null(db_prepare(conn, "SELECT * FROM missing_table"));
    assert_non_null(strstr(db_errmsg(conn), "missing_table"));
    assert_null(db_prepare(conn, "SELECT 1; SELECT 2"));
    if (!pg) /* SQLite would run the first alone: db says why not */
        assert_non_null(strstr(db_errmsg(conn), "more than one"));
    assert_null(db_prepare(conn, "   "));
    assert_null(db_prepare(conn, " ; -- nothing\n /* at all */"));
    if (pg) /* one parameter, two types */
        assert_null(db_prepare(conn,
                               "SELECT x FROM t WHERE x = $1 AND "
                               "lower($1) = 'a'"));
    assert_int_equal(db_stmt_cache_size(conn), 0);
    /* Trailing blanks, semicolons and comments are fine. */
    assert_non_null(db_prepare(conn, "SELECT 1;  \n"));
    assert_non_null(db_prepare(conn, "SELECT 2; -- two"));
    assert_int_equal(db_exec(conn, "NOT SQL"), DB_ERROR);

    /* A failed prepare leaves an open transaction usable, also one that
     * needed typed retries on PostgreSQL. */
    assert_int_equal(db_begin(conn), DB_OK);
    dbtest_exec(conn, "INSERT INTO t VALUES (1)");
    assert_null(db_prepare(conn, "SELEKT $1"));
    assert_null(db_prepare(conn, "SELECT nothing FROM t"));
    st = dbtest_prepare(conn,
                        "SELECT count(*) FROM t WHERE ($1 IS NULL OR "
                        "x = $1)");
    assert_int_equal(db_step(st), DB_ROW);
    assert_int_equal(db_col_int64(st, 0), 1);
    db_stmt_reset(st);
    dbtest_exec(conn, "INSERT INTO t VALUES (2)");
    assert_int_equal(db_commit(conn), DB_OK);
    assert_int_equal(dbtest_query_int(conn, "SELECT count(*) FROM t"), 2);
    db_close(conn);
}

void test_statement_cache(void **state)
{
    db *conn = dbtest_open(state, 0, NULL);
    db_stmt *a = dbtest_prepare(conn, "SELECT $1 + 1");
    db_stmt *b;
    char sql[64];

    db_stmt_reset(a);
    b = dbtest_prepare(conn, "SELECT $1 + 1");
    assert_ptr_equal(a, b);
    assert_int_equal(db_stmt_cache_size(conn), 1);

    /* b stays held (not reset) while many other statements pass through
     * the cache: it must survive eviction and still work. */
    assert_int_equal(db_bind_int64(b, 1, 41), DB_OK);
    for (int i = 0; i < DB_STMT_CACHE_MAX * 3; i++) {
        db_stmt *st;
        snprintf(sql, sizeof(sql), "SELECT %d", i);
        st = dbtest_prepare(conn, sql);
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
    a = dbtest_prepare(conn, sql);
    db_stmt_reset(a);
    assert_int_equal(db_stmt_cache_size(conn), DB_STMT_CACHE_MAX);

    /* Evicted statements are deallocated on the server too (in batches,
     * at the next prepare outside a transaction). */
    if (dbtest_kind(state) == DB_KIND_POSTGRES)
        assert_true(dbtest_query_int(conn,
                                     "SELECT count(*) FROM "
                                     "pg_prepared_statements"
                                     " WHERE 1 = 1") <= DB_STMT_CACHE_MAX + 1);
    db_close(conn);
}

/* Runs insert ($1 email, $2 n, $3 id) and returns what the step said. */
static int insert_p(db *conn, const char *insert, const char *email, int64_t n, int64_t id)
{
    db_stmt *st = dbtest_prepare(conn, insert);
    int rc;

    assert_int_equal(db_bind_str(st, 1, email), DB_OK);
    assert_int_equal(db_bind_int64(st, 2, n), DB_OK);
    assert_int_equal(db_bind_int64(st, 3, id), DB_OK);
    rc = db_step(st);
    db_stmt_reset(st);
    return rc;
}

void test_constraints(void **state)
{
    static const char insert[] = "INSERT INTO p (id, email, n) VALUES ($3, $1, $2)";
    int pg = dbtest_kind(state) == DB_KIND_POSTGRES;
    db *conn = dbtest_open(state, 0, NULL);
    db_stmt *st;

    dbtest_exec(conn,
                "CREATE TABLE p (id BIGINT PRIMARY KEY, email TEXT "
                "UNIQUE NOT NULL, n BIGINT CHECK (n >= 0));"
                "CREATE UNIQUE INDEX p_email_ci ON p (lower(email));"
                "CREATE TABLE c (p_id BIGINT NOT NULL REFERENCES "
                "p(id));"
                "INSERT INTO p (id, email, n) VALUES (1, 'a@x', 0)");

    /* A taken unique key (column, expression index, primary key) is
     * DB_DUPLICATE, told apart from every other violation. */
    assert_int_equal(insert_p(conn, insert, "a@x", 1, 10), DB_DUPLICATE);
    assert_non_null(strcasestr(db_errmsg(conn), "unique"));
    if (pg)
        assert_non_null(strstr(db_errmsg(conn), "23505"));
    /* The row's values (PostgreSQL's DETAIL) stay out of the message. */
    assert_null(strstr(db_errmsg(conn), "a@x"));
    assert_int_equal(insert_p(conn, insert, "A@X", 1, 10), DB_DUPLICATE);
    assert_int_equal(insert_p(conn, insert, "new@x", 1, 1), DB_DUPLICATE);
    if (pg)
        assert_non_null(strstr(db_errmsg(conn), "23505"));

    /* Check, not null, foreign key: DB_CONSTRAINT. */
    assert_int_equal(insert_p(conn, insert, "b@x", -1, 11), DB_CONSTRAINT);
    if (pg)
        assert_non_null(strstr(db_errmsg(conn), "23514"));
    else
        assert_non_null(strcasestr(db_errmsg(conn), "check"));
    assert_int_equal(insert_p(conn, insert, NULL, 1, 12), DB_CONSTRAINT);
    if (pg)
        assert_non_null(strstr(db_errmsg(conn), "23502"));
    else
        assert_non_null(strcasestr(db_errmsg(conn), "not null"));
    /* A duplicate email that also breaks the check: which one the engine
     * reports first is its business, but it is one of the two. */
    {
        int rc = insert_p(conn, insert, "a@x", -1, 13);
        assert_true(rc == DB_DUPLICATE || rc == DB_CONSTRAINT);
    }

    /* Foreign keys are enforced (SQLite: foreign_keys=ON). */
    st = dbtest_prepare(conn, "INSERT INTO c (p_id) VALUES ($1)");
    assert_int_equal(db_bind_int64(st, 1, 999), DB_OK);
    assert_int_equal(db_step(st), DB_CONSTRAINT);
    assert_non_null(strcasestr(db_errmsg(conn), "foreign key"));
    if (pg)
        assert_non_null(strstr(db_errmsg(conn), "23503"));
    db_stmt_reset(st);

    /* db_exec tells them apart too. */
    assert_int_equal(db_exec(conn, "INSERT INTO p (id, email) VALUES (1, 'z')"), DB_DUPLICATE);
    assert_int_equal(db_exec(conn, "INSERT INTO p (id, email, n) VALUES (2, 'z', -5)"),
                     DB_CONSTRAINT);

    if (pg) {
        /* A type error is a plain error (SQLite stores the text). */
        st = dbtest_prepare(conn, "INSERT INTO c (p_id) VALUES ($1)");
        assert_int_equal(db_bind_text(st, 1, "one", 3), DB_OK);
        assert_int_equal(db_step(st), DB_ERROR);
        db_stmt_reset(st);
    }

    /* The statement is usable again after the error and reset. */
    st = dbtest_prepare(conn, insert);
    assert_int_equal(db_bind_text(st, 1, "c@x", 3), DB_OK);
    assert_int_equal(db_bind_int64(st, 3, 13), DB_OK);
    assert_int_equal(db_step(st), DB_DONE);
    db_stmt_reset(st);
    assert_int_equal(dbtest_query_int(conn, "SELECT count(*) FROM p"), 2);
    db_close(conn);
}

/* More than any engine takes in one value: SQLite's length limit is at
 * most 2^31 - 1 and 10^9 by default (test_db.c checks the build's),
 * PostgreSQL's 1 GB - 1. */
#define HUGE_TEXT_LEN ((size_t)0x40000001)

void test_failed_bind_sticks(void **state)
{
    static const char insert[] = "INSERT INTO t (id, name) VALUES ($1, $2)";
    static const char count[] = "SELECT count(*) FROM t WHERE name = $1";
    db *conn = dbtest_open(state, 0, NULL);
    db_stmt *st;
    char *huge;

    dbtest_exec(conn,
                "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT);"
                "INSERT INTO t (id, name) VALUES (1, 'x')");

    /* An index out of range fails the insert, however the other binds
     * went: no row with a NULL where a value was meant. */
    st = dbtest_prepare(conn, insert);
    assert_int_equal(db_bind_int64(st, 1, 2), DB_OK);
    assert_int_equal(db_bind_str(st, 0, "lost"), DB_ERROR);
    assert_int_equal(db_bind_str(st, 2, "kept"), DB_OK);
    assert_int_equal(db_step(st), DB_ERROR);
    assert_non_null(strstr(db_errmsg(conn), "index 0"));
    /* It sticks: stepping again does not run the statement either. */
    assert_int_equal(db_step(st), DB_ERROR);
    db_stmt_reset(st);
    assert_int_equal(dbtest_query_int(conn, "SELECT count(*) FROM t"), 1);

    /* The message db_step gives is the bind's, whatever the connection
     * recorded in between; the first failure is the one kept. */
    st = dbtest_prepare(conn, "SELECT $1");
    assert_int_equal(db_bind_null(st, -1), DB_ERROR);
    assert_int_equal(db_bind_int64(st, 0, 7), DB_ERROR);
    assert_null(db_prepare(conn, "SELEKT"));
    assert_int_equal(db_step(st), DB_ERROR);
    assert_non_null(strstr(db_errmsg(conn), "index -1"));
    db_stmt_reset(st);

    /* A text too large for the engine, refused before it is read (the
     * mapping cannot be read at all), on a statement whose $1 was bound
     * before: the step neither counts the old value (a wrong answer)
     * nor NULL (no row found), it fails. */
    huge = mmap(NULL, HUGE_TEXT_LEN, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    assert_true(huge != MAP_FAILED);
    st = dbtest_prepare(conn, count);
    assert_int_equal(db_bind_str(st, 1, "x"), DB_OK);
    assert_int_equal(db_bind_text(st, 1, huge, HUGE_TEXT_LEN), DB_ERROR);
    assert_int_equal(db_step(st), DB_ERROR);
    db_stmt_reset(st);
    st = dbtest_prepare(conn, insert);
    assert_int_equal(db_bind_int64(st, 1, 3), DB_OK);
    assert_int_equal(db_bind_text(st, 2, huge, HUGE_TEXT_LEN), DB_ERROR);
    assert_int_equal(db_step(st), DB_ERROR);
    db_stmt_reset(st);
    assert_int_equal(munmap(huge, HUGE_TEXT_LEN), 0);

    /* Reset (or the next prepare) forgets the failure with the bindings:
     * the statement works again. */
    st = dbtest_prepare(conn, count);
    assert_int_equal(db_bind_str(st, 1, "x"), DB_OK);
    assert_int_equal(db_step(st), DB_ROW);
    assert_int_equal(db_col_int64(st, 0), 1);
    db_stmt_reset(st);
    st = dbtest_prepare(conn, insert);
    assert_int_equal(db_bind_int64(st, 1, 4), DB_OK);
    assert_int_equal(db_bind_str(st, 2, "y"), DB_OK);
    assert_int_equal(db_step(st), DB_DONE);
    db_stmt_reset(st);
    assert_int_equal(dbtest_query_int(conn, "SELECT count(*) FROM t"), 2);
    assert_int_equal(dbtest_query_int(conn,
                                      "SELECT count(*) FROM t WHERE "
                                      "name IS NULL"),
                     0);

    /* A failed bind does not abort PostgreSQL's transaction (nothing ran):
     * the caller decides. */
    assert_int_equal(db_begin(conn), DB_OK);
    st = dbtest_prepare(conn, insert);
    assert_int_equal(db_bind_int64(st, 0, 5), DB_ERROR);
    assert_int_equal(db_step(st), DB_ERROR);
    db_stmt_reset(st);
    dbtest_exec(conn, "INSERT INTO t (id, name) VALUES (6, 'z')");
    assert_int_equal(db_commit(conn), DB_OK);
    assert_int_equal(dbtest_query_int(conn, "SELECT count(*) FROM t"), 3);
    db_close(conn);
}

/* ---- transactions ------------------------------------------------------- */

void test_transactions(void **state)
{
    db *conn = dbtest_open(state, 0, NULL);
    db_stmt *st;

    dbtest_exec(conn, "CREATE TABLE t (x BIGINT PRIMARY KEY)");

    /* Rollback with nothing open: no error, no message. */
    assert_int_equal(db_rollback(conn), DB_OK);
    assert_string_equal(db_errmsg(conn), "");

    assert_int_equal(db_begin(conn), DB_OK);
    dbtest_exec(conn, "INSERT INTO t VALUES (1)");
    assert_int_equal(db_commit(conn), DB_OK);

    assert_int_equal(db_begin(conn), DB_OK);
    dbtest_exec(conn, "INSERT INTO t VALUES (2)");
    assert_int_equal(dbtest_query_int(conn, "SELECT count(*) FROM t"), 2);
    assert_int_equal(db_rollback(conn), DB_OK);
    assert_int_equal(dbtest_query_int(conn, "SELECT count(*) FROM t"), 1);
    assert_int_equal(db_rollback(conn), DB_OK);

    /* Nested begin is an error; commit without a transaction too. */
    assert_int_equal(db_begin(conn), DB_OK);
    assert_int_equal(db_begin(conn), DB_ERROR);
    assert_int_equal(db_rollback(conn), DB_OK);
    assert_int_equal(db_commit(conn), DB_ERROR);

    /* Committed data is seen by another connection. */
    {
        db *other = dbtest_open(state, 0, NULL);
        assert_int_equal(dbtest_query_int(other, "SELECT max(x) FROM t"), 1);
        db_close(other);
    }

    /* A statement fails inside a transaction. PostgreSQL has aborted the
     * transaction: commit says so instead of pretending, and nothing is
     * kept. SQLite undoes only that statement and goes on. */
    assert_int_equal(db_begin(conn), DB_OK);
    dbtest_exec(conn, "INSERT INTO t VALUES (3)");
    st = dbtest_prepare(conn, "INSERT INTO t VALUES ($1)");
    assert_int_equal(db_bind_int64(st, 1, 1), DB_OK);
    assert_int_equal(db_step(st), DB_DUPLICATE);
    db_stmt_reset(st);
    if (dbtest_kind(state) == DB_KIND_POSTGRES) {
        assert_int_equal(db_commit(conn), DB_ERROR);
        assert_non_null(strstr(db_errmsg(conn), "rolled back"));
        assert_int_equal(db_rollback(conn), DB_OK);
        assert_int_equal(dbtest_query_int(conn, "SELECT count(*) FROM t"), 1);
    } else {
        assert_int_equal(db_commit(conn), DB_OK);
        assert_int_equal(dbtest_query_int(conn, "SELECT count(*) FROM t"), 2);
    }
    db_close(conn);
}

/* db_set_durable switches the engine's own setting and back, and a
 * commit made without waiting for the disk is still visible at once. */
void test_relaxed_commits(void **state)
{
    db *conn = dbtest_open(state, 0, NULL);
    int pg = dbtest_kind(state) == DB_KIND_POSTGRES;
    const char *show = pg ? "SHOW synchronous_commit" : "PRAGMA synchronous";
    char buf[DBTEST_NAME_MAX];

    dbtest_exec(conn, "CREATE TABLE t (x BIGINT PRIMARY KEY)");
    /* The default: durable (synchronous_commit on; synchronous FULL = 2). */
    assert_string_equal(dbtest_query_text(conn, show, buf, sizeof(buf)), pg ? "on" : "2");

    assert_int_equal(db_set_durable(conn, 0), DB_OK);
    assert_string_equal(dbtest_query_text(conn, show, buf, sizeof(buf)), pg ? "off" : "1");
    assert_int_equal(db_begin(conn), DB_OK);
    dbtest_exec(conn, "INSERT INTO t VALUES (1)");
    assert_int_equal(db_commit(conn), DB_OK);
    {
        db *other = dbtest_open(state, 0, NULL);
        assert_int_equal(dbtest_query_int(other, "SELECT count(*) FROM t"), 1);
        db_close(other);
    }
    assert_int_equal(db_set_durable(conn, 1), DB_OK);
    assert_string_equal(dbtest_query_text(conn, show, buf, sizeof(buf)), pg ? "on" : "2");

    /* SQLite cannot change it inside a transaction (hence "call it
     * outside one"); it says so rather than going on. */
    if (!pg) {
        assert_int_equal(db_begin(conn), DB_OK);
        assert_int_not_equal(db_set_durable(conn, 0), DB_OK);
        assert_int_equal(db_rollback(conn), DB_OK);
        assert_string_equal(dbtest_query_text(conn, show, buf, sizeof(buf)), "2");
    }
    db_close(conn);
}

/* ---- migrations --------------------------------------------------------- */

static const struct db_migration migrations[] = {
    /* Listed out of order on purpose: 2 needs 1's table. */
    {2, "seed", "INSERT INTO t (x) VALUES (1); INSERT INTO t (x) VALUES (2)",
     "INSERT INTO t (x) VALUES (1), (2)"},
    {1, "create t", "CREATE TABLE t (x INTEGER NOT NULL)", "CREATE TABLE t (x BIGINT NOT NULL)"},
};

/* Connections here do not make the PostgreSQL schema: db_migrate does. */
static db *open_bare(void **state, int n)
{
    char url[DBTEST_URL_MAX];

    return dbtest_open_url(dbtest_url(state, n, NULL, url));
}

void test_migrate(void **state)
{
    db *conn = open_bare(state, 0);
    char err[DBTEST_ERR_MAX] = "";
    int64_t before = util_now_ms();
    db_stmt *st;
    int rows = 0;

    if (db_migrate(conn, migrations, ARRAY_LEN(migrations), err, sizeof(err)) != DB_OK)
        fail_msg("db_migrate: %s", err);
    /* Twice: nothing is applied again (a second CREATE TABLE t would
     * fail, a second seed would double the rows). */
    assert_int_equal(db_migrate(conn, migrations, ARRAY_LEN(migrations), err, sizeof(err)), DB_OK);
    assert_int_equal(dbtest_query_int(conn, "SELECT count(*) FROM t"), 2);

    if (dbtest_kind(state) == DB_KIND_POSTGRES) {
        /* Both tables are in the connection's schema. */
        char schema[DBTEST_NAME_MAX];
        char sql[256];

        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM pg_tables WHERE schemaname = '%s' AND "
                 "tablename IN ('t', 'schema_migrations')",
                 dbtest_schema(state, 0, schema));
        assert_int_equal(dbtest_query_int(conn, sql), 2);
    }

    st = dbtest_prepare(conn,
                        "SELECT version, name, applied_at "
                        "FROM schema_migrations ORDER BY version");
    while (db_step(st) == DB_ROW) {
        rows++;
        assert_int_equal(db_col_int64(st, 0), rows);
        assert_string_equal(db_col_text(st, 1), rows == 1 ? "create t" : "seed");
        assert_true(db_col_int64(st, 2) >= before);
        assert_true(db_col_int64(st, 2) <= util_now_ms());
    }
    db_stmt_reset(st);
    assert_int_equal(rows, 2);

    /* A fresh connection (a restart) applies nothing either. */
    db_close(conn);
    conn = open_bare(state, 0);
    assert_int_equal(db_migrate(conn, migrations, ARRAY_LEN(migrations), err, sizeof(err)), DB_OK);
    assert_int_equal(dbtest_query_int(conn, "SELECT count(*) FROM t"), 2);
    /* No transaction is left open. */
    assert_int_equal(db_begin(conn), DB_OK);
    assert_int_equal(db_rollback(conn), DB_OK);
    db_close(conn);
}

/* An empty list on a new database only creates schema_migrations (and on
 * PostgreSQL the schema, which did not exist). */
void test_migrate_empty(void **state)
{
    int pg = dbtest_kind(state) == DB_KIND_POSTGRES;
    char err[DBTEST_ERR_MAX] = "";
    char schema[DBTEST_NAME_MAX];
    char sql[256];
    db *conn = open_bare(state, 0);

    snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_namespace WHERE nspname = '%s'",
             dbtest_schema(state, 0, schema));
    if (pg)
        assert_int_equal(dbtest_query_int(conn, sql), 0);
    assert_int_equal(db_migrate(conn, NULL, 0, err, sizeof(err)), DB_OK);
    if (pg)
        assert_int_equal(dbtest_query_int(conn, sql), 1);
    assert_int_equal(dbtest_query_int(conn, "SELECT count(*) FROM schema_migrations"), 0);
    db_close(conn);
}

void test_migrate_failure(void **state)
{
    static const struct db_migration broken[] = {
        {1, "create t", "CREATE TABLE t (x INTEGER)", "CREATE TABLE t (x BIGINT)"},
        {2, "half", "INSERT INTO t VALUES (1); INSERT INTO nowhere VALUES (1)",
         "INSERT INTO t VALUES (1); INSERT INTO nowhere VALUES (1)"},
        {3, "never", "INSERT INTO t VALUES (3)", "INSERT INTO t VALUES (3)"},
    };
    static const struct db_migration dup[] = {
        {1, "a", "SELECT 1", "SELECT 1"},
        {1, "b", "SELECT 1", "SELECT 1"},
    };
    /* A migration without this backend's SQL. */
    static const struct db_migration no_sqlite[] = {
        {1, "postgres only", NULL, "SELECT 1"},
    };
    static const struct db_migration no_postgres[] = {
        {1, "sqlite only", "SELECT 1", NULL},
    };
    int pg = dbtest_kind(state) == DB_KIND_POSTGRES;
    db *conn = open_bare(state, 0);
    char err[DBTEST_ERR_MAX] = "";

    assert_int_equal(db_migrate(conn, broken, ARRAY_LEN(broken), err, sizeof(err)), DB_ERROR);
    assert_non_null(strstr(err, "migration 2 (half)"));
    assert_non_null(strstr(err, "nowhere"));
    /* 1 is recorded, 2 left nothing behind, 3 was not tried. */
    assert_int_equal(dbtest_query_int(conn, "SELECT count(*) FROM t"), 0);
    assert_int_equal(dbtest_query_int(conn, "SELECT count(*) FROM schema_migrations"), 1);
    assert_int_equal(dbtest_query_int(conn, "SELECT max(version) FROM schema_migrations"), 1);
    /* No transaction is left open. */
    assert_int_equal(db_begin(conn), DB_OK);
    assert_int_equal(db_rollback(conn), DB_OK);

    err[0] = '\0';
    assert_int_equal(db_migrate(conn, dup, ARRAY_LEN(dup), err, sizeof(err)), DB_ERROR);
    assert_non_null(strstr(err, "twice"));
    err[0] = '\0';
    assert_int_equal(db_migrate(conn, pg ? no_postgres : no_sqlite, 1, err, sizeof(err)), DB_ERROR);
    assert_non_null(strstr(err, pg ? "postgres" : "sqlite"));
    db_close(conn);
}

struct migrate_job {
    char url[DBTEST_URL_MAX];
    pthread_barrier_t *start;
    int rc;
    char err[DBTEST_ERR_MAX];
};

static void *migrate_thread(void *arg)
{
    struct migrate_job *job = arg;
    db *conn = NULL;

    job->rc = db_open(job->url, &conn, job->err, sizeof(job->err));
    pthread_barrier_wait(job->start);
    if (job->rc == DB_OK)
        job->rc = db_migrate(conn, migrations, ARRAY_LEN(migrations), job->err, sizeof(job->err));
    db_close(conn);
    return NULL;
}

/* Processes starting at once on one database, each with its own
 * connection as here: schema_migrations and every migration are made
 * exactly once (and on PostgreSQL the schema: CREATE ... IF NOT EXISTS
 * alone races there). Every round uses a new database; a round costs a
 * file on SQLite and a schema on PostgreSQL, hence more rounds there. */
void test_migrate_concurrent(void **state)
{
    enum { JOBS = 4, SQLITE_ROUNDS = 20, POSTGRES_ROUNDS = 6 };
    int rounds = dbtest_kind(state) == DB_KIND_SQLITE ? SQLITE_ROUNDS : POSTGRES_ROUNDS;
    struct migrate_job jobs[JOBS];
    pthread_t threads[JOBS];
    pthread_barrier_t start;
    db *conn;

    for (int round = 0; round < rounds; round++) {
        char url[DBTEST_URL_MAX];

        dbtest_url(state, round, NULL, url);
        pthread_barrier_init(&start, NULL, JOBS);
        for (int i = 0; i < JOBS; i++) {
            memset(&jobs[i], 0, sizeof(jobs[i]));
            util_strlcpy(jobs[i].url, url, sizeof(jobs[i].url));
            jobs[i].start = &start;
            assert_int_equal(pthread_create(&threads[i], NULL, migrate_thread, &jobs[i]), 0);
        }
        /* All joined before any check: a failed check leaves the test,
         * and the threads write into jobs. */
        for (int i = 0; i < JOBS; i++)
            pthread_join(threads[i], NULL);
        pthread_barrier_destroy(&start);
        for (int i = 0; i < JOBS; i++) {
            if (jobs[i].rc != DB_OK)
                fail_msg("round %d job %d: %d %s", round, i, jobs[i].rc, jobs[i].err);
        }
        conn = dbtest_open_url(url);
        assert_int_equal(dbtest_query_int(conn, "SELECT count(*) FROM t"), 2);
        assert_int_equal(dbtest_query_int(conn, "SELECT count(*) FROM schema_migrations"), 2);
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

/* Runs one statement with $1 = value; DB_OK or an error. */
static int run_with(db *conn, const char *sql, int64_t value)
{
    db_stmt *st = db_prepare(conn, sql);
    int rc;

    if (!st)
        return DB_ERROR;
    db_bind_int64(st, 1, value);
    rc = db_step(st) == DB_DONE ? DB_OK : DB_ERROR;
    db_stmt_reset(st);
    return rc;
}

static void *pool_worker(void *arg)
{
    struct pool_shared *s = arg;

    for (int i = 0; i < POOL_ITERATIONS; i++) {
        db *conn = db_pool_acquire(s->pool);
        int rc;

        pthread_mutex_lock(&s->lock);
        if (++s->in_use > s->max_in_use)
            s->max_in_use = s->in_use;
        pthread_mutex_unlock(&s->lock);

        /* Every connection updates one row too: no lost updates. */
        rc = db_begin(conn);
        if (rc == DB_OK)
            rc = run_with(conn, "INSERT INTO t (x) VALUES ($1)", i);
        if (rc == DB_OK)
            rc = run_with(conn, "UPDATE total SET n = n + $1", 1);
        if (rc == DB_OK)
            rc = db_commit(conn);
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

void test_pool_threads(void **state)
{
    struct pool_shared s = {0};
    pthread_t threads[POOL_THREADS];
    char url[DBTEST_URL_MAX];
    char err[DBTEST_ERR_MAX] = "";
    db *conn = dbtest_open(state, 0, NULL);

    dbtest_exec(conn,
                "CREATE TABLE t (x BIGINT);"
                "CREATE TABLE total (n BIGINT);"
                "INSERT INTO total VALUES (0)");
    db_close(conn);
    s.pool = db_pool_open(dbtest_url(state, 0, NULL, url), POOL_SIZE, err, sizeof(err));
    if (!s.pool)
        fail_msg("db_pool_open: %s", err);
    pthread_mutex_init(&s.lock, NULL);

    for (int i = 0; i < POOL_THREADS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, pool_worker, &s), 0);
    for (int i = 0; i < POOL_THREADS; i++)
        pthread_join(threads[i], NULL);

    assert_int_equal(s.failures, 0);
    assert_true(s.max_in_use >= 1);
    assert_true(s.max_in_use <= POOL_SIZE);
    conn = db_pool_acquire(s.pool);
    assert_int_equal(dbtest_query_int(conn, "SELECT count(*) FROM t"),
                     POOL_THREADS * POOL_ITERATIONS);
    assert_int_equal(dbtest_query_int(conn, "SELECT n FROM total"), POOL_THREADS * POOL_ITERATIONS);
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

void test_pool_blocks_and_cleans_up(void **state)
{
    char url[DBTEST_URL_MAX];
    char err[DBTEST_ERR_MAX] = "";
    struct blocked_acquire b = {.pool = NULL};
    pthread_t thread;
    db *conn = dbtest_open(state, 0, NULL);
    db_stmt *st;
    int done_while_held;

    dbtest_exec(conn, "CREATE TABLE t (x BIGINT)");
    db_close(conn);
    dbtest_url(state, 0, NULL, url);
    assert_null(db_pool_open(url, 0, err, sizeof(err)));
    assert_true(strlen(err) > 0);

    b.pool = db_pool_open(url, 1, err, sizeof(err));
    assert_non_null(b.pool);
    conn = db_pool_acquire(b.pool);

    /* Left behind by a careless caller: an open transaction and a
     * statement in the middle of its rows. */
    assert_int_equal(db_begin(conn), DB_OK);
    dbtest_exec(conn, "INSERT INTO t VALUES (1), (2)");
    st = dbtest_prepare(conn, "SELECT x FROM t");
    assert_int_equal(db_step(st), DB_ROW);

    /* Waiting in acquire, not merely slow to get there: only then does
     * its not being done prove that acquire blocks. */
    assert_int_equal(pthread_create(&thread, NULL, acquire_thread, &b), 0);
    {
        int64_t deadline = util_monotonic_ns() + WAIT_MS * 1000000LL;
        while (db_pool_waiting(b.pool) == 0 && util_monotonic_ns() < deadline)
            usleep(POLL_MS * 1000);
    }
    assert_int_equal(db_pool_waiting(b.pool), 1);
    done_while_held = atomic_load(&b.done);
    db_pool_release(b.pool, conn);
    pthread_join(thread, NULL);
    assert_int_equal(done_while_held, 0);
    assert_int_equal(atomic_load(&b.done), 1);
    assert_ptr_equal(b.got, conn);
    assert_int_equal(db_pool_waiting(b.pool), 0);

    /* The release rolled back and reset: the rows are gone and no lock is
     * left (SQLite's BEGIN IMMEDIATE takes the write lock; on PostgreSQL
     * the insert's lock on t would make LOCK TABLE wait). */
    conn = db_pool_acquire(b.pool);
    assert_int_equal(dbtest_query_int(conn, "SELECT count(*) FROM t"), 0);
    {
        db *other = dbtest_open(state, 0, "busy_timeout=50");
        assert_int_equal(db_begin(other), DB_OK);
        if (db_kind(other) == DB_KIND_POSTGRES)
            dbtest_exec(other, "LOCK TABLE t IN ACCESS EXCLUSIVE MODE");
        assert_int_equal(db_rollback(other), DB_OK);
        db_close(other);
    }

    /* A connection whose last error was DB_UNAVAILABLE is reopened on the
     * next acquire: its statement cache and message start afresh. */
    assert_non_null(db_prepare(conn, "SELECT 1"));
    assert_true(db_stmt_cache_size(conn) > 0);
    db_fail(conn, DB_UNAVAILABLE, "connection lost (simulated)");
    db_pool_release(b.pool, conn);
    conn = db_pool_acquire(b.pool);
    assert_int_equal(db_stmt_cache_size(conn), 0);
    assert_string_equal(db_errmsg(conn), "");
    assert_int_equal(db_ping(conn), DB_OK);
    db_pool_release(b.pool, conn);
    db_pool_close(b.pool);
    db_pool_close(NULL);
}
