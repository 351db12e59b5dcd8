/*
 * Unit tests of db on PostgreSQL: the behaviours test_db.c checks on
 * SQLite, plus every SQL statement shape the services use, advisory
 * locks and reconnection. They need a real server: TEST_PG_URL, e.g.
 * postgres://postgres:postgres@127.0.0.1:PORT/postgres (scripts/
 * run-tests.sh starts a private cluster with scripts/postgres.sh and sets
 * it). Each test works in a schema of its own (?schema=...), dropped by
 * its teardown, so tests neither see each other's tables nor leave any.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "db_internal.h"
#include "inbox.h"
#include "outbox.h"
#include "util.h"

#define URL_MAX 1024
#define ERR_MAX 512
#define SCHEMA_MAX 64
/* How long a terminated backend may take to disappear. */
#define TERMINATE_WAIT_MS 5000

struct fixture {
    char schema[SCHEMA_MAX];
    char url[URL_MAX]; /* TEST_PG_URL with ?schema= */
};

static const char *base_url(void)
{
    const char *url = getenv("TEST_PG_URL");

    return url && *url ? url : NULL;
}

/* base + "?schema=NAME" (or "&..."), plus "&extra" when given. */
static void make_url(char *buf, const char *schema, const char *extra)
{
    const char *base = base_url();

    snprintf(buf, URL_MAX, "%s%cschema=%s%s%s", base,
             strchr(base, '?') ? '&' : '?', schema, extra ? "&" : "",
             extra ? extra : "");
}

static int setup(void **state)
{
    static atomic_int counter;
    struct fixture *f;

    if (!base_url()) {
        print_error("TEST_PG_URL is not set: these tests need a PostgreSQL "
                    "server (scripts/run-tests.sh starts one with "
                    "scripts/postgres.sh)\n");
        return -1;
    }
    f = xcalloc(1, sizeof(*f));
    snprintf(f->schema, sizeof(f->schema), "test_db_pg_%d_%d", (int)getpid(),
             atomic_fetch_add(&counter, 1));
    make_url(f->url, f->schema, NULL);
    *state = f;
    return 0;
}

static db *open_url(const char *url)
{
    char err[ERR_MAX] = "";
    db *conn = NULL;
    int rc = db_open(url, &conn, err, sizeof(err));

    if (rc != DB_OK)
        fail_msg("db_open: %d %s", rc, err);
    assert_non_null(conn);
    return conn;
}

static void exec_ok(db *conn, const char *sql)
{
    int rc = db_exec(conn, sql);

    if (rc != DB_OK)
        fail_msg("db_exec(%s): %d %s", sql, rc, db_errmsg(conn));
}

/* The test's schema, made here (db_migrate makes it in the services). */
static db *open_ok(void **state, const char *extra)
{
    struct fixture *f = *state;
    char url[URL_MAX];
    char sql[128];
    db *conn;

    make_url(url, f->schema, extra);
    conn = open_url(url);
    snprintf(sql, sizeof(sql), "CREATE SCHEMA IF NOT EXISTS \"%s\"",
             f->schema);
    exec_ok(conn, sql);
    return conn;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char sql[128];
    db *conn = NULL;
    int rc;

    rc = db_open(base_url(), &conn, NULL, 0);
    if (rc == DB_OK) {
        snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS \"%s\" CASCADE",
                 f->schema);
        rc = db_exec(conn, sql);
        db_close(conn);
    }
    free(f);
    return rc == DB_OK ? 0 : -1;
}

static db_stmt *prepare_ok(db *conn, const char *sql)
{
    db_stmt *st = db_prepare(conn, sql);

    if (!st)
        fail_msg("prepare(%s): %s", sql, db_errmsg(conn));
    return st;
}

/* First column of the first row of a query without parameters. */
static int64_t query_int(db *conn, const char *sql)
{
    db_stmt *st = prepare_ok(conn, sql);
    int64_t v;
    int rc = db_step(st);

    if (rc != DB_ROW)
        fail_msg("step(%s): %d %s", sql, rc, db_errmsg(conn));
    v = db_col_int64(st, 0);
    db_stmt_reset(st);
    return v;
}

/* Same, as text copied into buf. */
static const char *query_text(db *conn, const char *sql, char *buf,
                              size_t size)
{
    db_stmt *st = prepare_ok(conn, sql);

    assert_int_equal(db_step(st), DB_ROW);
    util_strlcpy(buf, db_col_text(st, 0) ? db_col_text(st, 0) : "(null)",
                 size);
    db_stmt_reset(st);
    return buf;
}

/* Runs a statement that returns no rows; returns the db_result. */
static int run(db_stmt *st)
{
    int rc = db_step(st);

    db_stmt_reset(st);
    return rc == DB_DONE ? DB_OK : rc;
}

static void bind_text(db_stmt *st, int index, const char *s)
{
    if (s)
        assert_int_equal(db_bind_text(st, index, s, strlen(s)), DB_OK);
    else
        assert_int_equal(db_bind_null(st, index), DB_OK);
}

/* ---- opening ------------------------------------------------------------ */

static void test_open_and_session(void **state)
{
    struct fixture *f = *state;
    char buf[256];
    db *conn = open_ok(state, NULL);

    assert_int_equal(db_kind(conn), DB_KIND_POSTGRES);
    assert_string_equal(db_errmsg(conn), "");
    assert_int_equal(db_ping(conn), DB_OK);
    assert_string_equal(query_text(conn, "SELECT current_schema()", buf,
                                   sizeof(buf)),
                        f->schema);
    assert_string_equal(query_text(conn, "SHOW lock_timeout", buf,
                                   sizeof(buf)),
                        "5s");
    assert_string_equal(query_text(conn, "SHOW client_encoding", buf,
                                   sizeof(buf)),
                        "UTF8");
    /* Unqualified names land in the schema. */
    exec_ok(conn, "CREATE TABLE here (x BIGINT)");
    snprintf(buf, sizeof(buf),
             "SELECT count(*) FROM pg_tables WHERE schemaname = '%s' "
             "AND tablename = 'here'",
             f->schema);
    assert_int_equal(query_int(conn, buf), 1);
    db_close(conn);

    conn = open_ok(state, "busy_timeout=50");
    assert_string_equal(query_text(conn, "SHOW lock_timeout", buf,
                                   sizeof(buf)),
                        "50ms");
    db_close(conn);
    db_close(NULL);

    /* Without ?schema= the schema is demo. */
    conn = open_url(base_url());
    assert_string_equal(query_text(conn, "SHOW search_path", buf,
                                   sizeof(buf)),
                        "demo");
    db_close(conn);
}

/* host, port and database of TEST_PG_URL, for URLs with other users. */
static void server_of(char *host, char *port, char *dbname, size_t size)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(base_url(), &perr);

    if (!opts)
        fail_msg("TEST_PG_URL does not parse: %s", perr ? perr : "?");
    util_strlcpy(host, "127.0.0.1", size);
    util_strlcpy(port, "5432", size);
    util_strlcpy(dbname, "postgres", size);
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        if (strcmp(o->keyword, "host") == 0)
            util_strlcpy(host, o->val, size);
        else if (strcmp(o->keyword, "port") == 0)
            util_strlcpy(port, o->val, size);
        else if (strcmp(o->keyword, "dbname") == 0)
            util_strlcpy(dbname, o->val, size);
    }
    PQconninfoFree(opts);
}

static void test_bad_urls(void **state)
{
    static const char *const bad_config[] = {
        "postgres://u:s3cret@127.0.0.1:1/db?schema=",
        "postgres://u:s3cret@127.0.0.1:1/db?schema=1abc",
        "postgres://u:s3cret@127.0.0.1:1/db?schema=a;drop",
        "postgres://u:s3cret@127.0.0.1:1/db?schema=a%22b",
        "postgres://u:s3cret@127.0.0.1:1/db?busy_timeout=x",
        "postgres://u:s3cret@127.0.0.1:1/db?busy_timeout=-1",
        "postgres://u:s3cret@127.0.0.1:1/db?no_such_option=1",
        "postgresql://u:s3%zzcret@127.0.0.1:1/db",
    };
    char err[ERR_MAX];
    char url[URL_MAX];
    char host[128], port[16], dbname[128];
    db *conn = (db *)1;
    (void)state;

    for (size_t i = 0; i < ARRAY_LEN(bad_config); i++) {
        err[0] = '\0';
        assert_int_equal(db_open(bad_config[i], &conn, err, sizeof(err)),
                         DB_ERROR);
        assert_null(conn);
        assert_non_null(strstr(err, "PostgreSQL"));
        assert_null(strstr(err, "s3cret"));
        assert_null(strstr(err, "s3%zzcret"));
    }

    /* Nobody listens: unavailable (worth retrying), not a bad URL. */
    err[0] = '\0';
    assert_int_equal(db_open("postgres://app:s3cret@127.0.0.1:1/orders",
                             &conn, err, sizeof(err)),
                     DB_UNAVAILABLE);
    assert_null(conn);
    assert_non_null(strstr(err, "PostgreSQL"));
    assert_null(strstr(err, "s3cret"));
    assert_null(db_pool_open("postgresql://app:s3cret@127.0.0.1:1/orders", 2,
                             err, sizeof(err)));
    assert_null(strstr(err, "s3cret"));

    /* A wrong password on the real server. */
    server_of(host, port, dbname, sizeof(host));
    snprintf(url, sizeof(url), "postgres://postgres:wr0ngpw@%s:%s/%s", host,
             port, dbname);
    err[0] = '\0';
    assert_int_equal(db_open(url, &conn, err, sizeof(err)), DB_UNAVAILABLE);
    assert_null(conn);
    assert_true(strlen(err) > 0);
    assert_null(strstr(err, "wr0ngpw"));

    /* No such database. */
    snprintf(url, sizeof(url), "%s", base_url());
    {
        char *slash = strrchr(url + strlen("postgres://"), '/');
        char *query = strchr(url, '?');
        char rest[URL_MAX] = "";
        assert_non_null(slash);
        if (query)
            util_strlcpy(rest, query, sizeof(rest));
        snprintf(slash, sizeof(url) - (size_t)(slash - url),
                 "/no_such_db_here%s", rest);
    }
    assert_int_equal(db_open(url, &conn, err, sizeof(err)), DB_UNAVAILABLE);
    assert_non_null(strstr(err, "no_such_db_here"));

    assert_int_equal(db_open("mysql://x", &conn, NULL, 0), DB_ERROR);
}

