/*
 * Unit tests of db on PostgreSQL: the shared tests of dbtest.c, and what
 * only PostgreSQL does: the session a URL sets up, bad URLs and
 * credentials, row lock waits, every SQL statement shape the services
 * use on their real schemas, advisory locks and reconnection. They need a
 * real server: TEST_PG_URL, e.g.
 * postgres://postgres:postgres@127.0.0.1:PORT/postgres (scripts/
 * run-tests.sh starts a private cluster with scripts/postgres.sh and sets
 * it). Each test works in schemas of its own (?schema=...), dropped by
 * its teardown, so tests neither see each other's tables nor leave any.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "db_internal.h"
#include "dbtest.h"
#include "inbox.h"
#include "outbox.h"
#include "util.h"

/* The services' own migrations (each header names its service). */
#include "invoice/invoice_service.h"
#undef SERVICE_NAME
#include "order/order_service.h"
#undef SERVICE_NAME
#include "user/user_service.h"
#undef SERVICE_NAME

/* How long a terminated backend may take to disappear. */
#define TERMINATE_WAIT_MS 5000

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
    struct dbtest *f = *state;
    char buf[256];
    db *conn = dbtest_open(state, 0, NULL);

    assert_int_equal(db_kind(conn), DB_KIND_POSTGRES);
    assert_string_equal(db_errmsg(conn), "");
    assert_int_equal(db_ping(conn), DB_OK);
    assert_string_equal(dbtest_query_text(conn, "SELECT current_schema()", buf, sizeof(buf)),
                        f->schema);
    assert_string_equal(dbtest_query_text(conn, "SHOW lock_timeout", buf, sizeof(buf)), "5s");
    assert_string_equal(dbtest_query_text(conn, "SHOW client_encoding", buf, sizeof(buf)), "UTF8");
    /* Unqualified names land in the schema. */
    dbtest_exec(conn, "CREATE TABLE here (x BIGINT)");
    snprintf(buf, sizeof(buf),
             "SELECT count(*) FROM pg_tables WHERE schemaname = '%s' "
             "AND tablename = 'here'",
             f->schema);
    assert_int_equal(dbtest_query_int(conn, buf), 1);
    db_close(conn);

    conn = dbtest_open(state, 0, "busy_timeout=50");
    assert_string_equal(dbtest_query_text(conn, "SHOW lock_timeout", buf, sizeof(buf)), "50ms");
    db_close(conn);
    db_close(NULL);

    /* Without ?schema= the schema is demo. */
    conn = dbtest_open_url(dbtest_pg_url());
    assert_string_equal(dbtest_query_text(conn, "SHOW search_path", buf, sizeof(buf)), "demo");
    db_close(conn);
}

/* host, port and database of TEST_PG_URL, for URLs with other users. */
static void server_of(char *host, char *port, char *dbname, size_t size)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(dbtest_pg_url(), &perr);

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

