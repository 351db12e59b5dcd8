/* idempotency: claim, store, replay, mismatch, expiry and sweep of keys,
 * on SQLite and on the PostgreSQL of TEST_PG_URL (dbtest.h); a key held
 * by another open transaction (PostgreSQL); and the group commit's chore
 * that the sweep runs as. The header rules and the fingerprint need a
 * live HTTP request: tests/e2e/test_idempotency.py covers them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "dbtest.h"
#include "groupcommit.h"
#include "idempotency.h"
#include "util.h"

#define SERVICE "order-service"
#define TTL_S 3600
#define CHORE_WAIT_US 5000000 /* bound on waiting for the chore to run */
#define POLL_US 10000
#define BACKLOG_BOUND_US 2000000 /* 10 periods of the backlog test */

static db *open_keys(void **state)
{
    db *conn = dbtest_open(state, 0, NULL);
    dbtest_exec(conn, dbtest_kind(state) == DB_KIND_POSTGRES ? idempotency_schema_postgres
                                                             : idempotency_schema_sqlite);
    return conn;
}

static struct idempotency_request request(const char *key, const char *fingerprint)
{
    struct idempotency_request r = {.present = 1};
    util_strlcpy(r.key, key, sizeof(r.key));
    util_strlcpy(r.fingerprint, fingerprint, sizeof(r.fingerprint));
    return r;
}

/* Claims in a transaction of its own (committed); returns the claim's rc. */
static int claim(db *conn, const char *service, const struct idempotency_request *r, int *replayed,
                 struct idempotency_answer *a, struct api_error *err)
{
    assert_int_equal(db_begin(conn), DB_OK);
    int rc = idempotency_claim(conn, service, TTL_S, r, replayed, a, err);
    if (rc == DB_OK)
        assert_int_equal(db_commit(conn), DB_OK);
    else
        db_rollback(conn);
    return rc;
}

static void store(db *conn, const char *service, const struct idempotency_request *r,
                  const char *body)
{
    struct idempotency_answer a = {.status = 201};
    struct api_error err;

    api_error_clear(&err);
    idempotency_answer_add_header(&a, "Location", "/order-service/orders/7");
    idempotency_answer_add_header(&a, "X-Consistency-Token", "tok-1.2_3~");
    a.body = xstrdup(body);
    a.body_len = strlen(body);
    assert_int_equal(db_begin(conn), DB_OK);
    assert_int_equal(idempotency_store(conn, service, r, &a, &err), DB_OK);
    assert_int_equal(db_commit(conn), DB_OK);
    idempotency_answer_free(&a);
}

static void test_store_then_replay(void **state)
{
    db *conn = open_keys(state);
    struct idempotency_request r = request("key 1", "f1");
    struct idempotency_answer a = {0};
    struct api_error err;
    int replayed = -1;
    const char body[] = "{\"id\": 7,  \"amount\": 50.00, \"name\": \"caf\xc3\xa9\"}";

    api_error_clear(&err);
    assert_int_equal(claim(conn, SERVICE, &r, &replayed, &a, &err), DB_OK);
    assert_int_equal(replayed, 0);
    store(conn, SERVICE, &r, body);

    assert_int_equal(claim(conn, SERVICE, &r, &replayed, &a, &err), DB_OK);
    assert_int_equal(replayed, 1);
    assert_int_equal(a.status, 201);
    assert_int_equal(a.body_len, strlen(body));
    assert_memory_equal(a.body, body, a.body_len);
    assert_int_equal(a.header_count, 2);
    assert_string_equal(a.headers[0].name, "Location");
    assert_string_equal(a.headers[0].value, "/order-service/orders/7");
    assert_string_equal(a.headers[1].name, "X-Consistency-Token");
    assert_string_equal(a.headers[1].value, "tok-1.2_3~");
    idempotency_answer_free(&a);

    /* Another service's key of the same name is another key. */
    assert_int_equal(claim(conn, "user-service", &r, &replayed, &a, &err), DB_OK);
    assert_int_equal(replayed, 0);
    db_close(conn);
}

static void test_mismatch(void **state)
{
    db *conn = open_keys(state);
    struct idempotency_request r = request("k", "f1"), other = request("k", "f2");
    struct idempotency_answer a = {0};
    struct api_error err;
    int replayed = -1;

    api_error_clear(&err);
    store(conn, SERVICE, &r, "{}");
    assert_int_equal(claim(conn, SERVICE, &other, &replayed, &a, &err), DB_CONSTRAINT);
    assert_int_equal(err.status, 422);
    assert_string_equal(err.code, "idempotency_key_mismatch");
    assert_string_equal(err.field, "");
    assert_null(a.body);
    db_close(conn);
}

/* A key past its TTL counts as new (and is deleted by the claim); the
 * sweep deletes expired keys in batches and leaves live ones. */