/* ---- statements --------------------------------------------------------- */

static void test_bind_step_columns(void **state)
{
    static const char odd[] = "ab\0cd";        /* 5 bytes, a NUL inside */
    static const char utf8[] = "h\xc3\xa9llo"; /* "héllo", 6 bytes */
    db *conn = open_ok(state, NULL);
    db_stmt *st;
    int rows = 0;

    exec_ok(conn, "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT, "
                  "n BIGINT)");
    st = prepare_ok(conn, "INSERT INTO t (id, name, n) VALUES ($1, $2, $3)");
    assert_int_equal(db_bind_int64(st, 1, 1), DB_OK);
    assert_int_equal(db_bind_text(st, 2, utf8, strlen(utf8)), DB_OK);
    assert_int_equal(db_bind_int64(st, 3, INT64_MAX), DB_OK);
    assert_int_equal(db_step(st), DB_DONE);
    db_stmt_reset(st);

    st = prepare_ok(conn, "INSERT INTO t (id, name, n) VALUES ($1, $2, $3)");
    assert_int_equal(db_bind_int64(st, 1, 2), DB_OK);
    assert_int_equal(db_bind_null(st, 2), DB_OK);
    assert_int_equal(db_bind_int64(st, 3, INT64_MIN), DB_OK);
    assert_int_equal(db_step(st), DB_DONE);
    db_stmt_reset(st);

    /* Text with a NUL cannot be stored: refused, not cut short. */
    st = prepare_ok(conn, "INSERT INTO t (id, name, n) VALUES ($1, $2, $3)");
    assert_int_equal(db_bind_int64(st, 1, 3), DB_OK);
    assert_int_equal(db_bind_text(st, 2, odd, sizeof(odd) - 1), DB_ERROR);
    assert_non_null(strstr(db_errmsg(conn), "NUL"));
    assert_int_equal(db_bind_text(st, 2, odd, 2), DB_OK); /* "ab" */
    assert_int_equal(db_bind_text(st, 3, NULL, 0), DB_OK); /* NULL text */
    assert_int_equal(db_step(st), DB_DONE);
    db_stmt_reset(st);

    st = prepare_ok(conn, "SELECT id, name, n FROM t ORDER BY id");
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
            assert_int_equal(db_col_len(st, 1), 2);
            assert_string_equal(db_col_text(st, 1), "ab");
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
    st = prepare_ok(conn, "SELECT n, n > 0, n < 0 FROM t WHERE id = $1");
    assert_int_equal(db_bind_int64(st, 1, 1), DB_OK);
    assert_int_equal(db_step(st), DB_ROW);
    assert_string_equal(db_col_text(st, 0), "9223372036854775807");
    assert_int_equal(db_col_len(st, 0), 19);
    assert_int_equal(db_col_int64(st, 1), 1);
    assert_int_equal(db_col_int64(st, 2), 0);
    assert_int_equal(db_step(st), DB_DONE);
    db_stmt_reset(st);

    /* Invalid UTF-8 is the server's error, not a crash. */
    st = prepare_ok(conn, "SELECT $1::text");
    assert_int_equal(db_bind_text(st, 1, "\xff\xfe", 2), DB_OK);
    assert_int_equal(db_step(st), DB_ERROR);
    /* A second step repeats the failure. */
    assert_int_equal(db_step(st), DB_ERROR);
    db_stmt_reset(st);
    db_close(conn);
}

static void test_param_order_and_reuse(void **state)
{
    db *conn = open_ok(state, NULL);
    db_stmt *st;

    /* $2 before $1, $1 used twice, an index the SQL does not use; the
     * server cannot choose "unknown - unknown" itself. */
    st = prepare_ok(conn, "SELECT $2 - $1, $1 * $1");
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
    st = prepare_ok(conn, "SELECT $1");
    assert_int_equal(db_bind_int64(st, 0, 1), DB_ERROR);
    assert_true(strlen(db_errmsg(conn)) > 0);
    db_stmt_reset(st);

    /* Bindings are cleared by prepare: unbound $1 is NULL. */
    st = prepare_ok(conn, "SELECT $1");
    assert_int_equal(db_bind_int64(st, 1, 5), DB_OK);
    db_stmt_reset(st);
    st = prepare_ok(conn, "SELECT $1");
    assert_int_equal(db_step(st), DB_ROW);
    assert_true(db_col_is_null(st, 0));
    db_stmt_reset(st);

    /* A gap: $1 is never used, only $2. */
    st = prepare_ok(conn, "SELECT $2 + 1");
    assert_int_equal(db_bind_int64(st, 2, 41), DB_OK);
    assert_int_equal(db_step(st), DB_ROW);
    assert_int_equal(db_col_int64(st, 0), 42);
    db_stmt_reset(st);

    /* "$1 IS NULL" alone: the server cannot infer, bigint is taken. */
    st = prepare_ok(conn, "SELECT $1 IS NULL");
    assert_int_equal(db_step(st), DB_ROW);
    assert_int_equal(db_col_int64(st, 0), 1);
    db_stmt_reset(st);
    st = prepare_ok(conn, "SELECT $1 IS NULL");
    assert_int_equal(db_bind_int64(st, 1, 5), DB_OK);
    assert_int_equal(db_step(st), DB_ROW);
    assert_int_equal(db_col_int64(st, 0), 0);
    db_stmt_reset(st);

    /* Dollar signs inside literals, quoted names and comments are not
     * parameters. */
    st = prepare_ok(conn, "SELECT '$3' AS \"$4\", $1 /* $5 */ -- $6\n"
                          ", $$ $7 $$, E'\\' $8'");
    assert_int_equal(db_bind_int64(st, 1, 11), DB_OK);
    assert_int_equal(db_step(st), DB_ROW);
    assert_string_equal(db_col_text(st, 0), "$3");
    assert_string_equal(db_col_text(st, 1), "11");
    assert_string_equal(db_col_text(st, 2), " $7 ");
    assert_string_equal(db_col_text(st, 3), "' $8");
    db_stmt_reset(st);
    db_close(conn);
}

static void test_prepare_errors(void **state)
{
    db *conn = open_ok(state, NULL);
    db_stmt *st;

    exec_ok(conn, "CREATE TABLE t (x BIGINT)");
    assert_null(db_prepare(conn, "SELEKT 1"));
    assert_non_null(strstr(db_errmsg(conn), "syntax error"));
    assert_null(db_prepare(conn, "SELECT * FROM missing_table"));
    assert_non_null(strstr(db_errmsg(conn), "missing_table"));
    assert_null(db_prepare(conn, "SELECT 1; SELECT 2"));
    assert_null(db_prepare(conn, "   "));
    assert_null(db_prepare(conn, " ; -- nothing\n /* at all */"));
    assert_null(db_prepare(conn, "SELECT x FROM t WHERE x = $1 AND "
                                 "lower($1) = 'a'"));
    assert_int_equal(db_stmt_cache_size(conn), 0);
    /* Trailing blanks, semicolons and comments are fine. */
    assert_non_null(db_prepare(conn, "SELECT 1;  \n"));
    assert_non_null(db_prepare(conn, "SELECT 2; -- two"));
    assert_int_equal(db_exec(conn, "NOT SQL"), DB_ERROR);

    /* A failed prepare leaves an open transaction usable, as on SQLite,
     * also one that needed typed retries. */
    assert_int_equal(db_begin(conn), DB_OK);
    exec_ok(conn, "INSERT INTO t VALUES (1)");
    assert_null(db_prepare(conn, "SELEKT $1"));
    assert_null(db_prepare(conn, "SELECT nothing FROM t"));
    st = prepare_ok(conn, "SELECT count(*) FROM t WHERE ($1 IS NULL OR "
                          "x = $1)");
    assert_int_equal(db_step(st), DB_ROW);
    assert_int_equal(db_col_int64(st, 0), 1);
    db_stmt_reset(st);
    exec_ok(conn, "INSERT INTO t VALUES (2)");
    assert_int_equal(db_commit(conn), DB_OK);
    assert_int_equal(query_int(conn, "SELECT count(*) FROM t"), 2);
    db_close(conn);
}