/* SQLite URLs are checked by test_db.c. */
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
    char err[DBTEST_ERR_MAX];
    char url[DBTEST_URL_MAX];
    char host[128], port[16], dbname[128];
    db *conn = (db *)1;
    (void)state;

    for (size_t i = 0; i < ARRAY_LEN(bad_config); i++) {
        err[0] = '\0';
        assert_int_equal(db_open(bad_config[i], &conn, err, sizeof(err)), DB_ERROR);
        assert_null(conn);
        assert_non_null(strstr(err, "PostgreSQL"));
        assert_null(strstr(err, "s3cret"));
        assert_null(strstr(err, "s3%zzcret"));
    }

    /* Nobody listens: unavailable (worth retrying), not a bad URL. */
    err[0] = '\0';
    assert_int_equal(db_open("postgres://app:s3cret@127.0.0.1:1/orders", &conn, err, sizeof(err)),
                     DB_UNAVAILABLE);
    assert_null(conn);
    assert_non_null(strstr(err, "PostgreSQL"));
    assert_null(strstr(err, "s3cret"));
    assert_int_equal(db_open("postgresql://app:s3cret@127.0.0.1:1/db", &conn, err, sizeof(err)),
                     DB_UNAVAILABLE);
    assert_null(strstr(err, "s3cret"));
    err[0] = '\0';
    assert_null(db_pool_open("postgresql://app:s3cret@127.0.0.1:1/orders", 2, err, sizeof(err)));
    assert_non_null(strstr(err, "PostgreSQL"));
    assert_null(strstr(err, "s3cret"));

    /* A wrong password on the real server. */
    server_of(host, port, dbname, sizeof(host));
    snprintf(url, sizeof(url), "postgres://postgres:wr0ngpw@%s:%s/%s", host, port, dbname);
    err[0] = '\0';
    assert_int_equal(db_open(url, &conn, err, sizeof(err)), DB_UNAVAILABLE);
    assert_null(conn);
    assert_true(strlen(err) > 0);
    assert_null(strstr(err, "wr0ngpw"));

    /* No such database. */
    snprintf(url, sizeof(url), "%s", dbtest_pg_url());
    {
        char *slash = strrchr(url + strlen("postgres://"), '/');
        char *query = strchr(url, '?');
        char rest[DBTEST_URL_MAX] = "";
        assert_non_null(slash);
        if (query)
            util_strlcpy(rest, query, sizeof(rest));
        snprintf(slash, sizeof(url) - (size_t)(slash - url), "/no_such_db_here%s", rest);
    }
    assert_int_equal(db_open(url, &conn, err, sizeof(err)), DB_UNAVAILABLE);
    assert_non_null(strstr(err, "no_such_db_here"));

    assert_int_equal(db_open("mysql://x", &conn, NULL, 0), DB_ERROR);
}

/* ---- locking ----------------------------------------------------------- */

static void test_busy(void **state)
{
    db *a = dbtest_open(state, 0, "busy_timeout=50");
    db *b = dbtest_open(state, 0, "busy_timeout=50");
    db_stmt *st;
    int64_t start;
    int64_t waited_ms;

    dbtest_exec(a,
                "CREATE TABLE t (id BIGINT PRIMARY KEY, n BIGINT);"
                "INSERT INTO t VALUES (1, 0)");
    assert_int_equal(db_begin(a), DB_OK);
    dbtest_exec(a, "UPDATE t SET n = n + 1 WHERE id = 1");

    /* b waits for a's row lock, then gives up with DB_BUSY. */
    assert_int_equal(db_begin(b), DB_OK);
    st = dbtest_prepare(b, "UPDATE t SET n = n + $1 WHERE id = 1");
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
    assert_int_equal(dbtest_query_int(b, "SELECT n FROM t WHERE id = 1"), 0);

    assert_int_equal(db_commit(a), DB_OK);
    assert_int_equal(db_begin(b), DB_OK);
    st = dbtest_prepare(b, "UPDATE t SET n = n + $1 WHERE id = 1");
    assert_int_equal(db_bind_int64(st, 1, 10), DB_OK);
    assert_int_equal(dbtest_run(st), DB_OK);
    assert_int_equal(db_commit(b), DB_OK);
    assert_int_equal(dbtest_query_int(a, "SELECT n FROM t WHERE id = 1"), 11);
    db_close(a);
    db_close(b);
}

/* ---- the services' SQL -------------------------------------------------- */

/* The services' statements, run on the tables of the services' own
 * migrations. These are copies: the lists keep the shape that binds every
 * filter, NULL when absent ("($n IS NULL OR ...)", whose parameter types
 * the server cannot infer by itself), while the services now put only the
 * filters asked for in the WHERE clause (rows.c). */
#define USER_COLUMNS "id, name, email, created_at"
#define ACCOUNT_COLUMNS "id, user_id, address1, address2, city, state, zip, status, created_at"
#define ORDER_COLUMNS "id, user_id, amount_cents, description, created_at"
#define INVOICE_SELECT                                                                             \
    "SELECT i.id, i.user_id, i.year, i.month, c.name, c.email, "                                   \
    "c.account_id,"                                                                                \
    " c.address1, c.address2, c.city, c.state, c.zip, i.order_count, "                             \
    "i.total_cents,"                                                                               \
    " i.updated_at FROM invoices i LEFT JOIN customers c ON c.user_id = "                          \
    "i.user_id"

static const char sql_user_insert[] =
    "INSERT INTO users (name, email, created_at) "
    "VALUES ($1, $2, $3) RETURNING " USER_COLUMNS;
