/*
 * Unit tests for route: exact segments, {id} as a positive decimal integer,
 * HEAD answered by GET routes, the methods a known path allows (for 405
 * and OPTIONS), the first table's route before the second's, and paths
 * that match nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "route.h"
#include "util.h"

static void handler(http_request *req, void *app)
{
    (void)req;
    (void)app;
}

static const int first_data, second_data;

static const struct http_route probes[] = {
    {"GET", "/healthz", handler, &first_data, 0},
};

static const struct http_route service[] = {
    {"POST", "/svc/orders", handler, NULL, 0},
    {"GET", "/svc/orders", handler, NULL, 0},
    {"GET", "/svc/orders/{id}", handler, NULL, 0},
    {"POST", "/svc/dead-letters/{id}/redrive", handler, NULL, 0},
    {"GET", "/healthz", handler, &second_data, 0}, /* shadowed by the probes */
};

static const struct route_table tables[] = {
    {probes, ARRAY_LEN(probes)},
    {service, ARRAY_LEN(service)},
};

static struct route_match find(const char *method, const char *path)
{
    struct route_match m;
    route_find(tables, ARRAY_LEN(tables), method, path, &m);
    return m;
}

static void exact_paths(void **state)
{
    (void)state;
    struct route_match m = find("GET", "/svc/orders");
    assert_ptr_equal(m.route, &service[1]);
    m = find("POST", "/svc/orders");
    assert_ptr_equal(m.route, &service[0]);
    assert_string_equal(m.allow, "POST, GET, HEAD");
    /* Segments match whole, case and all. */
    assert_null(find("GET", "/svc/order").route);
    assert_null(find("GET", "/svc/orders/").route);
    assert_null(find("GET", "/SVC/orders").route);
    assert_null(find("GET", "svc/orders").route);
    assert_null(find("GET", "").route);
    assert_null(find("GET", "/svc//orders").route);
    assert_int_equal(find("GET", "/nothing").path_known, 0);
}

static void ids(void **state)
{
    (void)state;
    static const struct {
        const char *path;
        int64_t id;
    } good[] = {
        {"/svc/orders/1", 1},
        {"/svc/orders/42", 42},
        {"/svc/orders/9223372036854775807", INT64_MAX},
    };
    static const char *const bad[] = {
        "/svc/orders/0",
        "/svc/orders/01",
        "/svc/orders/-1",
        "/svc/orders/+1",
        "/svc/orders/1a",
        "/svc/orders/a",
        "/svc/orders/1.0",
        "/svc/orders/9223372036854775808",
        "/svc/orders/99999999999999999999999",
    };
    for (size_t i = 0; i < ARRAY_LEN(good); i++) {
        struct route_match m = find("GET", good[i].path);
        assert_ptr_equal(m.route, &service[2]);
        assert_int_equal(m.id, good[i].id);
    }
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct route_match m = find("GET", bad[i]);
        assert_null(m.route);
        assert_int_equal(m.path_known, 0);
        assert_int_equal(m.bad_id, 1); /* 404, saying why */
    }
    /* {id} in the middle of a pattern. */
    struct route_match m = find("POST", "/svc/dead-letters/7/redrive");
    assert_ptr_equal(m.route, &service[3]);
    assert_int_equal(m.id, 7);
    assert_null(find("POST", "/svc/dead-letters/7/redrives").route);
    assert_int_equal(find("POST", "/svc/dead-letters/7/redrives").bad_id, 0);
}

static void head_and_allow(void **state)
{
    (void)state;
    struct route_match m = find("HEAD", "/svc/orders/3");
    assert_ptr_equal(m.route, &service[2]); /* GET answers HEAD */
    m = find("DELETE", "/svc/orders/3");
    assert_null(m.route);
    assert_int_equal(m.path_known, 1); /* 405, not 404 */
    assert_string_equal(m.allow, "GET, HEAD");
    m = find("GET", "/svc/dead-letters/3/redrive");
    assert_null(m.route);
    assert_int_equal(m.path_known, 1);
    assert_string_equal(m.allow, "POST");
}

static void first_table_wins(void **state)
{
    (void)state;
    struct route_match m = find("GET", "/healthz");
    assert_ptr_equal(m.route, &probes[0]);
    assert_ptr_equal(m.route->data, &first_data);
    assert_string_equal(m.allow, "GET, HEAD");
}

static void long_paths_match_nothing(void **state)
{
    (void)state;
    char path[256] = "";
    for (int i = 0; i <= ROUTE_MAX_SEGMENTS; i++)
        strcat(path, "/svc");
    struct route_match m = find("GET", path);
    assert_null(m.route);
    assert_int_equal(m.path_known, 0);
}

static void allow_list(void **state)
{
    (void)state;
    char allow[ROUTE_ALLOW_MAX] = "";
    route_allow_add(allow, sizeof(allow), "GET");
    route_allow_add(allow, sizeof(allow), "HEAD");
    route_allow_add(allow, sizeof(allow), "GET");
    route_allow_add(allow, sizeof(allow), "OPTIONS");
    assert_string_equal(allow, "GET, HEAD, OPTIONS");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exact_paths),
        cmocka_unit_test(ids),
        cmocka_unit_test(head_and_allow),
        cmocka_unit_test(first_table_wins),
        cmocka_unit_test(long_paths_match_nothing),
        cmocka_unit_test(allow_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