static void test_statement_cache(void **state)
{
    db *conn = open_ok(state, NULL);
    db_stmt *a = prepare_ok(conn, "SELECT $1 + 1");
    db_stmt *b;
    char sql[64];

    db_stmt_reset(a);
    b = prepare_ok(conn, "SELECT $1 + 1");
    assert_ptr_equal(a, b);
    assert_int_equal(db_stmt_cache_size(conn), 1);

    /* b stays held while many other statements pass through the cache. */
    assert_int_equal(db_bind_int64(b, 1, 41), DB_OK);
    for (int i = 0; i < DB_STMT_CACHE_MAX * 3; i++) {
        db_stmt *st;
        snprintf(sql, sizeof(sql), "SELECT %d", i);
        st = prepare_ok(conn, sql);
        assert_int_equal(db_step(st), DB_ROW);
        assert_int_equal(db_col_int64(st, 0), i);
        db_stmt_reset(st);
        assert_true(db_stmt_cache_size(conn) <= DB_STMT_CACHE_MAX);
    }
    assert_int_equal(db_step(b), DB_ROW);
    assert_int_equal(db_col_int64(b, 0), 42);
    db_stmt_reset(b);
    assert_int_equal(db_stmt_cache_size(conn), DB_STMT_CACHE_MAX);

    /* Evicted statements are deallocated on the server too (in batches,
     * at the next prepare outside a transaction). */
    assert_true(query_int(conn, "SELECT count(*) FROM pg_prepared_statements"
                                " WHERE 1 = 1") <= DB_STMT_CACHE_MAX + 1);
    db_close(conn);
}

static void test_constraints(void **state)
{
    db *conn = open_ok(state, NULL);
    db_stmt *st;

    exec_ok(conn, "CREATE TABLE p (id BIGSERIAL PRIMARY KEY, email TEXT "
                  "UNIQUE NOT NULL, n BIGINT CHECK (n >= 0));"
                  "CREATE TABLE c (id BIGSERIAL PRIMARY KEY, "
                  "p_id BIGINT NOT NULL REFERENCES p(id));"
                  "INSERT INTO p (id, email, n) VALUES (1, 'a@x', 0)");

    st = prepare_ok(conn, "INSERT INTO p (id, email, n) VALUES ($3, $1, $2)");
    assert_int_equal(db_bind_text(st, 1, "a@x", 3), DB_OK);
    assert_int_equal(db_bind_int64(st, 2, 1), DB_OK);
    assert_int_equal(db_bind_int64(st, 3, 10), DB_OK);
    assert_int_equal(db_step(st), DB_CONSTRAINT);
    assert_non_null(strstr(db_errmsg(conn), "unique"));
    assert_non_null(strstr(db_errmsg(conn), "23505"));
    /* The row's values (DETAIL) stay out of the message. */
    assert_null(strstr(db_errmsg(conn), "a@x"));
    db_stmt_reset(st);

    st = prepare_ok(conn, "INSERT INTO p (id, email, n) VALUES ($3, $1, $2)");
    assert_int_equal(db_bind_text(st, 1, "b@x", 3), DB_OK);
    assert_int_equal(db_bind_int64(st, 2, -1), DB_OK);
    assert_int_equal(db_bind_int64(st, 3, 11), DB_OK);
    assert_int_equal(db_step(st), DB_CONSTRAINT); /* check */
    db_stmt_reset(st);

    st = prepare_ok(conn, "INSERT INTO p (id, email, n) VALUES ($3, $1, $2)");
    assert_int_equal(db_bind_null(st, 1), DB_OK);
    assert_int_equal(db_bind_int64(st, 3, 12), DB_OK);
    assert_int_equal(db_step(st), DB_CONSTRAINT); /* not null */
    db_stmt_reset(st);

    st = prepare_ok(conn, "INSERT INTO c (p_id) VALUES ($1)");
    assert_int_equal(db_bind_int64(st, 1, 999), DB_OK);
    assert_int_equal(db_step(st), DB_CONSTRAINT);
    assert_non_null(strstr(db_errmsg(conn), "foreign key"));
    db_stmt_reset(st);

    assert_int_equal(
        db_exec(conn, "INSERT INTO p (id, email) VALUES (1, 'z')"),
        DB_CONSTRAINT);

    /* A type error is a plain error. */
    st = prepare_ok(conn, "INSERT INTO c (p_id) VALUES ($1)");
    assert_int_equal(db_bind_text(st, 1, "one", 3), DB_OK);
    assert_int_equal(db_step(st), DB_ERROR);
    db_stmt_reset(st);

    /* The statement is usable again after the error and reset. */
    st = prepare_ok(conn, "INSERT INTO p (id, email, n) VALUES ($3, $1, $2)");
    assert_int_equal(db_bind_text(st, 1, "c@x", 3), DB_OK);
    assert_int_equal(db_bind_int64(st, 3, 13), DB_OK);
    assert_int_equal(db_step(st), DB_DONE);
    db_stmt_reset(st);
    assert_int_equal(query_int(conn, "SELECT count(*) FROM p"), 2);
    db_close(conn);
}

/* ---- transactions ------------------------------------------------------- */

static void test_transactions(void **state)
{
    db *conn = open_ok(state, NULL);
    db_stmt *st;

    exec_ok(conn, "CREATE TABLE t (x BIGINT PRIMARY KEY)");

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

    /* After a failed statement PostgreSQL has aborted the transaction:
     * commit says so instead of pretending, and nothing is kept. */
    assert_int_equal(db_begin(conn), DB_OK);
    exec_ok(conn, "INSERT INTO t VALUES (3)");
    st = prepare_ok(conn, "INSERT INTO t VALUES ($1)");
    assert_int_equal(db_bind_int64(st, 1, 1), DB_OK);
    assert_int_equal(db_step(st), DB_CONSTRAINT);
    db_stmt_reset(st);
    assert_int_equal(db_commit(conn), DB_ERROR);
    assert_non_null(strstr(db_errmsg(conn), "rolled back"));
    assert_int_equal(db_rollback(conn), DB_OK);
    assert_int_equal(query_int(conn, "SELECT count(*) FROM t"), 1);

    /* Committed data is seen by another connection. */
    {
        db *other = open_ok(state, NULL);
        assert_int_equal(query_int(other, "SELECT max(x) FROM t"), 1);
        db_close(other);
    }
    db_close(conn);
}

static void test_busy(void **state)
{
    db *a = open_ok(state, "busy_timeout=50");
    db *b = open_ok(state, "busy_timeout=50");
    db_stmt *st;
    int64_t start;
    int64_t waited_ms;

    exec_ok(a, "CREATE TABLE t (id BIGINT PRIMARY KEY, n BIGINT);"
               "INSERT INTO t VALUES (1, 0)");
    assert_int_equal(db_begin(a), DB_OK);
    exec_ok(a, "UPDATE t SET n = n + 1 WHERE id = 1");

    /* b waits for a's row lock, then gives up with DB_BUSY. */
    assert_int_equal(db_begin(b), DB_OK);
    st = prepare_ok(b, "UPDATE t SET n = n + $1 WHERE id = 1");
    assert_int_equal(db_bind_int64(st, 1, 10), DB_OK);
    start = util_monotonic_ns();
    assert_int_equal(db_step(st), DB_BUSY);
    waited_ms = (util_monotonic_ns() - start) / 1000000;
    db_stmt_reset(st);
    assert_true(waited_ms >= 40);
    assert_true(waited_ms < 2000);
    assert_non_null(strstr(db_errmsg(b), "55P03"));
    assert_int_equal(db_rollback(b), DB_OK);

    /* Reads do not wait (MVCC). */
    assert_int_equal(query_int(b, "SELECT n FROM t WHERE id = 1"), 0);

    assert_int_equal(db_commit(a), DB_OK);
    assert_int_equal(db_begin(b), DB_OK);
    st = prepare_ok(b, "UPDATE t SET n = n + $1 WHERE id = 1");
    assert_int_equal(db_bind_int64(st, 1, 10), DB_OK);
    assert_int_equal(run(st), DB_OK);
    assert_int_equal(db_commit(b), DB_OK);
    assert_int_equal(query_int(a, "SELECT n FROM t WHERE id = 1"), 11);
    db_close(a);
    db_close(b);
}

/* ---- the services' SQL -------------------------------------------------- */

/* Copied from src/user/schema.c, src/order/schema.c and
 * src/invoice/schema.c (their postgres_sql); the inbox and outbox come
 * from the library itself. */
static const char users_postgres[] =
    "CREATE TABLE users ("
    "  id BIGSERIAL PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  email TEXT NOT NULL,"
    "  created_at BIGINT NOT NULL);"
    "CREATE UNIQUE INDEX users_email_ci ON users (lower(email));";

