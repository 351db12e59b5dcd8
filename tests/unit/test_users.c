/*
 * Unit tests of the user insert (src/user/users.c) on both backends, with
 * the service's own migrations: which database errors become which HTTP
 * answer. Only a taken email is the client's 409; any other violation,
 * or a value that did not bind, is our fault and a 500, never a 409 that
 * would tell the client its email was taken.
 *
 * The SQLite tests run on files in a temporary directory; the PostgreSQL
 * ones on TEST_PG_URL, in schemas of their own (dbtest.h), and are
 * reported as not run without it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_error.h"
#include "db.h"
#include "db_internal.h"
#include "dbtest.h"
#include "jsonw.h"
#include "user/user_service.h"
#include "util.h"

#define MIGRATE_ERR_MAX 512
/* SQLite's length limit lowered below a valid name, to make its bind
 * fail (the longest name is 200 characters). */
#define SMALL_LENGTH_LIMIT 8

/* Opens database 0 with the user-service schema. */
static db *open_users(void **state)
{
    char err[MIGRATE_ERR_MAX] = "";
    db *conn = dbtest_open(state, 0, NULL);

    if (db_migrate(conn, user_migrations, user_migration_count, err, sizeof(err)) != DB_OK)
        fail_msg("db_migrate: %s", err);
    return conn;
}

/* Parses {"name": name, "email": email} as POST does, then inserts it in
 * a transaction of its own the way the group commit runs it (committed
 * on success, rolled back otherwise). Returns what insert returned; err
 * holds the answer it chose. */
static int create_user(db *conn, const char *name, const char *email, struct api_error *err)
{
    json_t *obj = json_pack("{s:s, s:s}", "name", name, "email", email);
    void *item = xcalloc(1, user_create.item_size);
    struct jsonw out;
    int64_t id = 0;
    int rc;

    assert_non_null(obj);
    api_error_clear(err);
    jsonw_init(&out);
    assert_int_equal(user_create.parse(obj, item, err), 0);
    assert_int_equal(db_begin(conn), DB_OK);
    rc = user_create.insert(conn, item, &out, &id, err);
    if (rc == DB_OK) {
        assert_true(id > 0);
        assert_non_null(strstr(out.buf, email));
        assert_int_equal(db_commit(conn), DB_OK);
    } else {
        assert_int_equal(db_rollback(conn), DB_OK);
    }
    jsonw_free(&out);
    free(item);
    json_decref(obj);
    return rc;
}

static int64_t count_users(db *conn)
{
    return dbtest_query_int(conn, "SELECT count(*) FROM users");
}

/* Adds a constraint that no validation knows of: a name is refused
 * (SQLite cannot add a CHECK to a table, so a trigger aborts instead,
 * which SQLite reports as a constraint failure too). */
static void forbid_name(db *conn, const char *name)
{
    char sql[256];

    if (db_kind(conn) == DB_KIND_SQLITE)
        snprintf(sql, sizeof(sql),
                 "CREATE TRIGGER users_forbidden BEFORE INSERT ON users "
                 "WHEN NEW.name = '%s' BEGIN "
                 "SELECT RAISE(ABORT, 'name forbidden'); END",
                 name);
    else
        snprintf(sql, sizeof(sql),
                 "ALTER TABLE users ADD CONSTRAINT users_forbidden "
                 "CHECK (name <> '%s')",
                 name);
    dbtest_exec(conn, sql);
}

static void test_duplicate_email_is_409(void **state)
{
    db *conn = open_users(state);
    struct api_error err;

    assert_int_equal(create_user(conn, "Ann", "ann@example.com", &err), DB_OK);
    assert_int_equal(err.status, 0);
    /* Unique regardless of case. */
    assert_int_equal(create_user(conn, "Ann again", "ANN@example.com", &err), DB_DUPLICATE);
    assert_int_equal(err.status, 409);
    assert_string_equal(err.code, "conflict");
    assert_string_equal(err.field, "email");
    assert_int_equal(count_users(conn), 1);
    db_close(conn);
}

static void test_other_constraint_is_500(void **state)
{
    db *conn = open_users(state);
    struct api_error err;

    forbid_name(conn, "Mallory");
    assert_int_equal(create_user(conn, "Mallory", "mallory@example.com", &err), DB_CONSTRAINT);
    assert_int_equal(err.status, 500);
    assert_string_equal(err.code, "internal");
    assert_string_equal(err.field, "");
    /* The email was free all along: it still is. */
    assert_int_equal(count_users(conn), 0);
    assert_int_equal(create_user(conn, "Eve", "mallory@example.com", &err), DB_OK);
    /* Both at once: a taken email and the forbidden name. Whichever the
     * engine reports, the answer matches it. */
    {
        int rc = create_user(conn, "Mallory", "mallory@example.com", &err);
        assert_true(rc == DB_DUPLICATE || rc == DB_CONSTRAINT);
        assert_int_equal(err.status, rc == DB_DUPLICATE ? 409 : 500);
    }
    assert_int_equal(count_users(conn), 1);
    db_close(conn);
}

/* A name that does not bind (over SQLite's length limit, lowered here)
 * used to go in as NULL, break NOT NULL and come back as a taken email. */
static void test_failed_bind_is_500(void **state)
{
    db *conn = open_users(state);
    sqlite3 *h = conn->impl;
    struct api_error err;

    /* Prepared (and cached) first: the lowered limit would also stop
     * SQLite from compiling the insert, a failure of another kind. */
    assert_int_equal(create_user(conn, "Bo", "bo@b.c", &err), DB_OK);
    sqlite3_limit(h, SQLITE_LIMIT_LENGTH, SMALL_LENGTH_LIMIT);
    assert_int_equal(create_user(conn, "A name too long", "a@b.c", &err), DB_ERROR);
    assert_int_equal(err.status, 500);
    assert_string_equal(err.code, "internal");
    assert_non_null(strstr(db_errmsg(conn), "too big"));
    sqlite3_limit(h, SQLITE_LIMIT_LENGTH, 0x7fffffff);
    assert_int_equal(count_users(conn), 1);
    assert_int_equal(create_user(conn, "A name too long", "a@b.c", &err), DB_OK);
    db_close(conn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DBTEST_BOTH(test_duplicate_email_is_409),
        DBTEST_BOTH(test_other_constraint_is_500),
        cmocka_unit_test_setup_teardown(test_failed_bind_is_500, dbtest_setup_sqlite,
                                        dbtest_teardown),
    };

    return cmocka_run_group_tests_name("users", tests, NULL, NULL);
}