static const char sql_user_list[] = "SELECT " USER_COLUMNS
                                    " FROM users"
                                    " WHERE ($1 IS NULL OR lower(email) = lower($1))"
                                    " AND ($2 IS NULL OR lower(name) LIKE $2 ESCAPE '\\')"
                                    " ORDER BY name DESC, id ASC LIMIT $3 OFFSET $4";
static const char sql_user_get[] = "SELECT " USER_COLUMNS " FROM users WHERE id = $1";
static const char sql_user_exists[] = "SELECT 1 FROM users WHERE id = $1";
static const char sql_account_insert[] =
    "INSERT INTO accounts (user_id, address1, address2, city,"
    " state, zip, status, created_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    " RETURNING " ACCOUNT_COLUMNS;
static const char sql_account_list[] =
    "SELECT " ACCOUNT_COLUMNS
    " FROM accounts"
    " WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR status = $2)"
    " ORDER BY id, id ASC LIMIT $3 OFFSET $4";
static const char sql_account_get[] = "SELECT " ACCOUNT_COLUMNS " FROM accounts WHERE id = $1";
static const char sql_order_insert[] =
    "INSERT INTO orders (user_id, amount_cents, description,"
    " created_at) VALUES ($1, $2, $3, $4)"
    " RETURNING " ORDER_COLUMNS;
static const char sql_order_list[] = "SELECT " ORDER_COLUMNS
                                     " FROM orders WHERE ($1 IS NULL OR user_id = $1)"
                                     " ORDER BY amount_cents DESC, id ASC LIMIT $2 OFFSET $3";
static const char sql_order_get[] = "SELECT " ORDER_COLUMNS " FROM orders WHERE id = $1";
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
static const char sql_order_known[] = "SELECT 1 FROM invoice_lines WHERE order_id = $1";
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
static const char sql_invoice_list[] = INVOICE_SELECT
    " WHERE ($1 IS NULL OR i.user_id = $1)"
    " AND ($2 IS NULL OR i.month = $2) AND ($3 IS NULL OR "
    "i.year = $3)"
    " ORDER BY i.total_cents DESC, i.id ASC LIMIT $4 OFFSET $5";
static const char sql_invoice_get[] = INVOICE_SELECT " WHERE i.id = $1";
static const char sql_invoice_lines[] =
    "SELECT order_id, description, amount_cents, purchased_at"
    " FROM invoice_lines WHERE invoice_id = $1"
    " ORDER BY purchased_at, order_id";