static const char accounts_postgres[] =
    "CREATE TABLE accounts ("
    "  id BIGSERIAL PRIMARY KEY,"
    "  user_id BIGINT NOT NULL REFERENCES users (id),"
    "  address1 TEXT NOT NULL,"
    "  address2 TEXT,"
    "  city TEXT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  zip TEXT NOT NULL,"
    "  status TEXT NOT NULL CHECK (status IN ('open', 'closed')),"
    "  created_at BIGINT NOT NULL);"
    "CREATE INDEX accounts_user ON accounts (user_id);";

static const char orders_postgres[] =
    "CREATE TABLE orders ("
    "  id BIGSERIAL PRIMARY KEY,"
    "  user_id BIGINT NOT NULL,"
    "  amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),"
    "  description TEXT,"
    "  created_at BIGINT NOT NULL);"
    "CREATE INDEX orders_user ON orders (user_id);";

static const char projection_postgres[] =
    "CREATE TABLE customers ("
    "  user_id BIGINT PRIMARY KEY,"
    "  name TEXT,"
    "  email TEXT,"
    "  account_id BIGINT,"
    "  address1 TEXT, address2 TEXT, city TEXT, state TEXT, zip TEXT);"
    "CREATE TABLE invoices ("
    "  id BIGSERIAL PRIMARY KEY,"
    "  user_id BIGINT NOT NULL,"
    "  year INTEGER NOT NULL,"
    "  month INTEGER NOT NULL,"
    "  total_cents BIGINT NOT NULL DEFAULT 0,"
    "  order_count INTEGER NOT NULL DEFAULT 0,"
    "  updated_at BIGINT NOT NULL,"
    "  UNIQUE (user_id, year, month));"
    "CREATE TABLE invoice_lines ("
    "  order_id BIGINT PRIMARY KEY,"
    "  invoice_id BIGINT NOT NULL REFERENCES invoices (id),"
    "  description TEXT,"
    "  amount_cents BIGINT NOT NULL,"
    "  purchased_at BIGINT NOT NULL);"
    "CREATE INDEX invoice_lines_invoice ON invoice_lines (invoice_id, "
    "purchased_at, order_id);";

/* The services' statements, as they send them (lists with the ORDER BY
 * that listq_order_sql makes). */
#define USER_COLUMNS "id, name, email, created_at"
#define ACCOUNT_COLUMNS                                                       \
    "id, user_id, address1, address2, city, state, zip, status, created_at"
#define ORDER_COLUMNS "id, user_id, amount_cents, description, created_at"
#define INVOICE_SELECT                                                        \
    "SELECT i.id, i.user_id, i.year, i.month, c.name, c.email, "             \
    "c.account_id,"                                                           \
    " c.address1, c.address2, c.city, c.state, c.zip, i.order_count, "       \
    "i.total_cents,"                                                          \
    " i.updated_at FROM invoices i LEFT JOIN customers c ON c.user_id = "    \
    "i.user_id"

static const char sql_user_insert[] =
    "INSERT INTO users (name, email, created_at) "
    "VALUES ($1, $2, $3) RETURNING " USER_COLUMNS;
static const char sql_user_list[] =
    "SELECT " USER_COLUMNS " FROM users"
    " WHERE ($1 IS NULL OR lower(email) = lower($1))"
    " AND ($2 IS NULL OR lower(name) LIKE $2 ESCAPE '\\')"
    " ORDER BY name DESC, id ASC LIMIT $3 OFFSET $4";
static const char sql_user_get[] =
    "SELECT " USER_COLUMNS " FROM users WHERE id = $1";
static const char sql_user_exists[] = "SELECT 1 FROM users WHERE id = $1";
static const char sql_account_insert[] =
    "INSERT INTO accounts (user_id, address1, address2, city,"
    " state, zip, status, created_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    " RETURNING " ACCOUNT_COLUMNS;
static const char sql_account_list[] =
    "SELECT " ACCOUNT_COLUMNS " FROM accounts"
    " WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR status = $2)"
    " ORDER BY id, id ASC LIMIT $3 OFFSET $4";
static const char sql_account_get[] =
    "SELECT " ACCOUNT_COLUMNS " FROM accounts WHERE id = $1";
static const char sql_order_insert[] =
    "INSERT INTO orders (user_id, amount_cents, description,"
    " created_at) VALUES ($1, $2, $3, $4)"
    " RETURNING " ORDER_COLUMNS;
static const char sql_order_list[] =
    "SELECT " ORDER_COLUMNS " FROM orders WHERE ($1 IS NULL OR user_id = $1)"
    " ORDER BY amount_cents DESC, id ASC LIMIT $2 OFFSET $3";
static const char sql_order_get[] =
    "SELECT " ORDER_COLUMNS " FROM orders WHERE id = $1";
static const char sql_customer_user[] =
    "INSERT INTO customers (user_id, name, email)"
    " VALUES ($1, $2, $3) ON CONFLICT (user_id)"
    " DO UPDATE SET name = excluded.name, email = excluded.email";
static const char sql_customer_account[] =
    "INSERT INTO customers (user_id, account_id, address1, address2, city, "
    "state, zip)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (user_id) DO UPDATE SET"
    " account_id = excluded.account_id, address1 = excluded.address1,"
    " address2 = excluded.address2, city = excluded.city, state = "
    "excluded.state,"
    " zip = excluded.zip"
    " WHERE customers.account_id IS NULL OR customers.account_id < "
    "excluded.account_id";
static const char sql_order_known[] =
    "SELECT 1 FROM invoice_lines WHERE order_id = $1";
static const char sql_invoice_ensure[] =
    "INSERT INTO invoices (user_id, year, month, updated_at)"
    " VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (user_id, year, month) DO NOTHING";
static const char sql_invoice_add[] =
    "UPDATE invoices SET total_cents = total_cents + $1,"
    " order_count = order_count + 1, updated_at = $2"
    " WHERE user_id = $3 AND year = $4 AND month = $5 RETURNING id";
static const char sql_line_insert[] =
    "INSERT INTO invoice_lines (order_id, invoice_id, description,"
    " amount_cents, purchased_at) VALUES ($1, $2, $3, $4, $5)";
static const char sql_invoice_list[] =
    INVOICE_SELECT " WHERE ($1 IS NULL OR i.user_id = $1)"
                   " AND ($2 IS NULL OR i.month = $2) AND ($3 IS NULL OR "
                   "i.year = $3)"
                   " ORDER BY i.total_cents DESC, i.id ASC LIMIT $4 OFFSET $5";
static const char sql_invoice_get[] = INVOICE_SELECT " WHERE i.id = $1";
static const char sql_invoice_lines[] =
    "SELECT order_id, description, amount_cents, purchased_at"
    " FROM invoice_lines WHERE invoice_id = $1"
    " ORDER BY purchased_at, order_id";

static int64_t insert_user(db *conn, const char *name, const char *email,
                           int expect)
{
    db_stmt *st = prepare_ok(conn, sql_user_insert);
    int64_t id = 0;
    int rc;

    bind_text(st, 1, name);
    bind_text(st, 2, email);
    assert_int_equal(db_bind_int64(st, 3, 1700000000000), DB_OK);
    rc = db_step(st);
    if (rc == DB_ROW) {
        id = db_col_int64(st, 0);
        assert_string_equal(db_col_text(st, 1), name);
        assert_string_equal(db_col_text(st, 2), email);
        assert_true(db_col_int64(st, 3) == 1700000000000);
    }
    db_stmt_reset(st);
    assert_int_equal(rc, expect);
    return id;
}

/* Rows of a list statement whose filters are bound by the caller. */
static int count_rows(db_stmt *st, int64_t *first_id)
{
    int rows = 0, rc;

    while ((rc = db_step(st)) == DB_ROW) {
        if (rows == 0 && first_id)
            *first_id = db_col_int64(st, 0);
        rows++;
    }
    assert_int_equal(rc, DB_DONE);
    db_stmt_reset(st);
    return rows;
}

