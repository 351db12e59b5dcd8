/*
 * Unit tests of the create path (src/lib/create.c) on both backends, with
 * the user service's real create spec and migrations, served over HTTP
 * on loopback by the real server and group committer: a create's rows,
 * its outbox event and its answer (Location, X-Consistency-Token), a
 * batch, a bad item that writes nothing, a conflict found while inserting
 * that takes the whole batch back, and how an Idempotency-Key replays a
 * create, refuses another body and is not kept by a failed create. Also
 * (on SQLite: it is the HTTP layer's) that an answer over jsonw's cap is
 * a 500.
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

#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "create.h"
#include "db.h"
#include "dbtest.h"
#include "groupcommit.h"
#include "http.h"
#include "route.h"
#include "service.h"
#include "user/user_service.h"
#include "util.h"

#define PATH "/system-api/users"
#define URL_MAX 128
#define HEADER_MAX 256
#define MAX_GROUP 16
#define CLIENT_TIMEOUT_S 60L

/* One test's service: its database, committer and HTTP server. */
struct fixture {
    void *db_state; /* dbtest's */
    db *conn;       /* for the test's own queries */
    struct config cfg;
    struct service svc;
    http_server *srv;
    char url[URL_MAX];
};

/* An answer as the client saw it. */
struct answer {
    long status;
    char *body;
    size_t body_len;
    char location[HEADER_MAX];
    char token[HEADER_MAX];
    char replayed[HEADER_MAX];
    json_t *json;
};

#define HUGE_PATH "/system-api/huge"
#define HUGE_CHUNK (1024 * 1024)

/* Writes an answer past JSONW_MAX_BYTES (jsonw.h), as a runaway bug
 * would, and replies with it. */
static void handle_huge(http_request *req, void *app)
{
    char *chunk = xmalloc(HUGE_CHUNK);
    struct jsonw w;
    (void)app;

    memset(chunk, 'h', HUGE_CHUNK);
    jsonw_init(&w);
    jsonw_array_begin(&w);
    for (size_t i = 0; i <= JSONW_MAX_BYTES / HUGE_CHUNK; i++)
        jsonw_string_len(&w, chunk, HUGE_CHUNK);
    jsonw_array_end(&w);
    http_reply(req, 200, &w);
    jsonw_free(&w);
    free(chunk);
}

typedef void handle_huge_data; /* no route data (route.h) */

static const struct http_route routes[] = {
    ROUTE("POST", PATH, create_handle, &user_create, 0),
    ROUTE("POST", HUGE_PATH, handle_huge, NULL, 0),
};

/* A port free at the moment (the kernel's choice for port 0). */
static int free_port(void)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t len = sizeof(addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    close(fd);
    return ntohs(addr.sin_port);
}

static int setup(void **state, int (*db_setup)(void **))
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    char url[DBTEST_URL_MAX], err[DBTEST_ERR_MAX] = "", port[16];

    if (db_setup(&f->db_state) != 0) {
        free(f);
        return -1;
    }
    *state = f;
    f->conn = dbtest_open(&f->db_state, 0, NULL);
    if (db_migrate(f->conn, user_migrations, user_migration_count, err, sizeof(err)) != DB_OK)
        fail_msg("db_migrate: %s", err);
    snprintf(port, sizeof(port), "%d", free_port());
    char *argv[] = {(char *)"test",           (char *)"--port", port,
                    (char *)"--http-threads", (char *)"2",      NULL};
    config_load(&f->cfg, "user-service", 8081, (int)ARRAY_LEN(argv) - 1, argv);
    f->svc.cfg = &f->cfg;
    f->svc.gc =
        groupcommit_start(dbtest_url(&f->db_state, 0, NULL, url), MAX_GROUP, err, sizeof(err));
    if (!f->svc.gc)
        fail_msg("groupcommit_start: %s", err);
    struct http_server_config conf = {
        .cfg = &f->cfg, .routes = routes, .route_count = ARRAY_LEN(routes), .app = &f->svc};
    f->srv = http_server_start(&conf, err, sizeof(err));
    if (!f->srv)
        fail_msg("http_server_start: %s", err);
    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%s", port);
    return 0;
}

