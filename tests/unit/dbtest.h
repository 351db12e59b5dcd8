/*
 * dbtest: the unit tests of the db API that hold on both backends,
 * written once, and the fixture they run in. test_db.c runs them on
 * SQLite, test_db_pg.c on the PostgreSQL server of TEST_PG_URL; each of
 * those files adds the tests of what only its backend does (pragmas, lock
 * waits, schemas, advisory locks, reconnection). A shared test asserts
 * the details that differ between backends (the wording of a message,
 * what PostgreSQL refuses) under a test of dbtest_kind().
 *
 * The fixture gives each test a few separate, empty databases, numbered
 * from 0: files in a temporary directory on SQLite, schemas of their own
 * on PostgreSQL. Its teardown removes them all, so tests neither see each
 * other's tables nor leave any.
 *
 * The helpers fail the running test (cmocka's fail_msg) instead of
 * returning an error; connections they open are the caller's to close.
 */
#ifndef TESTS_DBTEST_H
#define TESTS_DBTEST_H

#include <stddef.h>
#include <stdint.h>

#include "db.h"

#define DBTEST_URL_MAX 1024
#define DBTEST_ERR_MAX 512
#define DBTEST_NAME_MAX 64

/* The state of a test (cmocka's *state). Plain data: the backend-specific
 * tests read dir or schema. */
struct dbtest {
    enum db_kind kind;
    char dir[DBTEST_NAME_MAX];    /* SQLite: the test's own directory */
    char schema[DBTEST_NAME_MAX]; /* PostgreSQL: database 0's schema */
    int databases;                /* numbers handed out by dbtest_url */
};

/* Per-test setups and the teardown of both. Without TEST_PG_URL the
 * PostgreSQL setup says why and fails, so every PostgreSQL test is
 * reported as not run ("Test setup failed"), never as passed. */
int dbtest_setup_sqlite(void **state);
int dbtest_setup_postgres(void **state);
int dbtest_teardown(void **state);

/* TEST_PG_URL, or NULL when it is unset or empty. */
const char *dbtest_pg_url(void);

enum db_kind dbtest_kind(void **state);

/* Writes into buf (DBTEST_URL_MAX bytes) and returns the URL of database
 * n, with opts ("busy_timeout=50") added when not NULL. On PostgreSQL
 * that is TEST_PG_URL with ?schema=<schema> (database n > 0:
 * <schema>_<n>); the schema is not created. Not thread-safe. */
const char *dbtest_url(void **state, int n, const char *opts, char *buf);

/* Writes into buf (DBTEST_NAME_MAX bytes) and returns the PostgreSQL
 * schema of database n. */
const char *dbtest_schema(void **state, int n, char *buf);

/* Opens database n ready for CREATE TABLE: on PostgreSQL its schema is
 * created here (in the services db_migrate makes it). */
db *dbtest_open(void **state, int n, const char *opts);

/* Opens url as it is. */
db *dbtest_open_url(const char *url);

void dbtest_exec(db *conn, const char *sql);
db_stmt *dbtest_prepare(db *conn, const char *sql);

/* The first column of the first row of a query without parameters, as an
 * integer, or as text copied into buf ("(null)" for NULL). */
int64_t dbtest_query_int(db *conn, const char *sql);
const char *dbtest_query_text(db *conn, const char *sql, char *buf, size_t size);

/* Steps a statement that returns no rows and resets it; returns DB_OK or
 * the error. */
int dbtest_run(db_stmt *st);

/* The shared tests, each run once per backend, named once here: the list
 * gives both their prototypes and their entries in a cmocka test list, so
 * a new shared test cannot be declared and then left out of a backend's
 * run. X(name, ...) is applied to each test and LAST to the last one (an
 * entry list is comma-separated with no comma after its end), both with
 * the arguments that follow LAST: a backend's setup and teardown. */
#define DBTEST_SHARED(X, LAST, ...)                                                                \
    X(test_bind_step_columns, __VA_ARGS__)                                                         \
    X(test_param_order_and_reuse, __VA_ARGS__)                                                     \
    X(test_prepare_errors, __VA_ARGS__)                                                            \
    X(test_statement_cache, __VA_ARGS__)                                                           \
    X(test_constraints, __VA_ARGS__)                                                               \
    X(test_failed_bind_sticks, __VA_ARGS__)                                                        \
    X(test_transactions, __VA_ARGS__)                                                              \
    X(test_relaxed_commits, __VA_ARGS__)                                                           \
    X(test_migrate, __VA_ARGS__)                                                                   \
    X(test_migrate_empty, __VA_ARGS__)                                                             \
    X(test_migrate_failure, __VA_ARGS__)                                                           \
    X(test_migrate_concurrent, __VA_ARGS__)                                                        \
    X(test_pool_threads, __VA_ARGS__)                                                              \
    LAST(test_pool_blocks_and_cleans_up, __VA_ARGS__)

#define DBTEST_DECLARE(name, ...) void name(void **state);
DBTEST_SHARED(DBTEST_DECLARE, DBTEST_DECLARE, )

#define DBTEST_LAST_ENTRY(name, setup, teardown)                                                   \
    cmocka_unit_test_setup_teardown(name, setup, teardown)
#define DBTEST_ENTRY(name, setup, teardown) DBTEST_LAST_ENTRY(name, setup, teardown),

/* Their entries in a cmocka test list, with a backend's setup. */
#define DBTEST_SHARED_TESTS(setup, teardown)                                                       \
    DBTEST_SHARED(DBTEST_ENTRY, DBTEST_LAST_ENTRY, setup, teardown)

/* A test of one's own on each backend, named after both: two entries of
 * a cmocka test list, with the given setups (DBTEST_BOTH: dbtest's). */
#define DBTEST_BOTH_WITH(test, setup_sqlite, setup_postgres, teardown)                             \
    {#test " (sqlite)", test, setup_sqlite, teardown, NULL},                                       \
    {                                                                                              \
#test " (postgres)", test, setup_postgres, teardown, NULL                                  \
    }
#define DBTEST_BOTH(test)                                                                          \
    DBTEST_BOTH_WITH(test, dbtest_setup_sqlite, dbtest_setup_postgres, dbtest_teardown)

#endif
