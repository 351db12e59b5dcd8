/*
 * Unit tests for fetch: the page URL of a writer's event log (a base URL
 * with or without a trailing '/', only http(s), bounded), and a GET that
 * gets no answer (a port nobody listens on, or cancelled) failing with a
 * reason rather than hanging.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fetch.h"

static void test_page_url(void **state)
{
    char url[FETCH_URL_MAX];
    (void)state;

    assert_int_equal(
        fetch_page_url(url, sizeof(url), "http://127.0.0.1:8081", "/system-api/events", 0, 1000),
        0);
    assert_string_equal(url, "http://127.0.0.1:8081/system-api/events?after=0&limit=1000");
    assert_int_equal(fetch_page_url(url, sizeof(url), "https://writer.example//",
                                    "/order-service/events", 9007199254740993LL, 7),
                     0);
    assert_string_equal(
        url, "https://writer.example/order-service/events?after=9007199254740993&limit=7");
}

static void test_page_url_refuses(void **state)
{
    char url[64];
    (void)state;

    assert_int_equal(fetch_page_url(url, sizeof(url), "ftp://h", "/e", 0, 1), -1);
    assert_int_equal(fetch_page_url(url, sizeof(url), "127.0.0.1:8081", "/e", 0, 1), -1);
    assert_int_equal(fetch_page_url(url, sizeof(url), "", "/e", 0, 1), -1);
    /* Does not fit: refused, not cut. */
    assert_int_equal(fetch_page_url(url, sizeof(url), "http://a-rather-long-host-name.example",
                                    "/order-service/events", 123456789, 1000),
                     -1);
}

/* A port of 127.0.0.1 that nobody listens on: bound, then closed. */
static int closed_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void test_get_unreachable(void **state)
{
    char url[FETCH_URL_MAX], err[FETCH_ERROR_MAX];
    struct fetch_answer a;
    (void)state;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/system-api/events", closed_port());
    err[0] = '\0';
    assert_int_equal(fetch_get(url, "secret-token", NULL, &a, err, sizeof(err)), -1);
    assert_null(a.body);
    assert_int_equal(a.status, 0);
    assert_true(err[0] != '\0');
    assert_null(strstr(err, "secret-token"));
}

static void test_get_cancelled(void **state)
{
    char url[FETCH_URL_MAX], err[FETCH_ERROR_MAX];
    struct fetch_answer a;
    atomic_int cancel = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(addr);
    (void)state;

    /* A listener that never answers: only the cancel flag ends the GET
     * before its timeout. */
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/order-service/events", ntohs(addr.sin_port));
    assert_int_equal(fetch_get(url, NULL, &cancel, &a, err, sizeof(err)), -1);
    assert_string_equal(err, "cancelled");
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_page_url),
        cmocka_unit_test(test_page_url_refuses),
        cmocka_unit_test(test_get_unreachable),
        cmocka_unit_test(test_get_cancelled),
    };
    char err[FETCH_ERROR_MAX];
    assert_int_equal(fetch_global_init(err, sizeof(err)), 0);
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    fetch_global_cleanup();
    return failed;
}