static int setup_sqlite(void **state)
{
    return setup(state, dbtest_setup_sqlite);
}

static int setup_postgres(void **state)
{
    return setup(state, dbtest_setup_postgres);
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    http_server_stop(f->srv);
    groupcommit_stop(f->svc.gc);
    db_close(f->conn);
    config_free(&f->cfg);
    int rc = dbtest_teardown(&f->db_state);
    free(f);
    return rc;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct answer *a = arg;
    a->body = xrealloc(a->body, a->body_len + size * n + 1);
    memcpy(a->body + a->body_len, data, size * n);
    a->body_len += size * n;
    a->body[a->body_len] = '\0';
    return size * n;
}

/* Copies the value of header name into out when line is that header. */
static void take_header(const char *line, size_t len, const char *name, char *out)
{
    size_t nlen = strlen(name);
    if (len <= nlen + 1 || strncasecmp(line, name, nlen) != 0 || line[nlen] != ':')
        return;
    const char *v = line + nlen + 1;
    const char *end = line + len;
    while (v < end && *v == ' ')
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n'))
        end--;
    snprintf(out, HEADER_MAX, "%.*s", (int)(end - v), v);
}

static size_t on_header(char *line, size_t size, size_t n, void *arg)
{
    struct answer *a = arg;
    take_header(line, size * n, "Location", a->location);
    take_header(line, size * n, "X-Consistency-Token", a->token);
    take_header(line, size * n, "Idempotent-Replayed", a->replayed);
    return size * n;
}

/* POSTs body (with an Idempotency-Key when key is not NULL); the answer's
 * body parsed into a->json. */
static void post_to(const struct fixture *f, const char *path, const char *body, const char *key,
                    struct answer *a)
{
    char url[URL_MAX + sizeof(HUGE_PATH) + sizeof(PATH)];
    CURL *curl = curl_easy_init();
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    char key_header[HEADER_MAX];
    json_error_t jerr;

    memset(a, 0, sizeof(*a));
    assert_non_null(curl);
    if (key) {
        snprintf(key_header, sizeof(key_header), "Idempotency-Key: %s", key);
        headers = curl_slist_append(headers, key_header);
    }
    snprintf(url, sizeof(url), "%s%s", f->url, path);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, a);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, CLIENT_TIMEOUT_S);
    curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
    CURLcode rc = curl_easy_perform(curl);
    if (rc != CURLE_OK)
        fail_msg("POST %s: %s", url, curl_easy_strerror(rc));
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &a->status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    a->json = json_loadb(a->body ? a->body : "", a->body_len, 0, &jerr);
    if (!a->json)
        fail_msg("answer is not JSON (%s): %s", jerr.text, a->body ? a->body : "");
}

static void post(const struct fixture *f, const char *body, const char *key, struct answer *a)
{
    post_to(f, PATH, body, key, a);
}

static void answer_free(struct answer *a)
{
    free(a->body);
    json_decref(a->json);
    memset(a, 0, sizeof(*a));
}

static int64_t query_int(const struct fixture *f, const char *sql)
{
    return dbtest_query_int(f->conn, sql);
}

/* The error answer's code and index (-1 when it has none). */
static void expect_error(const struct answer *a, long status, const char *code, long index)
{
    json_t *err = json_object_get(a->json, "error");
    if (a->status != status || !err)
        fail_msg("expected %ld, got %ld: %s", status, a->status, a->body);
    assert_string_equal(json_string_value(json_object_get(err, "code")), code);
    json_t *idx = json_object_get(err, "index");
    if (index < 0)
        assert_null(idx);
    else
        assert_int_equal(json_integer_value(idx), index);
}

/* One create: its row, its event (the answer's object as its data) and
 * its answer. */