static int64_t insert_user(db *conn, const char *name, const char *email, int expect)
{
    db_stmt *st = dbtest_prepare(conn, sql_user_insert);
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

/* The same for a list: binds LIMIT and OFFSET, parameters at and at + 1. */
static int count_page(db_stmt *st, int at, int64_t limit, int64_t offset, int64_t *first_id)
{
    assert_int_equal(db_bind_int64(st, at, limit), DB_OK);
    assert_int_equal(db_bind_int64(st, at + 1, offset), DB_OK);
    return count_rows(st, first_id);
}

static void check_user_service(db *conn)
{
    int64_t ann, bob, first = 0;
    db_stmt *st;

    assert_int_equal(db_begin(conn), DB_OK);
    ann = insert_user(conn, "Ann 50%_off", "Ann@Example.com", DB_ROW);
    bob = insert_user(conn, "Bob", "bob@example.com", DB_ROW);
    assert_int_equal(db_commit(conn), DB_OK);
    assert_true(ann > 0 && bob > ann);
    /* Emails are unique regardless of case. */
    assert_int_equal(db_begin(conn), DB_OK);
    insert_user(conn, "Ann again", "ann@EXAMPLE.com", DB_DUPLICATE);
    assert_int_equal(db_rollback(conn), DB_OK);

    /* No filter, then each filter (a NULL-typed $n in both shapes). */
    st = dbtest_prepare(conn, sql_user_list);
    assert_int_equal(count_page(st, 3, 100, 0, &first), 2);
    assert_true(first == bob); /* name DESC */
    st = dbtest_prepare(conn, sql_user_list);
    bind_text(st, 1, "ANN@example.COM");
    assert_int_equal(count_page(st, 3, 100, 0, &first), 1);
    assert_true(first == ann);
    /* users.c's substring pattern for "50%_": "%50\%\_%". */
    st = dbtest_prepare(conn, sql_user_list);
    bind_text(st, 2, "%50\\%\\_%");
    assert_int_equal(count_page(st, 3, 100, 0, &first), 1);
    assert_true(first == ann);
    /* The escapes are literal: "5_%" matches no name with "5" then any. */
    st = dbtest_prepare(conn, sql_user_list);
    bind_text(st, 2, "%n\\_%");
    assert_int_equal(count_page(st, 3, 100, 0, NULL), 0);
    st = dbtest_prepare(conn, sql_user_list);
    assert_int_equal(count_page(st, 3, 1, 1, &first), 1);
    assert_true(first == ann);

    st = dbtest_prepare(conn, sql_user_get);
    assert_int_equal(db_bind_int64(st, 1, bob), DB_OK);
    assert_int_equal(count_rows(st, &first), 1);
    st = dbtest_prepare(conn, sql_user_exists);
    assert_int_equal(db_bind_int64(st, 1, 999999), DB_OK);
    assert_int_equal(count_rows(st, NULL), 0);

    /* Accounts: address2 NULL, then the list's two filters. */
    assert_int_equal(db_begin(conn), DB_OK);
    for (int i = 0; i < 3; i++) {
        st = dbtest_prepare(conn, sql_account_insert);
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
    for (int i = 0; i < 2; i++) {
        st = dbtest_prepare(conn, sql_account_insert);
        assert_int_equal(db_bind_int64(st, 1, i == 0 ? ann : 999999), DB_OK);
        bind_text(st, 2, "x");
        bind_text(st, 4, "x");
        bind_text(st, 5, "x");
        bind_text(st, 6, "x");
        bind_text(st, 7, i == 0 ? "lost" : "open");
        assert_int_equal(db_bind_int64(st, 8, 1), DB_OK);
        assert_int_equal(db_step(st), DB_CONSTRAINT);
        db_stmt_reset(st);
    }

    st = dbtest_prepare(conn, sql_account_list);
    assert_int_equal(count_page(st, 3, 100, 0, NULL), 3);
    st = dbtest_prepare(conn, sql_account_list);
    assert_int_equal(db_bind_int64(st, 1, ann), DB_OK);
    assert_int_equal(count_page(st, 3, 100, 0, NULL), 2);
    st = dbtest_prepare(conn, sql_account_list);
    bind_text(st, 2, "open");
    assert_int_equal(count_page(st, 3, 100, 0, NULL), 2);
    st = dbtest_prepare(conn, sql_account_list);
    assert_int_equal(db_bind_int64(st, 1, ann), DB_OK);
    bind_text(st, 2, "closed");
    assert_int_equal(count_page(st, 3, 100, 0, NULL), 1);
    st = dbtest_prepare(conn, sql_account_get);
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
    static const char sql_mark_one[] =
        "UPDATE outbox SET published_at = $1"
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
    assert_int_equal(dbtest_query_int(conn, sql_count_pending), 4);

    st = dbtest_prepare(conn, sql_select_batch);
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

    st = dbtest_prepare(conn, sql_mark_range);
    assert_int_equal(db_bind_int64(st, 1, 1700000000999), DB_OK);
    assert_int_equal(db_bind_int64(st, 2, first), DB_OK);
    assert_int_equal(db_bind_int64(st, 3, last), DB_OK);
    assert_int_equal(dbtest_run(st), DB_OK);
    assert_int_equal(dbtest_query_int(conn, sql_count_pending), 1);
    assert_int_equal(db_begin(conn), DB_OK);
    st = dbtest_prepare(conn, sql_mark_one);
    assert_int_equal(db_bind_int64(st, 1, 1700000000999), DB_OK);
    assert_int_equal(db_bind_int64(st, 2, last + 1), DB_OK);
    assert_int_equal(dbtest_run(st), DB_OK);
    assert_int_equal(db_commit(conn), DB_OK);
    assert_int_equal(dbtest_query_int(conn, sql_count_pending), 0);
}

static void check_order_service(db *conn)
{
    int64_t ids[3], first = 0;
    db_stmt *st;

    assert_int_equal(db_begin(conn), DB_OK);
    for (int i = 0; i < 3; i++) {
        st = dbtest_prepare(conn, sql_order_insert);
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
    st = dbtest_prepare(conn, sql_order_insert);
    assert_int_equal(db_bind_int64(st, 1, 7), DB_OK);
    assert_int_equal(db_bind_int64(st, 2, 0), DB_OK);
    assert_int_equal(db_bind_int64(st, 4, 1), DB_OK);
    assert_int_equal(db_step(st), DB_CONSTRAINT); /* amount > 0 */
    db_stmt_reset(st);

    st = dbtest_prepare(conn, sql_order_list);
    assert_int_equal(count_page(st, 2, 100, 0, &first), 3);
    assert_true(first == ids[2]);
    st = dbtest_prepare(conn, sql_order_list);
    assert_int_equal(db_bind_int64(st, 1, 7), DB_OK);
    assert_int_equal(count_page(st, 2, 100, 1, &first), 1);
    assert_true(first == ids[0]);
    st = dbtest_prepare(conn, sql_order_get);
    assert_int_equal(db_bind_int64(st, 1, ids[1]), DB_OK);
    assert_int_equal(count_rows(st, NULL), 1);
}

/* projection.c's apply_order, in one transaction; returns the invoice. */
static int64_t apply_order(db *conn, int64_t order_id, int64_t user_id, int year, int month,
                           int64_t cents)
{
    int64_t invoice_id = 0;
    db_stmt *st;

    st = dbtest_prepare(conn, sql_order_known);
    assert_int_equal(db_bind_int64(st, 1, order_id), DB_OK);
    if (count_rows(st, NULL) == 1)
        return 0;
    st = dbtest_prepare(conn, sql_invoice_ensure);
    assert_int_equal(db_bind_int64(st, 1, user_id), DB_OK);
    assert_int_equal(db_bind_int64(st, 2, year), DB_OK);
    assert_int_equal(db_bind_int64(st, 3, month), DB_OK);
    assert_int_equal(db_bind_int64(st, 4, 1700000000000), DB_OK);
    assert_int_equal(dbtest_run(st), DB_OK);
    st = dbtest_prepare(conn, sql_invoice_add);
    assert_int_equal(db_bind_int64(st, 1, cents), DB_OK);
    assert_int_equal(db_bind_int64(st, 2, 1700000000001), DB_OK);
    assert_int_equal(db_bind_int64(st, 3, user_id), DB_OK);
    assert_int_equal(db_bind_int64(st, 4, year), DB_OK);
    assert_int_equal(db_bind_int64(st, 5, month), DB_OK);
    assert_int_equal(db_step(st), DB_ROW);
    invoice_id = db_col_int64(st, 0);
    assert_int_equal(db_step(st), DB_DONE);
    db_stmt_reset(st);
    st = dbtest_prepare(conn, sql_line_insert);
    assert_int_equal(db_bind_int64(st, 1, order_id), DB_OK);
    assert_int_equal(db_bind_int64(st, 2, invoice_id), DB_OK);
    bind_text(st, 3, "socks");
    assert_int_equal(db_bind_int64(st, 4, cents), DB_OK);
    assert_int_equal(db_bind_int64(st, 5, 1700000000000 + order_id), DB_OK);
    assert_int_equal(dbtest_run(st), DB_OK);
    return invoice_id;
}

static void upsert_account(db *conn, int64_t user_id, int64_t account_id, const char *city)
{
    db_stmt *st = dbtest_prepare(conn, sql_customer_account);

    assert_int_equal(db_bind_int64(st, 1, user_id), DB_OK);
    assert_int_equal(db_bind_int64(st, 2, account_id), DB_OK);
    bind_text(st, 3, "1 Main St");
    bind_text(st, 4, NULL);
    bind_text(st, 5, city);
    bind_text(st, 6, "IL");
    bind_text(st, 7, "62701");
    assert_int_equal(dbtest_run(st), DB_OK);
}

static void check_invoice_service(db *conn)
{
    int64_t inv1, inv2;
    db_stmt *st;
    int n = 0;

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
    st = dbtest_prepare(conn, sql_customer_user);
    assert_int_equal(db_bind_int64(st, 1, 7), DB_OK);
    bind_text(st, 2, "Ann");
    bind_text(st, 3, "ann@example.com");
    assert_int_equal(dbtest_run(st), DB_OK);
    upsert_account(conn, 7, 20, "Newer");
    upsert_account(conn, 7, 10, "Older");
    st = dbtest_prepare(conn, sql_customer_user);
    assert_int_equal(db_bind_int64(st, 1, 7), DB_OK);
    bind_text(st, 2, "Ann B");
    bind_text(st, 3, "ann@example.com");
    assert_int_equal(dbtest_run(st), DB_OK);
    upsert_account(conn, 8, 30, "Elsewhere"); /* no invoice yet */

    st = dbtest_prepare(conn, sql_invoice_get);
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

    st = dbtest_prepare(conn, sql_invoice_lines);
    assert_int_equal(db_bind_int64(st, 1, inv1), DB_OK);
    while (db_step(st) == DB_ROW) {
        assert_int_equal(db_col_int64(st, 0), n + 1);
        n++;
    }
    db_stmt_reset(st);
    assert_int_equal(n, 2);

    /* The list: no filter, each filter, all three, paging. */
    st = dbtest_prepare(conn, sql_invoice_list);
    assert_int_equal(count_page(st, 4, 100, 0, NULL), 2);
    st = dbtest_prepare(conn, sql_invoice_list);
    assert_int_equal(db_bind_int64(st, 2, 2), DB_OK);
    assert_int_equal(count_page(st, 4, 100, 0, NULL), 1);
    st = dbtest_prepare(conn, sql_invoice_list);
    assert_int_equal(db_bind_int64(st, 1, 7), DB_OK);
    assert_int_equal(db_bind_int64(st, 2, 1), DB_OK);
    assert_int_equal(db_bind_int64(st, 3, 2024), DB_OK);
    assert_int_equal(count_page(st, 4, 100, 0, NULL), 1);
    st = dbtest_prepare(conn, sql_invoice_list);
    assert_int_equal(db_bind_int64(st, 3, 2023), DB_OK);
    assert_int_equal(count_page(st, 4, 100, 0, NULL), 0);
    st = dbtest_prepare(conn, sql_invoice_list);
    {
        int64_t first = 0;
        assert_int_equal(count_page(st, 4, 1, 1, &first), 1);
        assert_true(first == inv2); /* total DESC: 1250 then 5 */
    }
}

/* Opens database n and applies a service's migrations, as the service
 * does at start-up. */
static db *open_migrated(void **state, int n, const struct db_migration *list, size_t count)
{
    char url[DBTEST_URL_MAX];
    char err[DBTEST_ERR_MAX] = "";
    db *conn = dbtest_open_url(dbtest_url(state, n, NULL, url));

    if (db_migrate(conn, list, count, err, sizeof(err)) != DB_OK)
        fail_msg("db_migrate: %s", err);
    return conn;
}

/* Each service on a database of its own, as deployed. */
static void test_service_sql(void **state)
{
    db *conn = open_migrated(state, 0, user_migrations, user_migration_count);

    check_user_service(conn);
    check_outbox(conn);
    db_close(conn);
    conn = open_migrated(state, 1, order_migrations, order_migration_count);
    check_order_service(conn);
    db_close(conn);
    conn = open_migrated(state, 2, invoice_migrations, invoice_migration_count);
    check_invoice_service(conn);
    db_close(conn);
}

/* ---- event log positions ------------------------------------------------ */

static int64_t append_event(db *conn)
{
    struct outbox_event ev = {.type = "order.created", .data_json = "{}", .occurred_at_ms = 1};
    int64_t seq = 0;

    assert_int_equal(outbox_append_seq(conn, "order-service", &ev, &seq), DB_OK);
    return seq;
}

/* Two writers on one database (replicas): a takes the lower seq, b
 * commits first. The log follows the commits, not the seqs; a
 * transaction that appended nothing neither takes nor waits for the
 * position lock (a holds it while c runs: waiting would end in DB_BUSY
 * after the lock timeout). */
static void test_event_log_positions_follow_commits(void **state)
{
    db *a = open_migrated(state, 0, order_migrations, order_migration_count);
    db *b = open_migrated(state, 0, order_migrations, order_migration_count);
    db *c = open_migrated(state, 0, order_migrations, order_migration_count);
    int64_t seq_a, seq_b1, seq_b2;
    db_stmt *st;

    assert_int_equal(db_begin(a), DB_OK);
    seq_a = append_event(a);
    assert_int_equal(db_begin(b), DB_OK);
    seq_b1 = append_event(b);
    seq_b2 = append_event(b);
    assert_true(seq_a < seq_b1 && seq_b1 < seq_b2);

    assert_int_equal(outbox_assign_positions(b, "order-service"), DB_OK);
    assert_int_equal(db_commit(b), DB_OK);
    assert_int_equal(outbox_assign_positions(a, "order-service"), DB_OK); /* holds the lock */
    assert_int_equal(db_begin(c), DB_OK);
    assert_int_equal(outbox_assign_positions(c, "order-service"), DB_OK);
    assert_int_equal(db_commit(c), DB_OK);
    assert_int_equal(dbtest_query_int(c, "SELECT count(*) FROM event_log"), 2); /* a: not yet */
    assert_int_equal(db_commit(a), DB_OK);

    st = dbtest_prepare(c,
                        "SELECT o.seq, l.position FROM event_log l"
                        " JOIN outbox o ON o.position = l.position ORDER BY l.position");
    int64_t want[] = {seq_b1, seq_b2, seq_a}, last = 0;
    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        assert_int_equal(db_step(st), DB_ROW);
        assert_int_equal(db_col_int64(st, 0), want[i]);
        assert_true(db_col_int64(st, 1) > last);
        last = db_col_int64(st, 1);
    }
    assert_int_equal(db_step(st), DB_DONE);
    db_stmt_reset(st);
    assert_int_equal(dbtest_query_int(c, "SELECT count(*) FROM outbox WHERE position IS NULL"), 0);
    db_close(c);
    db_close(b);
    db_close(a);
}

/* ---- advisory locks ----------------------------------------------------- */

/* Session advisory locks pid holds on key (the one-key form). */
static int64_t locks_held(db *observer, int64_t pid, int64_t key)
{
    db_stmt *st = dbtest_prepare(observer,
                                 "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
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
    db *a = dbtest_open(state, 0, NULL);
    db *b = dbtest_open(state, 0, NULL);
    int64_t pid_a = dbtest_query_int(a, "SELECT pg_backend_pid()");

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
        int64_t deadline = util_monotonic_ns() + TERMINATE_WAIT_MS * 1000000LL;
        int taken;
        while ((taken = db_try_advisory_lock(a, key)) == 0 && util_monotonic_ns() < deadline)
            usleep(10 * 1000);
        assert_int_equal(taken, 1);
    }
    assert_int_equal(db_try_advisory_lock(a, other_key), 1);
    db_close(a);
}

/* ---- reconnecting ------------------------------------------------------- */

/* Terminates the backend pid from another connection and waits until it
 * is gone: out of pg_stat_activity, which it leaves just before it
 * exits, and then out of the process table, which closes its socket.
 * The server runs on this machine (TEST_PG_URL is a private cluster), so
 * its pids are ours to look at; kill(pid, 0) sends nothing. */
static void terminate_backend(db *admin, int64_t pid)
{
    db_stmt *st = dbtest_prepare(admin, "SELECT pg_terminate_backend($1)");
    int64_t deadline = util_monotonic_ns() + TERMINATE_WAIT_MS * 1000000LL;

    assert_int_equal(db_bind_int64(st, 1, pid), DB_OK);
    assert_int_equal(db_step(st), DB_ROW);
    assert_int_equal(db_col_int64(st, 0), 1);
    db_stmt_reset(st);
    for (;;) {
        st = dbtest_prepare(admin, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1");
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
    while (kill((pid_t)pid, 0) == 0 || errno != ESRCH) {
        if (util_monotonic_ns() > deadline)
            fail_msg("backend process %lld has not exited", (long long)pid);
        usleep(10 * 1000);
    }
}

static void test_reconnect_after_terminate(void **state)
{
    char url[DBTEST_URL_MAX];
    char err[DBTEST_ERR_MAX] = "";
    db *admin = dbtest_open(state, 0, NULL);
    db *plain = dbtest_open(state, 0, NULL);
    db_pool *pool;
    db *conns[2];
    int64_t pids[2];
    db_stmt *st;

    dbtest_exec(admin, "CREATE TABLE t (x BIGINT)");

    /* A plain connection: its next call says the server is gone, and no
     * transaction is left to roll back. */
    st = dbtest_prepare(plain, "INSERT INTO t VALUES ($1)");
    db_stmt_reset(st);
    terminate_backend(admin, dbtest_query_int(plain, "SELECT pg_backend_pid()"));
    st = dbtest_prepare(plain, "INSERT INTO t VALUES ($1)"); /* cached */
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
    pool = db_pool_open(dbtest_url(state, 0, NULL, url), 2, err, sizeof(err));
    if (!pool)
        fail_msg("db_pool_open: %s", err);
    for (int i = 0; i < 2; i++) {
        conns[i] = db_pool_acquire(pool);
        pids[i] = dbtest_query_int(conns[i], "SELECT pg_backend_pid()");
        assert_non_null(db_prepare(conns[i], "INSERT INTO t VALUES ($1)"));
    }
    for (int i = 0; i < 2; i++)
        db_pool_release(pool, conns[i]);
    for (int i = 0; i < 2; i++)
        terminate_backend(admin, pids[i]);
    for (int i = 0; i < 2; i++) {
        conns[i] = db_pool_acquire(pool);
        assert_int_equal(db_stmt_cache_size(conns[i]), 0);
        assert_true(dbtest_query_int(conns[i], "SELECT pg_backend_pid()") != pids[0]);
        assert_true(dbtest_query_int(conns[i], "SELECT pg_backend_pid()") != pids[1]);
        assert_int_equal(db_begin(conns[i]), DB_OK);
        st = dbtest_prepare(conns[i], "INSERT INTO t VALUES ($1)");
        assert_int_equal(db_bind_int64(st, 1, i), DB_OK);
        assert_int_equal(dbtest_run(st), DB_OK);
        assert_int_equal(db_commit(conns[i]), DB_OK);
    }
    for (int i = 0; i < 2; i++)
        db_pool_release(pool, conns[i]);

    /* Killed while in use: that request fails with DB_UNAVAILABLE, and
     * the next acquire reopens. */
    conns[0] = db_pool_acquire(pool);
    pids[0] = dbtest_query_int(conns[0], "SELECT pg_backend_pid()");
    assert_int_equal(db_begin(conns[0]), DB_OK);
    terminate_backend(admin, pids[0]);
    assert_int_equal(db_exec(conns[0], "INSERT INTO t VALUES (9)"), DB_UNAVAILABLE);
    db_pool_release(pool, conns[0]);
    conns[0] = db_pool_acquire(pool);
    assert_int_equal(db_ping(conns[0]), DB_OK);
    db_pool_release(pool, conns[0]);
    db_pool_close(pool);

    assert_int_equal(dbtest_query_int(admin, "SELECT count(*) FROM t"), 2);
    db_close(admin);
}


int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_and_session, dbtest_setup_postgres,
                                        dbtest_teardown),
        cmocka_unit_test_setup_teardown(test_bad_urls, dbtest_setup_postgres, dbtest_teardown),
        DBTEST_SHARED_TESTS(dbtest_setup_postgres, dbtest_teardown),
        cmocka_unit_test_setup_teardown(test_busy, dbtest_setup_postgres, dbtest_teardown),
        cmocka_unit_test_setup_teardown(test_service_sql, dbtest_setup_postgres, dbtest_teardown),
        cmocka_unit_test_setup_teardown(test_event_log_positions_follow_commits,
                                        dbtest_setup_postgres, dbtest_teardown),
        cmocka_unit_test_setup_teardown(test_advisory_locks, dbtest_setup_postgres,
                                        dbtest_teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_after_terminate, dbtest_setup_postgres,
                                        dbtest_teardown),
    };

    return cmocka_run_group_tests_name("db_pg", tests, NULL, NULL);
}