static void check_user_service(db *conn)
{
    int64_t ann, bob, first = 0;
    db_stmt *st;

    exec_ok(conn, users_postgres);
    exec_ok(conn, accounts_postgres);
    exec_ok(conn, outbox_schema_postgres);

    assert_int_equal(db_begin(conn), DB_OK);
    ann = insert_user(conn, "Ann 50%_off", "Ann@Example.com", DB_ROW);
    bob = insert_user(conn, "Bob", "bob@example.com", DB_ROW);
    assert_int_equal(db_commit(conn), DB_OK);
    assert_true(ann > 0 && bob > ann);
    /* Emails are unique regardless of case. */
    assert_int_equal(db_begin(conn), DB_OK);
    insert_user(conn, "Ann again", "ann@EXAMPLE.com", DB_CONSTRAINT);
    assert_int_equal(db_rollback(conn), DB_OK);

    /* No filter, then each filter (a NULL-typed $n in both shapes). */
    st = prepare_ok(conn, sql_user_list);
    assert_int_equal(db_bind_int64(st, 3, 100), DB_OK);
    assert_int_equal(db_bind_int64(st, 4, 0), DB_OK);
    assert_int_equal(count_rows(st, &first), 2);
    assert_true(first == bob); /* name DESC */
    st = prepare_ok(conn, sql_user_list);
    bind_text(st, 1, "ANN@example.COM");
    assert_int_equal(db_bind_int64(st, 3, 100), DB_OK);
    assert_int_equal(db_bind_int64(st, 4, 0), DB_OK);
    assert_int_equal(count_rows(st, &first), 1);
    assert_true(first == ann);
    /* users.c's substring pattern for "50%_": "%50\%\_%". */
    st = prepare_ok(conn, sql_user_list);
    bind_text(st, 2, "%50\\%\\_%");
    assert_int_equal(db_bind_int64(st, 3, 100), DB_OK);
    assert_int_equal(db_bind_int64(st, 4, 0), DB_OK);
    assert_int_equal(count_rows(st, &first), 1);
    assert_true(first == ann);
    /* The escapes are literal: "5_%" matches no name with "5" then any. */
    st = prepare_ok(conn, sql_user_list);
    bind_text(st, 2, "%n\\_%");
    assert_int_equal(db_bind_int64(st, 3, 100), DB_OK);
    assert_int_equal(db_bind_int64(st, 4, 0), DB_OK);
    assert_int_equal(count_rows(st, NULL), 0);
    st = prepare_ok(conn, sql_user_list);
    assert_int_equal(db_bind_int64(st, 3, 1), DB_OK);
    assert_int_equal(db_bind_int64(st, 4, 1), DB_OK);
    assert_int_equal(count_rows(st, &first), 1);
    assert_true(first == ann);

    st = prepare_ok(conn, sql_user_get);
    assert_int_equal(db_bind_int64(st, 1, bob), DB_OK);
    assert_int_equal(count_rows(st, &first), 1);
    st = prepare_ok(conn, sql_user_exists);
    assert_int_equal(db_bind_int64(st, 1, 999999), DB_OK);
    assert_int_equal(count_rows(st, NULL), 0);

    /* Accounts: address2 NULL, then the list's two filters. */
    assert_int_equal(db_begin(conn), DB_OK);
    for (int i = 0; i < 3; i++) {
        st = prepare_ok(conn, sql_account_insert);
        assert_int_equal(db_bind_int64(st, 1, i == 2 ? bob : ann), DB_OK);
        bind_text(st, 2, "1 Main St");
        bind_text(st, 3, i == 0 ? NULL : "Apt 2");
        bind_text(st, 4, "Springfield");
        bind_text(st, 5, "IL");
        bind_text(st, 6, "62701");
        bind_text(st, 7, i == 1 ? "closed" : "open");
        assert_int_equal(db_bind_int64(st, 8, 1700000000001), DB_OK);
        assert_int_equal(db_step(st), DB_ROW);
        assert_true(db_col_int64(st, 1) == (i == 2 ? bob : ann));
        assert_int_equal(db_col_is_null(st, 3), i == 0);
        assert_string_equal(db_col_text(st, 7), i == 1 ? "closed" : "open");
        db_stmt_reset(st);
    }
    assert_int_equal(db_commit(conn), DB_OK);
    /* A status outside the check, and an unknown user. */
    st = prepare_ok(conn, sql_account_insert);
    assert_int_equal(db_bind_int64(st, 1, ann), DB_OK);
    bind_text(st, 2, "x");
    bind_text(st, 4, "x");
    bind_text(st, 5, "x");
    bind_text(st, 6, "x");
    bind_text(st, 7, "lost");
    assert_int_equal(db_bind_int64(st, 8, 1), DB_OK);
    assert_int_equal(db_step(st), DB_CONSTRAINT);
    db_stmt_reset(st);
    st = prepare_ok(conn, sql_account_insert);
    assert_int_equal(db_bind_int64(st, 1, 999999), DB_OK);
    bind_text(st, 2, "x");
    bind_text(st, 4, "x");
    bind_text(st, 5, "x");
    bind_text(st, 6, "x");
    bind_text(st, 7, "open");
    assert_int_equal(db_bind_int64(st, 8, 1), DB_OK);
    assert_int_equal(db_step(st), DB_CONSTRAINT);
    db_stmt_reset(st);

    st = prepare_ok(conn, sql_account_list);
    assert_int_equal(db_bind_int64(st, 3, 100), DB_OK);
    assert_int_equal(db_bind_int64(st, 4, 0), DB_OK);
    assert_int_equal(count_rows(st, NULL), 3);
    st = prepare_ok(conn, sql_account_list);
    assert_int_equal(db_bind_int64(st, 1, ann), DB_OK);
    assert_int_equal(db_bind_int64(st, 3, 100), DB_OK);
    assert_int_equal(db_bind_int64(st, 4, 0), DB_OK);
    assert_int_equal(count_rows(st, NULL), 2);
    st = prepare_ok(conn, sql_account_list);
    bind_text(st, 2, "open");
    assert_int_equal(db_bind_int64(st, 3, 100), DB_OK);
    assert_int_equal(db_bind_int64(st, 4, 0), DB_OK);
    assert_int_equal(count_rows(st, NULL), 2);
    st = prepare_ok(conn, sql_account_list);
    assert_int_equal(db_bind_int64(st, 1, ann), DB_OK);
    bind_text(st, 2, "closed");
    assert_int_equal(db_bind_int64(st, 3, 100), DB_OK);
    assert_int_equal(db_bind_int64(st, 4, 0), DB_OK);
    assert_int_equal(count_rows(st, NULL), 1);
    st = prepare_ok(conn, sql_account_get);
    assert_int_equal(db_bind_int64(st, 1, 1), DB_OK);
    assert_int_equal(count_rows(st, NULL), 1);
}

static void check_outbox(db *conn)
{
    static const char sql_select_batch[] =
        "SELECT seq, event_id, type, body, correlation_id, occurred_at"
        " FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1";
    static const char sql_mark_range[] =
        "UPDATE outbox SET published_at = $1"
        " WHERE seq BETWEEN $2 AND $3 AND published_at IS NULL";
    static const char sql_mark_one[] = "UPDATE outbox SET published_at = $1"
                                       " WHERE seq = $2 AND published_at IS "
                                       "NULL";
    static const char sql_count_pending[] =
        "SELECT count(*) FROM outbox WHERE published_at IS NULL";
    struct outbox_event ev = {
        .type = "order.created",
        .data_json = "{\"id\":1}",
        .occurred_at_ms = 1700000000000,
    };
    int64_t first = 0, last = 0;
    db_stmt *st;
    int n = 0;

    /* outbox_append is the library's own insert. */
    assert_int_equal(db_begin(conn), DB_OK);
    for (int i = 0; i < 4; i++) {
        ev.correlation_id = i % 2 ? "req-1" : NULL;
        assert_int_equal(outbox_append(conn, "test", &ev), DB_OK);
    }
    assert_int_equal(db_commit(conn), DB_OK);
    assert_int_equal(query_int(conn, sql_count_pending), 4);

    st = prepare_ok(conn, sql_select_batch);
    assert_int_equal(db_bind_int64(st, 1, 3), DB_OK);
    while (db_step(st) == DB_ROW) {
        if (n == 0)
            first = db_col_int64(st, 0);
        last = db_col_int64(st, 0);
        assert_int_equal(strlen(db_col_text(st, 1)), 36);
        assert_string_equal(db_col_text(st, 2), "order.created");
        assert_non_null(strstr(db_col_text(st, 3), "\"data\":{\"id\":1}"));
        assert_int_equal(db_col_is_null(st, 4), n % 2 == 0);
        assert_true(db_col_int64(st, 5) == 1700000000000);
        n++;
    }
    db_stmt_reset(st);
    assert_int_equal(n, 3);

    st = prepare_ok(conn, sql_mark_range);
    assert_int_equal(db_bind_int64(st, 1, 1700000000999), DB_OK);
    assert_int_equal(db_bind_int64(st, 2, first), DB_OK);
    assert_int_equal(db_bind_int64(st, 3, last), DB_OK);
    assert_int_equal(run(st), DB_OK);
    assert_int_equal(query_int(conn, sql_count_pending), 1);
    assert_int_equal(db_begin(conn), DB_OK);
    st = prepare_ok(conn, sql_mark_one);
    assert_int_equal(db_bind_int64(st, 1, 1700000000999), DB_OK);
    assert_int_equal(db_bind_int64(st, 2, last + 1), DB_OK);
    assert_int_equal(run(st), DB_OK);
    assert_int_equal(db_commit(conn), DB_OK);
    assert_int_equal(query_int(conn, sql_count_pending), 0);
}