static void test_one_create(void **state)
{
    struct fixture *f = *state;
    struct answer a;
    char expect_location[HEADER_MAX], buf[4096];

    post(f, "{\"name\": \"Ann\", \"email\": \"ann@example.com\"}", NULL, &a);
    if (a.status != 201)
        fail_msg("expected 201, got %ld: %s", a.status, a.body);
    json_int_t id = json_integer_value(json_object_get(a.json, "id"));
    assert_true(id > 0);
    assert_string_equal(json_string_value(json_object_get(a.json, "email")), "ann@example.com");
    snprintf(expect_location, sizeof(expect_location), PATH "/%lld", (long long)id);
    assert_string_equal(a.location, expect_location);
    assert_true(strlen(a.token) > 0);
    assert_string_equal(a.replayed, "");

    assert_int_equal(query_int(f, "SELECT count(*) FROM users"), 1);
    assert_int_equal(query_int(f, "SELECT id FROM users"), id);
    assert_int_equal(query_int(f, "SELECT count(*) FROM outbox"), 1);
    dbtest_query_text(f->conn, "SELECT type FROM outbox", buf, sizeof(buf));
    assert_string_equal(buf, user_create.event_type);
    dbtest_query_text(f->conn, "SELECT body FROM outbox", buf, sizeof(buf));
    json_t *event = json_loads(buf, 0, NULL);
    assert_non_null(event);
    /* The event's envelope: its type and source, the answer as its data. */
    assert_string_equal(json_string_value(json_object_get(event, "type")), user_create.event_type);
    assert_string_equal(json_string_value(json_object_get(event, "source")), "user-service");
    assert_true(json_equal(json_object_get(event, "data"), a.json));
    json_decref(event);
    answer_free(&a);
}

/* A batch: an array answered in order, no Location, a row and an event
 * per item. */
static void test_batch(void **state)
{
    struct fixture *f = *state;
    struct answer a;

    post(f,
         "[{\"name\": \"B1\", \"email\": \"b1@example.com\"},"
         " {\"name\": \"B2\", \"email\": \"b2@example.com\"},"
         " {\"name\": \"B3\", \"email\": \"b3@example.com\"}]",
         NULL, &a);
    if (a.status != 201)
        fail_msg("expected 201, got %ld: %s", a.status, a.body);
    assert_true(json_is_array(a.json));
    assert_int_equal(json_array_size(a.json), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(a.json, 2), "email")),
                        "b3@example.com");
    assert_string_equal(a.location, "");
    assert_true(strlen(a.token) > 0);
    assert_int_equal(query_int(f, "SELECT count(*) FROM users"), 3);
    assert_int_equal(query_int(f, "SELECT count(*) FROM outbox"), 3);
    answer_free(&a);
}

/* A bad item is found before anything is written; its index is named. */
static void test_bad_item_writes_nothing(void **state)
{
    struct fixture *f = *state;
    struct answer a;

    post(f,
         "[{\"name\": \"C1\", \"email\": \"c1@example.com\"},"
         " {\"name\": \"C2\"}]",
         NULL, &a);
    expect_error(&a, 422, "missing_field", 1);
    answer_free(&a);
    post(f, "{\"name\": \"C3\", \"email\": 5}", NULL, &a);
    expect_error(&a, 422, "invalid_field", -1);
    answer_free(&a);
    assert_int_equal(query_int(f, "SELECT count(*) FROM users"), 0);
    assert_int_equal(query_int(f, "SELECT count(*) FROM outbox"), 0);
}

/* A conflict found only by the insert (an email taken) rolls the whole
 * batch back, its events too. */
