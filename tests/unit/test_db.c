/*
 * Unit tests of db on SQLite: the shared tests of dbtest.c on real
 * database files, each test in its own directory under /tmp that its
 * teardown removes, and what only SQLite does (URL forms, pragmas, a
 * missing directory, lock waits, advisory locks).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h"
#include "db_internal.h"
#include "dbtest.h"
#include "util.h"

static int file_exists(const char *path)
{
    struct stat sb;

    return stat(path, &sb) == 0;
}

/* ---- opening ------------------------------------------------------------ */

/* The services run SQLite without memory statistics (db_sqlite.c: with
 * them, every allocation takes one process-wide mutex): after a
 * connection has worked, SQLite has counted none of its allocations.
 * First in the list, before test_failed_binds_sqlite turns them on. */
static void test_memory_statistics_off(void **state)
{
    db *conn = dbtest_open(state, 0, NULL);

    dbtest_exec(conn, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)");
    dbtest_exec(conn, "INSERT INTO t (name) VALUES ('a'), ('b')");
    assert_int_equal(dbtest_query_int(conn, "SELECT count(*) FROM t"), 2);
    assert_int_equal(sqlite3_memory_used(), 0);
    db_close(conn);
}

/* SQLite's heap limit, which the allocation failure below is injected
 * with, is enforced only with memory statistics on: switched on for the
 * rest of this process, between connections (SQLite takes settings only
 * while shut down). */
static void memory_statistics_on(void)
{
    assert_int_equal(sqlite3_shutdown(), SQLITE_OK);
    assert_int_equal(sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 1), SQLITE_OK);
    assert_int_equal(sqlite3_initialize(), SQLITE_OK);
}

static void test_open_close_and_pragmas(void **state)
{
    struct dbtest *f = *state;
    char path[DBTEST_URL_MAX];
    db *conn = dbtest_open(state, 0, NULL);
    db_stmt *st;

    snprintf(path, sizeof(path), "%s/db0.db", f->dir);
    assert_true(file_exists(path));
    assert_int_equal(db_kind(conn), DB_KIND_SQLITE);
    assert_string_equal(db_errmsg(conn), "");
    assert_int_equal(db_ping(conn), DB_OK);

    st = dbtest_prepare(conn, "PRAGMA journal_mode");
    assert_int_equal(db_step(st), DB_ROW);
    assert_string_equal(db_col_text(st, 0), "wal");
    db_stmt_reset(st);
    assert_int_equal(dbtest_query_int(conn, "PRAGMA synchronous"), 2); /* FULL */
    assert_int_equal(dbtest_query_int(conn, "PRAGMA foreign_keys"), 1);
    assert_int_equal(dbtest_query_int(conn, "PRAGMA busy_timeout"), 5000);
    db_close(conn);

    conn = dbtest_open(state, 1, "busy_timeout=50");
    assert_int_equal(dbtest_query_int(conn, "PRAGMA busy_timeout"), 50);
    db_close(conn);
    db_close(NULL);
}

static void test_url_forms(void **state)
{
    struct dbtest *f = *state;
    char url[DBTEST_URL_MAX];
    char path[DBTEST_URL_MAX];
    char cwd[DBTEST_URL_MAX];
    char err[DBTEST_ERR_MAX];
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
    assert_int_equal(db_open("sqlite://rel1.db", &conn, err, sizeof(err)), DB_OK);
    db_close(conn);
    assert_int_equal(db_open("sqlite:rel2.db", &conn, err, sizeof(err)), DB_OK);
    db_close(conn);
    assert_int_equal(chdir(cwd), 0);
    snprintf(path, sizeof(path), "%s/rel1.db", f->dir);
    assert_true(file_exists(path));
    snprintf(path, sizeof(path), "%s/rel2.db", f->dir);
    assert_true(file_exists(path));
}