static void check_order_service(db *conn)
{
    int64_t ids[3], first = 0;
    db_stmt *st;

    exec_ok(conn, orders_postgres);
    assert_int_equal(db_begin(conn), DB_OK);
    for (int i = 0; i < 3; i++) {
        st = prepare_ok(conn, sql_order_insert);
        assert_int_equal(db_bind_int64(st, 1, i < 2 ? 7 : 8), DB_OK);
        assert_int_equal(db_bind_int64(st, 2, 100 * (i + 1)), DB_OK);
        bind_text(st, 3, i == 1 ? NULL : "socks");
        assert_int_equal(db_bind_int64(st, 4, 1700000000000 + i), DB_OK);
        assert_int_equal(db_step(st), DB_ROW);
        ids[i] = db_col_int64(st, 0);
        assert_int_equal(db_col_int64(st, 2), 100 * (i + 1));
        assert_int_equal(db_col_is_null(st, 3), i == 1);
        db_stmt_reset(st);
    }
    assert_int_equal(db_commit(conn), DB_OK);
    st = prepare_ok(conn, sql_order_insert);
    assert_int_equal(db_bind_int64(st, 1, 7), DB_OK);
    assert_int_equal(db_bind_int64(st, 2, 0), DB_OK);
    assert_int_equal(db_bind_int64(st, 4, 1), DB_OK);
    assert_int_equal(db_step(st), DB_CONSTRAINT); /* amount > 0 */
    db_stmt_reset(st);

    st = prepare_ok(conn, sql_order_list);
    assert_int_equal(db_bind_int64(st, 2, 100), DB_OK);
    assert_int_equal(db_bind_int64(st, 3, 0), DB_OK);
    assert_int_equal(count_rows(st, &first), 3);
    assert_true(first == ids[2]);
    st = prepare_ok(conn, sql_order_list);
    assert_int_equal(db_bind_int64(st, 1, 7), DB_OK);
    assert_int_equal(db_bind_int64(st, 2, 100), DB_OK);
    assert_int_equal(db_bind_int64(st, 3, 1), DB_OK);
    assert_int_equal(count_rows(st, &first), 1);
    assert_true(first == ids[0]);
    st = prepare_ok(conn, sql_order_get);
    assert_int_equal(db_bind_int64(st, 1, ids[1]), DB_OK);
    assert_int_equal(count_rows(st, NULL), 1);
}

/* projection.c's apply_order, in one transaction; returns the invoice. */
static int64_t apply_order(db *conn, int64_t order_id, int64_t user_id,
                           int year, int month, int64_t cents)
{
    int64_t invoice_id = 0;
    db_stmt *st;

    st = prepare_ok(conn, sql_order_known);
    assert_int_equal(db_bind_int64(st, 1, order_id), DB_OK);
    if (count_rows(st, NULL) == 1)
        return 0;
    st = prepare_ok(conn, sql_invoice_ensure);
    assert_int_equal(db_bind_int64(st, 1, user_id), DB_OK);
    assert_int_equal(db_bind_int64(st, 2, year), DB_OK);
    assert_int_equal(db_bind_int64(st, 3, month), DB_OK);
    assert_int_equal(db_bind_int64(st, 4, 1700000000000), DB_OK);
    assert_int_equal(run(st), DB_OK);
    st = prepare_ok(conn, sql_invoice_add);
    assert_int_equal(db_bind_int64(st, 1, cents), DB_OK);
    assert_int_equal(db_bind_int64(st, 2, 1700000000001), DB_OK);
    assert_int_equal(db_bind_int64(st, 3, user_id), DB_OK);
    assert_int_equal(db_bind_int64(st, 4, year), DB_OK);
    assert_int_equal(db_bind_int64(st, 5, month), DB_OK);
    assert_int_equal(db_step(st), DB_ROW);
    invoice_id = db_col_int64(st, 0);
    assert_int_equal(db_step(st), DB_DONE);
    db_stmt_reset(st);
    st = prepare_ok(conn, sql_line_insert);
    assert_int_equal(db_bind_int64(st, 1, order_id), DB_OK);
    assert_int_equal(db_bind_int64(st, 2, invoice_id), DB_OK);
    bind_text(st, 3, "socks");
    assert_int_equal(db_bind_int64(st, 4, cents), DB_OK);
    assert_int_equal(db_bind_int64(st, 5, 1700000000000 + order_id), DB_OK);
    assert_int_equal(run(st), DB_OK);
    return invoice_id;
}

static void upsert_account(db *conn, int64_t user_id, int64_t account_id,
                           const char *city)
{
    db_stmt *st = prepare_ok(conn, sql_customer_account);

    assert_int_equal(db_bind_int64(st, 1, user_id), DB_OK);
    assert_int_equal(db_bind_int64(st, 2, account_id), DB_OK);
    bind_text(st, 3, "1 Main St");
    bind_text(st, 4, NULL);
    bind_text(st, 5, city);
    bind_text(st, 6, "IL");
    bind_text(st, 7, "62701");
    assert_int_equal(run(st), DB_OK);
}

static void check_invoice_service(db *conn)
{
    int64_t inv1, inv2;
    db_stmt *st;
    int n = 0;

    exec_ok(conn, projection_postgres);
    exec_ok(conn, inbox_schema_postgres);

    /* The inbox: new once, then a duplicate. */
    assert_int_equal(db_begin(conn), DB_OK);
    assert_int_equal(inbox_record(conn, "ev-1", "order.created"), 1);
    assert_int_equal(inbox_record(conn, "ev-1", "order.created"), 0);
    assert_int_equal(db_commit(conn), DB_OK);

    /* An order before its user: the invoice exists with a NULL name. */
    assert_int_equal(db_begin(conn), DB_OK);
    inv1 = apply_order(conn, 1, 7, 2024, 1, 1000);
    assert_true(inv1 > 0);
    assert_int_equal(apply_order(conn, 2, 7, 2024, 1, 250), inv1);
    assert_int_equal(apply_order(conn, 2, 7, 2024, 1, 250), 0); /* again */
    inv2 = apply_order(conn, 3, 7, 2024, 2, 5);
    assert_true(inv2 != inv1);
    assert_int_equal(db_commit(conn), DB_OK);

    /* The user's events, and accounts arriving out of order: the newest
     * account by id wins. */
    st = prepare_ok(conn, sql_customer_user);
    assert_int_equal(db_bind_int64(st, 1, 7), DB_OK);
    bind_text(st, 2, "Ann");
    bind_text(st, 3, "ann@example.com");
    assert_int_equal(run(st), DB_OK);
    upsert_account(conn, 7, 20, "Newer");
    upsert_account(conn, 7, 10, "Older");
    st = prepare_ok(conn, sql_customer_user);
    assert_int_equal(db_bind_int64(st, 1, 7), DB_OK);
    bind_text(st, 2, "Ann B");
    bind_text(st, 3, "ann@example.com");
    assert_int_equal(run(st), DB_OK);
    upsert_account(conn, 8, 30, "Elsewhere"); /* no invoice yet */

    st = prepare_ok(conn, sql_invoice_get);
    assert_int_equal(db_bind_int64(st, 1, inv1), DB_OK);
    assert_int_equal(db_step(st), DB_ROW);
    assert_int_equal(db_col_int64(st, 2), 2024);
    assert_int_equal(db_col_int64(st, 3), 1);
    assert_string_equal(db_col_text(st, 4), "Ann B");
    assert_int_equal(db_col_int64(st, 6), 20);
    assert_true(db_col_is_null(st, 8));
    assert_string_equal(db_col_text(st, 9), "Newer");
    assert_int_equal(db_col_int64(st, 12), 2);
    assert_int_equal(db_col_int64(st, 13), 1250);
    db_stmt_reset(st);

    st = prepare_ok(conn, sql_invoice_lines);
    assert_int_equal(db_bind_int64(st, 1, inv1), DB_OK);
    while (db_step(st) == DB_ROW) {
        assert_int_equal(db_col_int64(st, 0), n + 1);
        n++;
    }
    db_stmt_reset(st);
    assert_int_equal(n, 2);

    /* The list: no filter, each filter, all three, paging. */
    st = prepare_ok(conn, sql_invoice_list);
    assert_int_equal(db_bind_int64(st, 4, 100), DB_OK);
    assert_int_equal(db_bind_int64(st, 5, 0), DB_OK);
    assert_int_equal(count_rows(st, NULL), 2);
    st = prepare_ok(conn, sql_invoice_list);
    assert_int_equal(db_bind_int64(st, 2, 2), DB_OK);
    assert_int_equal(db_bind_int64(st, 4, 100), DB_OK);
    assert_int_equal(db_bind_int64(st, 5, 0), DB_OK);
    assert_int_equal(count_rows(st, NULL), 1);
    st = prepare_ok(conn, sql_invoice_list);
    assert_int_equal(db_bind_int64(st, 1, 7), DB_OK);
    assert_int_equal(db_bind_int64(st, 2, 1), DB_OK);
    assert_int_equal(db_bind_int64(st, 3, 2024), DB_OK);
    assert_int_equal(db_bind_int64(st, 4, 100), DB_OK);
    assert_int_equal(db_bind_int64(st, 5, 0), DB_OK);
    assert_int_equal(count_rows(st, NULL), 1);
    st = prepare_ok(conn, sql_invoice_list);
    assert_int_equal(db_bind_int64(st, 3, 2023), DB_OK);
    assert_int_equal(db_bind_int64(st, 4, 100), DB_OK);
    assert_int_equal(db_bind_int64(st, 5, 0), DB_OK);
    assert_int_equal(count_rows(st, NULL), 0);
    st = prepare_ok(conn, sql_invoice_list);
    assert_int_equal(db_bind_int64(st, 4, 1), DB_OK);
    assert_int_equal(db_bind_int64(st, 5, 1), DB_OK);
    {
        int64_t first = 0;
        assert_int_equal(count_rows(st, &first), 1);
        assert_true(first == inv2); /* total DESC: 1250 then 5 */
    }
}

static void test_service_sql(void **state)
{
    db *conn = open_ok(state, NULL);

    check_user_service(conn);
    check_outbox(conn);
    check_order_service(conn);
    check_invoice_service(conn);
    db_close(conn);
}