static void test_conflict_takes_batch_back(void **state)
{
    struct fixture *f = *state;
    struct answer a;

    post(f, "{\"name\": \"D0\", \"email\": \"d0@example.com\"}", NULL, &a);
    assert_int_equal(a.status, 201);
    answer_free(&a);
    post(f,
         "[{\"name\": \"D1\", \"email\": \"d1@example.com\"},"
         " {\"name\": \"D2\", \"email\": \"D0@example.com\"}]",
         NULL, &a);
    expect_error(&a, 409, "conflict", 1);
    answer_free(&a);
    assert_int_equal(query_int(f, "SELECT count(*) FROM users"), 1);
    assert_int_equal(query_int(f, "SELECT count(*) FROM outbox"), 1);
}

/* The same key and body: the stored 201 again, headers and all, and
 * nothing written twice. Another body under that key is refused. */
static void test_idempotent_replay(void **state)
{
    struct fixture *f = *state;
    struct answer first, again, other;
    const char *body = "{\"name\": \"E\", \"email\": \"e@example.com\"}";

    post(f, body, "key-e-1", &first);
    assert_int_equal(first.status, 201);
    assert_string_equal(first.replayed, "");
    post(f, body, "key-e-1", &again);
    assert_int_equal(again.status, 201);
    assert_string_equal(again.replayed, "true");
    assert_string_equal(again.location, first.location);
    assert_string_equal(again.token, first.token);
    assert_true(json_equal(again.json, first.json));
    post(f, "{\"name\": \"E2\", \"email\": \"e2@example.com\"}", "key-e-1", &other);
    expect_error(&other, 422, "idempotency_key_mismatch", -1);
    assert_int_equal(query_int(f, "SELECT count(*) FROM users"), 1);
    assert_int_equal(query_int(f, "SELECT count(*) FROM outbox"), 1);
    answer_free(&first);
    answer_free(&again);
    answer_free(&other);
}

/* A create that fails keeps no key: once the conflict is gone, the same
 * key creates. */
static void test_failed_create_keeps_no_key(void **state)
{
    struct fixture *f = *state;
    struct answer a;
    const char *body = "{\"name\": \"G\", \"email\": \"g@example.com\"}";

    post(f, body, NULL, &a);
    assert_int_equal(a.status, 201);
    answer_free(&a);
    post(f, body, "key-g-1", &a);
    expect_error(&a, 409, "conflict", -1);
    answer_free(&a);
    assert_int_equal(query_int(f, "SELECT count(*) FROM idempotency_keys"), 0);
    dbtest_exec(f->conn, "DELETE FROM users");
    post(f, body, "key-g-1", &a);
    assert_int_equal(a.status, 201);
    assert_string_equal(a.replayed, "");
    answer_free(&a);
    assert_int_equal(query_int(f, "SELECT count(*) FROM users"), 1);
    assert_int_equal(query_int(f, "SELECT count(*) FROM idempotency_keys"), 1);
}

/* An answer that outgrows JSONW_MAX_BYTES is a 500, not a runaway
 * allocation; the server goes on answering. */
static void test_answer_over_cap_is_500(void **state)
{
    struct fixture *f = *state;
    struct answer a;

    post_to(f, HUGE_PATH, "{}", NULL, &a);
    expect_error(&a, 500, "internal", -1);
    answer_free(&a);
    post(f, "{\"name\": \"H\", \"email\": \"h@example.com\"}", NULL, &a);
    assert_int_equal(a.status, 201);
    answer_free(&a);
}

/* The create path's own setups (an HTTP server and committer). */
#define BOTH(test) DBTEST_BOTH_WITH(test, setup_sqlite, setup_postgres, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_one_create),
        BOTH(test_batch),
        BOTH(test_bad_item_writes_nothing),
        BOTH(test_conflict_takes_batch_back),
        BOTH(test_idempotent_replay),
        BOTH(test_failed_create_keeps_no_key),
        cmocka_unit_test_setup_teardown(test_answer_over_cap_is_500, setup_sqlite, teardown),
    };

    curl_global_init(CURL_GLOBAL_DEFAULT);
    int failed = cmocka_run_group_tests_name("create", tests, NULL, NULL);
    curl_global_cleanup();
    return failed;
}