static void test_expiry_and_sweep(void **state)
{
    db *conn = open_keys(state);
    struct idempotency_request old = request("old", "f1");
    struct idempotency_answer a = {0};
    struct api_error err;
    int replayed = -1;
    char key[16];

    api_error_clear(&err);
    store(conn, SERVICE, &old, "{}");
    dbtest_exec(conn, "UPDATE idempotency_keys SET created_at = created_at - 3600000");
    assert_int_equal(claim(conn, SERVICE, &old, &replayed, &a, &err), DB_OK);
    assert_int_equal(replayed, 0);
    assert_int_equal(dbtest_query_int(conn, "SELECT count(*) FROM idempotency_keys"), 0);

    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof(key), "exp-%d", i);
        struct idempotency_request r = request(key, "f");
        store(conn, SERVICE, &r, "{}");
    }
    dbtest_exec(conn, "UPDATE idempotency_keys SET created_at = created_at - 3600000");
    store(conn, SERVICE, &old, "{}");        /* live */
    store(conn, "user-service", &old, "{}"); /* live, and another service's */
    dbtest_exec(conn, "UPDATE idempotency_keys SET created_at = 0 WHERE service = 'user-service'");

    int swept[4];
    for (int i = 0; i < 4; i++) {
        assert_int_equal(db_begin(conn), DB_OK);
        swept[i] = idempotency_sweep(conn, SERVICE, TTL_S, 2);
        assert_int_equal(db_commit(conn), DB_OK);
    }
    assert_int_equal(swept[0], 2);
    assert_int_equal(swept[1], 2);
    assert_int_equal(swept[2], 1);
    assert_int_equal(swept[3], 0);
    assert_int_equal(dbtest_query_int(conn, "SELECT count(*) FROM idempotency_keys"), 2);
    assert_int_equal(claim(conn, SERVICE, &old, &replayed, &a, &err), DB_OK);
    assert_int_equal(replayed, 1);
    idempotency_answer_free(&a);
    db_close(conn);
}

/* Two replicas: the key is taken while the first transaction is open,
 * without waiting for it; once it committed, the second replays. */
static void test_key_held_by_another_transaction(void **state)
{
    db *a = open_keys(state), *b = dbtest_open(state, 0, NULL);
    struct idempotency_request r = request("busy", "f1");
    struct idempotency_answer ans = {0};
    struct api_error err;
    int replayed = -1;

    api_error_clear(&err);
    assert_int_equal(db_begin(a), DB_OK);
    assert_int_equal(idempotency_claim(a, SERVICE, TTL_S, &r, &replayed, &ans, &err), DB_OK);
    assert_int_equal(replayed, 0);
    /* Re-entrant in the same transaction (a group's second duplicate). */
    assert_int_equal(idempotency_claim(a, SERVICE, TTL_S, &r, &replayed, &ans, &err), DB_OK);

    assert_int_equal(claim(b, SERVICE, &r, &replayed, &ans, &err), DB_CONSTRAINT);
    assert_int_equal(err.status, 409);
    assert_string_equal(err.code, "idempotency_key_in_use");

    struct idempotency_answer stored = {
        .status = 201, .body = xstrdup("{\"id\":1}"), .body_len = 8};
    assert_int_equal(idempotency_store(a, SERVICE, &r, &stored, &err), DB_OK);
    assert_int_equal(db_commit(a), DB_OK);
    idempotency_answer_free(&stored);

    api_error_clear(&err);
    assert_int_equal(claim(b, SERVICE, &r, &replayed, &ans, &err), DB_OK);
    assert_int_equal(replayed, 1);
    assert_string_equal(ans.body, "{\"id\":1}");
    idempotency_answer_free(&ans);
    db_close(a);
    db_close(b);
}

/* ---- the group commit's chore ---- */

struct chore_state {
    int runs;    /* written by the committer thread */
    int backlog; /* batches still to do */
};

static int chore(db *conn, void *arg)
{
    struct chore_state *cs = arg;
    (void)conn;
    __atomic_add_fetch(&cs->runs, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&cs->backlog, __ATOMIC_SEQ_CST) > 0) {
        __atomic_sub_fetch(&cs->backlog, 1, __ATOMIC_SEQ_CST);
        return 10; /* a full batch: more to do */
    }
    return 0;
}

/* Whether the chore ran n times within bound_us. */
static int wait_runs(struct chore_state *cs, int n, int bound_us)
{
    for (int waited = 0; waited < bound_us; waited += POLL_US) {
        if (__atomic_load_n(&cs->runs, __ATOMIC_SEQ_CST) >= n)
            return 1;
        usleep(POLL_US);
    }
    return 0;
}

/* Idle, the chore runs every period; while it reports full batches it
 * runs back to back: 21 runs of a 200 ms period take far less than the
 * 4.2 s they would take one period apart. */
static void test_chore_runs_idle_and_drains_a_backlog(void **state)
{
    char url[DBTEST_URL_MAX], err[DBTEST_ERR_MAX];
    struct chore_state idle = {0, 0}, backlog = {0, 20};

    dbtest_url(state, 0, NULL, url);
    groupcommit *gc = groupcommit_start(url, 8, err, sizeof(err));
    assert_non_null(gc);
    struct groupcommit_chore c = {.run = chore, .arg = &idle, .period_ms = 50, .batch = 10};
    groupcommit_set_chore(gc, &c);
    assert_true(wait_runs(&idle, 3, CHORE_WAIT_US));
    groupcommit_stop(gc);

    gc = groupcommit_start(url, 8, err, sizeof(err));
    assert_non_null(gc);
    c = (struct groupcommit_chore){.run = chore, .arg = &backlog, .period_ms = 200, .batch = 10};
    groupcommit_set_chore(gc, &c);
    assert_true(wait_runs(&backlog, 21, BACKLOG_BOUND_US));
    groupcommit_stop(gc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DBTEST_BOTH(test_store_then_replay),
        DBTEST_BOTH(test_mismatch),
        DBTEST_BOTH(test_expiry_and_sweep),
        cmocka_unit_test_setup_teardown(test_key_held_by_another_transaction, dbtest_setup_postgres,
                                        dbtest_teardown),
        cmocka_unit_test_setup_teardown(test_chore_runs_idle_and_drains_a_backlog,
                                        dbtest_setup_sqlite, dbtest_teardown),
    };

    return cmocka_run_group_tests_name("idempotency", tests, NULL, NULL);
}