/* ---- migrations --------------------------------------------------------- */

static const struct db_migration migrations[] = {
    /* Listed out of order on purpose: 2 needs 1's table. */
    {2, "seed", "INSERT INTO t (x) VALUES (1); INSERT INTO t (x) VALUES (2)",
     "INSERT INTO t (x) VALUES (1), (2)"},
    {1, "create t", "CREATE TABLE t (x INTEGER NOT NULL)",
     "CREATE TABLE t (x BIGINT NOT NULL)"},
};

/* Connections here do not pre-create the schema: db_migrate does. */
static db *open_bare(void **state)
{
    struct fixture *f = *state;

    return open_url(f->url);
}

static void test_migrate(void **state)
{
    struct fixture *f = *state;
    db *conn = open_bare(state);
    char err[ERR_MAX] = "";
    char sql[256];
    int64_t before = util_now_ms();
    db_stmt *st;
    int rows = 0;

    if (db_migrate(conn, migrations, ARRAY_LEN(migrations), err,
                   sizeof(err)) != DB_OK)
        fail_msg("db_migrate: %s", err);
    assert_int_equal(db_migrate(conn, migrations, ARRAY_LEN(migrations), err,
                                sizeof(err)),
                     DB_OK);
    assert_int_equal(query_int(conn, "SELECT count(*) FROM t"), 2);

    /* Both tables are in the connection's schema. */
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM pg_tables WHERE schemaname = '%s' AND "
             "tablename IN ('t', 'schema_migrations')",
             f->schema);
    assert_int_equal(query_int(conn, sql), 2);

    st = prepare_ok(conn, "SELECT version, name, applied_at "
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
    conn = open_bare(state);
    assert_int_equal(db_migrate(conn, migrations, ARRAY_LEN(migrations), err,
                                sizeof(err)),
                     DB_OK);
    assert_int_equal(query_int(conn, "SELECT count(*) FROM t"), 2);
    /* No transaction is left open. */
    assert_int_equal(db_begin(conn), DB_OK);
    assert_int_equal(db_rollback(conn), DB_OK);
    db_close(conn);
}

static void test_migrate_empty_in_new_schema(void **state)
{
    struct fixture *f = *state;
    char err[ERR_MAX] = "";
    char sql[256];
    db *conn = open_bare(state);

    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM pg_namespace WHERE nspname = '%s'",
             f->schema);
    assert_int_equal(query_int(conn, sql), 0);
    assert_int_equal(db_migrate(conn, NULL, 0, err, sizeof(err)), DB_OK);
    assert_int_equal(query_int(conn, sql), 1);
    assert_int_equal(query_int(conn, "SELECT count(*) FROM schema_migrations"),
                     0);
    db_close(conn);
}

static void test_migrate_failure(void **state)
{
    static const struct db_migration broken[] = {
        {1, "create t", NULL, "CREATE TABLE t (x BIGINT)"},
        {2, "half", NULL,
         "INSERT INTO t VALUES (1); INSERT INTO nowhere VALUES (1)"},
        {3, "never", NULL, "INSERT INTO t VALUES (3)"},
    };
    static const struct db_migration dup[] = {
        {1, "a", NULL, "SELECT 1"},
        {1, "b", NULL, "SELECT 1"},
    };
    static const struct db_migration no_sql[] = {
        {1, "sqlite only", "SELECT 1", NULL},
    };
    db *conn = open_bare(state);
    char err[ERR_MAX] = "";

    assert_int_equal(
        db_migrate(conn, broken, ARRAY_LEN(broken), err, sizeof(err)),
        DB_ERROR);
    assert_non_null(strstr(err, "migration 2 (half)"));
    assert_non_null(strstr(err, "nowhere"));
    assert_int_equal(query_int(conn, "SELECT count(*) FROM t"), 0);
    assert_int_equal(
        query_int(conn, "SELECT count(*) FROM schema_migrations"), 1);
    assert_int_equal(
        query_int(conn, "SELECT max(version) FROM schema_migrations"), 1);
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
    assert_non_null(strstr(err, "postgres"));
    db_close(conn);
}

struct migrate_job {
    char url[URL_MAX];
    pthread_barrier_t *start;
    int rc;
    char err[ERR_MAX];
};

static void *migrate_thread(void *arg)
{
    struct migrate_job *job = arg;
    db *conn = NULL;

    job->rc = db_open(job->url, &conn, job->err, sizeof(job->err));
    pthread_barrier_wait(job->start);
    if (job->rc == DB_OK)
        job->rc = db_migrate(conn, migrations, ARRAY_LEN(migrations),
                             job->err, sizeof(job->err));
    db_close(conn);
    return NULL;
}

/* Processes starting at once on one database, each with its own
 * connection as here: the schema, schema_migrations and every migration
 * are made exactly once (CREATE ... IF NOT EXISTS alone races on
 * PostgreSQL). Every round uses a new schema. */