/* PostgreSQL URLs are checked by test_db_pg.c. */
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
    struct dbtest *f = *state;
    char err[DBTEST_ERR_MAX];
    char path[DBTEST_URL_MAX / 2];
    char url[DBTEST_URL_MAX];
    db *conn = (db *)1;

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        assert_int_equal(db_open(bad[i], &conn, err, sizeof(err)), DB_ERROR);
        assert_null(conn);
        assert_true(strlen(err) > 0);
    }

    /* A NULL err buffer is allowed. */
    assert_int_equal(db_open("mysql://x", &conn, NULL, 0), DB_ERROR);

    /* A file that is not a database. */
    snprintf(path, sizeof(path), "%s/junk.db", f->dir);
    {
        FILE *fp = fopen(path, "w");
        assert_non_null(fp);
        for (int i = 0; i < 64; i++)
            fputs("this is not an SQLite database file\n", fp);
        fclose(fp);
    }
    snprintf(url, sizeof(url), "sqlite:%s", path);
    assert_int_equal(db_open(url, &conn, err, sizeof(err)), DB_UNAVAILABLE);
    assert_null(conn);
}

static void test_missing_directory(void **state)
{
    struct dbtest *f = *state;
    char url[DBTEST_URL_MAX];
    char path[DBTEST_URL_MAX / 2];
    char err[DBTEST_ERR_MAX] = "";
    db *conn = NULL;

    snprintf(path, sizeof(path), "%s/no/such/dir", f->dir);
    snprintf(url, sizeof(url), "sqlite:%s/x.db", path);
    assert_int_equal(db_open(url, &conn, err, sizeof(err)), DB_UNAVAILABLE);
    assert_null(conn);
    assert_non_null(strstr(err, "does not exist"));
    assert_non_null(strstr(err, path));
    assert_false(file_exists(path));
}

/* ---- failed binds ------------------------------------------------------- */

/* The text a test binds, and room over the lowered limits below. */
#define BIND_TEXT_LEN 4096
/* Lowered length limit: BIND_TEXT_LEN is over it. */
#define SMALL_LENGTH_LIMIT 1000
/* Heap SQLite may still take beyond what it holds: less than the copy
 * of BIND_TEXT_LEN bytes a bind makes. */
#define HEAP_HEADROOM 1024

static sqlite3 *handle_of(db *conn)
{
    return conn->impl;
}

/* Binds text of BIND_TEXT_LEN as $2 of an insert of id and checks that
 * the bind fails, the step fails with it and nothing is stored. */
static void insert_fails(db *conn, int64_t id, const char *text, const char *why)
{
    db_stmt *st = dbtest_prepare(conn, "INSERT INTO t (id, name) VALUES ($1, $2)");

    assert_int_equal(db_bind_int64(st, 1, id), DB_OK);
    assert_int_equal(db_bind_text(st, 2, text, BIND_TEXT_LEN), DB_ERROR);
    assert_int_equal(db_step(st), DB_ERROR);
    assert_non_null(strstr(db_errmsg(conn), why));
    db_stmt_reset(st);
}

/* What the engine refuses while binding, SQLite's own way: a text over
 * the connection's length limit, and its allocator failing (injected
 * with the process-wide hard heap limit). The insert never stores a
 * NULL in place of the value. */
static void test_failed_binds_sqlite(void **state)
{
    memory_statistics_on();
    db *conn = dbtest_open(state, 0, NULL);
    char *text = xmalloc(BIND_TEXT_LEN);
    db_stmt *st;

    /* The shared test's huge text is over this build's limit. */
    assert_true(sqlite3_limit(handle_of(conn), SQLITE_LIMIT_LENGTH, -1) < 0x40000001);
    memset(text, 'a', BIND_TEXT_LEN);
    dbtest_exec(conn, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)");

    sqlite3_limit(handle_of(conn), SQLITE_LIMIT_LENGTH, SMALL_LENGTH_LIMIT);
    insert_fails(conn, 1, text, "too big");
    sqlite3_limit(handle_of(conn), SQLITE_LIMIT_LENGTH, 0x7fffffff);

    assert_int_equal(sqlite3_hard_heap_limit64(sqlite3_memory_used() + HEAP_HEADROOM), 0);
    insert_fails(conn, 2, text, "out of memory");
    sqlite3_hard_heap_limit64(0); /* no limit */

    assert_int_equal(dbtest_query_int(conn, "SELECT count(*) FROM t"), 0);
    st = dbtest_prepare(conn, "INSERT INTO t (id, name) VALUES ($1, $2)");
    assert_int_equal(db_bind_int64(st, 1, 3), DB_OK);
    assert_int_equal(db_bind_text(st, 2, text, BIND_TEXT_LEN), DB_OK);
    assert_int_equal(db_step(st), DB_DONE);
    db_stmt_reset(st);
    assert_int_equal(dbtest_query_int(conn, "SELECT length(name) FROM t"), BIND_TEXT_LEN);
    free(text);
    db_close(conn);
}