static void test_migrate_concurrent(void **state)
{
    enum { JOBS = 4, MIGRATE_ROUNDS = 6 };
    struct fixture *f = *state;
    struct migrate_job jobs[JOBS];
    pthread_t threads[JOBS];
    pthread_barrier_t start;
    db *conn;

    for (int round = 0; round < MIGRATE_ROUNDS; round++) {
        char schema[SCHEMA_MAX + 16];
        char url[URL_MAX];
        char sql[128];

        snprintf(schema, sizeof(schema), "%.50s_%d", f->schema, round);
        make_url(url, schema, NULL);
        pthread_barrier_init(&start, NULL, JOBS);
        for (int i = 0; i < JOBS; i++) {
            memset(&jobs[i], 0, sizeof(jobs[i]));
            util_strlcpy(jobs[i].url, url, sizeof(jobs[i].url));
            jobs[i].start = &start;
            assert_int_equal(
                pthread_create(&threads[i], NULL, migrate_thread, &jobs[i]),
                0);
        }
        for (int i = 0; i < JOBS; i++)
            pthread_join(threads[i], NULL);
        pthread_barrier_destroy(&start);
        conn = open_url(url);
        snprintf(sql, sizeof(sql), "DROP SCHEMA \"%s\" CASCADE", schema);
        for (int i = 0; i < JOBS; i++) {
            if (jobs[i].rc != DB_OK) {
                db_exec(conn, sql);
                fail_msg("round %d job %d: %d %s", round, i, jobs[i].rc,
                         jobs[i].err);
            }
        }
        assert_int_equal(query_int(conn, "SELECT count(*) FROM t"), 2);
        assert_int_equal(
            query_int(conn, "SELECT count(*) FROM schema_migrations"), 2);
        exec_ok(conn, sql);
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

        /* Every connection updates one row too: row locks, not lost
         * updates. */
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
        st = rc == DB_OK ? db_prepare(conn, "UPDATE total SET n = n + $1")
                         : NULL;
        if (st) {
            db_bind_int64(st, 1, 1);
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
    struct fixture *f = *state;
    struct pool_shared s = {0};
    pthread_t threads[POOL_THREADS];
    char err[ERR_MAX] = "";
    db *conn = open_ok(state, NULL);

    exec_ok(conn, "CREATE TABLE t (x BIGINT);"
                  "CREATE TABLE total (n BIGINT); INSERT INTO total VALUES (0)");
    db_close(conn);
    s.pool = db_pool_open(f->url, POOL_SIZE, err, sizeof(err));
    if (!s.pool)
        fail_msg("db_pool_open: %s", err);
    pthread_mutex_init(&s.lock, NULL);

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
    assert_int_equal(query_int(conn, "SELECT n FROM total"),
                     POOL_THREADS * POOL_ITERATIONS);
    db_pool_release(s.pool, conn);
    pthread_mutex_destroy(&s.lock);
    db_pool_close(s.pool);
}

struct blocked_acquire {
    db_pool *pool;
    atomic_int done;
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
    struct fixture *f = *state;
    char err[ERR_MAX] = "";
    struct blocked_acquire b = {.pool = NULL};
    pthread_t thread;
    db *conn = open_ok(state, NULL);
    db_stmt *st;
    int done_while_held;

    exec_ok(conn, "CREATE TABLE t (x BIGINT)");
    db_close(conn);
    assert_null(db_pool_open(f->url, 0, err, sizeof(err)));
    assert_true(strlen(err) > 0);

    b.pool = db_pool_open(f->url, 1, err, sizeof(err));
    assert_non_null(b.pool);
    conn = db_pool_acquire(b.pool);

    /* Left behind by a careless caller: an open transaction and a
     * statement in the middle of its rows. */
    assert_int_equal(db_begin(conn), DB_OK);
    exec_ok(conn, "INSERT INTO t VALUES (1), (2)");
    st = prepare_ok(conn, "SELECT x FROM t");
    assert_int_equal(db_step(st), DB_ROW);

    assert_int_equal(pthread_create(&thread, NULL, acquire_thread, &b), 0);
    usleep(100 * 1000);
    done_while_held = atomic_load(&b.done);
    db_pool_release(b.pool, conn);
    pthread_join(thread, NULL);
    assert_int_equal(done_while_held, 0);
    assert_int_equal(atomic_load(&b.done), 1);
    assert_ptr_equal(b.got, conn);

    /* The release rolled back: the rows are gone and no lock is left. */
    conn = db_pool_acquire(b.pool);
    assert_int_equal(query_int(conn, "SELECT count(*) FROM t"), 0);
    {
        db *other = open_ok(state, "busy_timeout=50");
        assert_int_equal(db_begin(other), DB_OK);
        exec_ok(other, "LOCK TABLE t IN ACCESS EXCLUSIVE MODE");
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

/* ---- advisory locks ----------------------------------------------------- */

/* Session advisory locks pid holds on key (the one-key form). */
static int64_t locks_held(db *observer, int64_t pid, int64_t key)
{
    db_stmt *st = prepare_ok(
        observer, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                  " AND pid = $1 AND objsubid = 1 AND granted"
                  " AND ((classid::bigint << 32) | objid::bigint) = $2");
    int64_t n;

    assert_int_equal(db_bind_int64(st, 1, pid), DB_OK);
    assert_int_equal(db_bind_int64(st, 2, key), DB_OK);
    assert_int_equal(db_step(st), DB_ROW);
    n = db_col_int64(st, 0);
    db_stmt_reset(st);
    return n;
}

static void test_advisory_locks(void **state)
{
    const int64_t key = 0x0123456789ab;
    const int64_t other_key = -42;
    db *a = open_ok(state, NULL);
    db *b = open_ok(state, NULL);
    struct fixture *f = *state;
    db *sqlite = NULL;
    char err[ERR_MAX];
    char path[URL_MAX];
    int64_t pid_a = query_int(a, "SELECT pg_backend_pid()");

    assert_int_equal(db_try_advisory_lock(a, key), 1);
    assert_int_equal(db_try_advisory_lock(a, key), 1); /* no stacking */
    assert_int_equal(locks_held(b, pid_a, key), 1);
    assert_int_equal(db_try_advisory_lock(b, key), 0);
    assert_int_equal(db_try_advisory_lock(b, other_key), 1);
    /* A session lock outlives a transaction rolled back around it. */
    assert_int_equal(db_begin(a), DB_OK);
    assert_int_equal(db_rollback(a), DB_OK);
    assert_int_equal(db_try_advisory_lock(b, key), 0);

    /* One unlock releases it, however often it was tried. */
    db_advisory_unlock(a, key);
    assert_int_equal(locks_held(b, pid_a, key), 0);
    assert_int_equal(db_try_advisory_lock(b, key), 1);
    assert_int_equal(db_try_advisory_lock(a, key), 0);
    db_advisory_unlock(a, key); /* not held: nothing happens */
    assert_int_equal(db_try_advisory_lock(a, key), 0);

    /* The holder's connection ending frees it (its process dying too),
     * as soon as its backend has gone: asynchronously, so within a
     * bound. */
    db_close(b);
    {
        int64_t deadline =
            util_monotonic_ns() + TERMINATE_WAIT_MS * 1000000LL;
        int taken;
        while ((taken = db_try_advisory_lock(a, key)) == 0 &&
               util_monotonic_ns() < deadline)
            usleep(10 * 1000);
        assert_int_equal(taken, 1);
    }
    assert_int_equal(db_try_advisory_lock(a, other_key), 1);
    db_close(a);

    /* SQLite: one process per file, always taken. */
    snprintf(path, sizeof(path), "sqlite:/tmp/%s.db", f->schema);
    assert_int_equal(db_open(path, &sqlite, err, sizeof(err)), DB_OK);
    assert_int_equal(db_try_advisory_lock(sqlite, key), 1);
    assert_int_equal(db_try_advisory_lock(sqlite, key), 1);
    db_advisory_unlock(sqlite, key);
    db_close(sqlite);
    for (size_t i = 0; i < 3; i++) {
        static const char *const suffix[] = {"", "-wal", "-shm"};
        snprintf(path, sizeof(path), "/tmp/%s.db%s", f->schema, suffix[i]);
        unlink(path);
    }
}

/* ---- reconnecting ------------------------------------------------------- */

/* Terminates the backend pid from another connection and waits until it
 * is gone, and a moment more: the process leaves pg_stat_activity just
 * before it exits and its socket closes. */
static void terminate_backend(db *admin, int64_t pid)
{
    db_stmt *st = prepare_ok(admin, "SELECT pg_terminate_backend($1)");
    int64_t deadline = util_monotonic_ns() + TERMINATE_WAIT_MS * 1000000LL;

    assert_int_equal(db_bind_int64(st, 1, pid), DB_OK);
    assert_int_equal(db_step(st), DB_ROW);
    assert_int_equal(db_col_int64(st, 0), 1);
    db_stmt_reset(st);
    for (;;) {
        st = prepare_ok(admin,
                        "SELECT count(*) FROM pg_stat_activity WHERE pid = $1");
        assert_int_equal(db_bind_int64(st, 1, pid), DB_OK);
        assert_int_equal(db_step(st), DB_ROW);
        int64_t n = db_col_int64(st, 0);
        db_stmt_reset(st);
        if (n == 0)
            break;
        if (util_monotonic_ns() > deadline)
            fail_msg("backend %lld still there", (long long)pid);
        usleep(10 * 1000);
    }
    usleep(100 * 1000);
}

static void test_reconnect_after_terminate(void **state)
{
    struct fixture *f = *state;
    char err[ERR_MAX] = "";
    db *admin = open_ok(state, NULL);
    db *plain = open_ok(state, NULL);
    db_pool *pool;
    db *conns[2];
    int64_t pids[2];
    db_stmt *st;

    exec_ok(admin, "CREATE TABLE t (x BIGINT)");

    /* A plain connection: its next call says the server is gone, and no
     * transaction is left to roll back. */
    st = prepare_ok(plain, "INSERT INTO t VALUES ($1)");
    db_stmt_reset(st);
    terminate_backend(admin, query_int(plain, "SELECT pg_backend_pid()"));
    st = prepare_ok(plain, "INSERT INTO t VALUES ($1)"); /* cached */
    assert_int_equal(db_bind_int64(st, 1, 1), DB_OK);
    assert_int_equal(db_step(st), DB_UNAVAILABLE);
    db_stmt_reset(st);
    assert_int_equal(db_rollback(plain), DB_OK);
    assert_int_equal(db_begin(plain), DB_UNAVAILABLE);
    assert_int_equal(db_ping(plain), DB_UNAVAILABLE);
    assert_null(db_prepare(plain, "SELECT 2"));
    db_close(plain);

    /* A pool: every idle connection killed behind its back; the next
     * acquires notice without a failed request and reopen. */
    pool = db_pool_open(f->url, 2, err, sizeof(err));
    if (!pool)
        fail_msg("db_pool_open: %s", err);
    for (int i = 0; i < 2; i++) {
        conns[i] = db_pool_acquire(pool);
        pids[i] = query_int(conns[i], "SELECT pg_backend_pid()");
        assert_non_null(db_prepare(conns[i], "INSERT INTO t VALUES ($1)"));
    }
    for (int i = 0; i < 2; i++)
        db_pool_release(pool, conns[i]);
    for (int i = 0; i < 2; i++)
        terminate_backend(admin, pids[i]);
    for (int i = 0; i < 2; i++) {
        conns[i] = db_pool_acquire(pool);
        assert_int_equal(db_stmt_cache_size(conns[i]), 0);
        assert_true(query_int(conns[i], "SELECT pg_backend_pid()") != pids[0]);
        assert_true(query_int(conns[i], "SELECT pg_backend_pid()") != pids[1]);
        assert_int_equal(db_begin(conns[i]), DB_OK);
        st = prepare_ok(conns[i], "INSERT INTO t VALUES ($1)");
        assert_int_equal(db_bind_int64(st, 1, i), DB_OK);
        assert_int_equal(run(st), DB_OK);
        assert_int_equal(db_commit(conns[i]), DB_OK);
    }
    for (int i = 0; i < 2; i++)
        db_pool_release(pool, conns[i]);

    /* Killed while in use: that request fails with DB_UNAVAILABLE, and
     * the next acquire reopens. */
    conns[0] = db_pool_acquire(pool);
    pids[0] = query_int(conns[0], "SELECT pg_backend_pid()");
    assert_int_equal(db_begin(conns[0]), DB_OK);
    terminate_backend(admin, pids[0]);
    assert_int_equal(db_exec(conns[0], "INSERT INTO t VALUES (9)"),
                     DB_UNAVAILABLE);
    db_pool_release(pool, conns[0]);
    conns[0] = db_pool_acquire(pool);
    assert_int_equal(db_ping(conns[0]), DB_OK);
    db_pool_release(pool, conns[0]);
    db_pool_close(pool);

    assert_int_equal(query_int(admin, "SELECT count(*) FROM t"), 2);
    db_close(admin);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_and_session, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_urls, setup, teardown),
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
        cmocka_unit_test_setup_teardown(test_service_sql, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_empty_in_new_schema,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_failure, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_migrate_concurrent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pool_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_blocks_and_cleans_up, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_advisory_locks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_after_terminate, setup,
                                        teardown),
    };

    return cmocka_run_group_tests_name("db_pg", tests, NULL, NULL);
}