/* An INTEGER PRIMARY KEY is the rowid itself, not an index: taking one
 * twice is a duplicate all the same; a trigger's refusal is not one. */
static void test_rowid_duplicate(void **state)
{
    db *conn = dbtest_open(state, 0, NULL);

    dbtest_exec(conn,
                "CREATE TABLE r (id INTEGER PRIMARY KEY, n INTEGER);"
                "CREATE TRIGGER r_no_seven BEFORE INSERT ON r "
                "WHEN NEW.n = 7 BEGIN SELECT RAISE(ABORT, 'no'); END;"
                "INSERT INTO r (id) VALUES (1)");
    assert_int_equal(db_exec(conn, "INSERT INTO r (id) VALUES (1)"), DB_DUPLICATE);
    assert_int_equal(db_exec(conn, "INSERT INTO r (id, n) VALUES (2, 7)"), DB_CONSTRAINT);
    db_close(conn);
}

/* ---- locking ------------------------------------------------------------ */

static void test_busy(void **state)
{
    db *a = dbtest_open(state, 0, "busy_timeout=50");
    db *b = dbtest_open(state, 0, "busy_timeout=50");
    int64_t start;
    int64_t waited_ms;

    dbtest_exec(a, "CREATE TABLE t (x INTEGER)");
    assert_int_equal(db_begin(a), DB_OK);
    dbtest_exec(a, "INSERT INTO t VALUES (1)");

    /* BEGIN IMMEDIATE waits for the write lock up front. */
    start = util_monotonic_ns();
    assert_int_equal(db_begin(b), DB_BUSY);
    waited_ms = (util_monotonic_ns() - start) / 1000000;
    assert_true(waited_ms >= 40);
    assert_true(waited_ms < 2000);
    assert_true(strlen(db_errmsg(b)) > 0);
    assert_int_equal(db_rollback(b), DB_OK);

    /* A write outside a transaction is busy too; reads are not (WAL). */
    assert_int_equal(db_exec(b, "INSERT INTO t VALUES (2)"), DB_BUSY);
    assert_int_equal(dbtest_query_int(b, "SELECT count(*) FROM t"), 0);

    assert_int_equal(db_commit(a), DB_OK);
    assert_int_equal(db_begin(b), DB_OK);
    dbtest_exec(b, "INSERT INTO t VALUES (2)");
    assert_int_equal(db_commit(b), DB_OK);
    assert_int_equal(dbtest_query_int(a, "SELECT count(*) FROM t"), 2);
    db_close(a);
    db_close(b);
}

/* One process per file: always taken, unlock does nothing. */
static void test_advisory_locks(void **state)
{
    const int64_t key = 0x0123456789ab;
    db *conn = dbtest_open(state, 0, NULL);

    assert_int_equal(db_try_advisory_lock(conn, key), 1);
    assert_int_equal(db_try_advisory_lock(conn, key), 1);
    db_advisory_unlock(conn, key);
    db_close(conn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_memory_statistics_off, dbtest_setup_sqlite,
                                        dbtest_teardown),
        cmocka_unit_test_setup_teardown(test_open_close_and_pragmas, dbtest_setup_sqlite,
                                        dbtest_teardown),
        cmocka_unit_test_setup_teardown(test_url_forms, dbtest_setup_sqlite, dbtest_teardown),
        cmocka_unit_test_setup_teardown(test_bad_urls, dbtest_setup_sqlite, dbtest_teardown),
        cmocka_unit_test_setup_teardown(test_missing_directory, dbtest_setup_sqlite,
                                        dbtest_teardown),
        DBTEST_SHARED_TESTS(dbtest_setup_sqlite, dbtest_teardown),
        cmocka_unit_test_setup_teardown(test_failed_binds_sqlite, dbtest_setup_sqlite,
                                        dbtest_teardown),
        cmocka_unit_test_setup_teardown(test_rowid_duplicate, dbtest_setup_sqlite, dbtest_teardown),
        cmocka_unit_test_setup_teardown(test_busy, dbtest_setup_sqlite, dbtest_teardown),
        cmocka_unit_test_setup_teardown(test_advisory_locks, dbtest_setup_sqlite, dbtest_teardown),
    };

    return cmocka_run_group_tests_name("db", tests, NULL, NULL);
}
