/*
 * Unit tests for log: password redaction, level names, and the shape of
 * the lines written to stderr (captured through a temporary file).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "timeutil.h"
#include "util.h"

static void expect_redacted(const char *url, const char *expected)
{
    char buf[256];
    log_redact_url(url, buf, sizeof buf);
    if (strcmp(buf, expected) != 0)
        fail_msg("\"%s\": expected \"%s\", got \"%s\"", url, expected, buf);
}

static void test_redacts_userinfo_password(void **state)
{
    (void)state;
    expect_redacted("amqp://guest:guest@127.0.0.1:5672/", "amqp://guest:***@127.0.0.1:5672/");
    expect_redacted("amqp://guest:guest@127.0.0.1:5672", "amqp://guest:***@127.0.0.1:5672");
    expect_redacted("postgresql://app:s3cr%40t@db:5432/orders?sslmode=disable",
                    "postgresql://app:***@db:5432/orders?sslmode=disable");
    /* An unescaped '@' in the password: the last '@' ends the userinfo. */
    expect_redacted("amqp://u:p@ss@host/vhost", "amqp://u:***@host/vhost");
    /* A ':' inside the password stays hidden too. */
    expect_redacted("amqp://u:a:b@host/", "amqp://u:***@host/");
}

static void test_leaves_urls_without_password(void **state)
{
    (void)state;
    expect_redacted("amqp://guest@127.0.0.1:5672/", "amqp://guest@127.0.0.1:5672/");
    expect_redacted("amqp://127.0.0.1:5672/", "amqp://127.0.0.1:5672/");
    expect_redacted("amqp://u:@host/", "amqp://u:@host/");
    expect_redacted("http://host:8080/path@x:y", "http://host:8080/path@x:y");
    expect_redacted("http://host/?q=a:b@c", "http://host/?q=a:b@c");
    expect_redacted("var/orders.db", "var/orders.db");
    expect_redacted("", "");
}

static void test_redacts_password_parameters(void **state)
{
    (void)state;
    expect_redacted("host=db user=app password=secret dbname=orders",
                    "host=db user=app password=*** dbname=orders");
    expect_redacted("password=secret", "password=***");
    expect_redacted("host=db password='se cr\\'et' dbname=x", "host=db password=*** dbname=x");
    expect_redacted("postgresql://db/app?user=a&password=s3cret&sslmode=require",
                    "postgresql://db/app?user=a&password=***&sslmode=require");
    expect_redacted("postgresql://a:b@db/app?PASSWORD=c", "postgresql://a:***@db/app?PASSWORD=***");
    expect_redacted("host=db password= dbname=x", "host=db password= dbname=x");
}

/* Whatever the buffer size, the output is a terminated prefix of the full
 * redacted text and never holds a piece of the password. */
static void test_redaction_in_small_buffers(void **state)
{
    (void)state;
    const char *url = "amqp://guest:hunter2@127.0.0.1:5672/?password=hunter2";
    const char *full = "amqp://guest:***@127.0.0.1:5672/?password=***";
    char buf[128];

    for (size_t size = 1; size <= strlen(full) + 2; size++) {
        memset(buf, 'x', sizeof buf);
        log_redact_url(url, buf, size);
        size_t len = strlen(buf);
        assert_true(len < size);
        assert_memory_equal(buf, full, len);
        assert_null(strstr(buf, "hun"));
    }
    buf[0] = 'x';
    log_redact_url(url, buf, 0);
    assert_int_equal(buf[0], 'x');
    log_redact_url(NULL, buf, sizeof buf);
    assert_string_equal(buf, "");
}

/* A cluster's URL list hides every node's password. */
static void test_redacts_each_url_of_a_list(void **state)
{
    char buf[256];
    (void)state;
    log_redact_url("amqp://u:p1@h1:1/,amqp://v:p2@h2:2/,amqp://h3/", buf, sizeof(buf));
    assert_string_equal(buf, "amqp://u:***@h1:1/,amqp://v:***@h2:2/,amqp://h3/");
    assert_null(strstr(buf, "p1"));
    assert_null(strstr(buf, "p2"));
}

static void test_level_parse(void **state)
{
    (void)state;
    enum log_level level = LOG_LVL_ERROR;
    assert_int_equal(log_level_parse("debug", &level), 0);
    assert_int_equal(level, LOG_LVL_DEBUG);
    assert_int_equal(log_level_parse("info", &level), 0);
    assert_int_equal(level, LOG_LVL_INFO);
    assert_int_equal(log_level_parse("WARN", &level), 0);
    assert_int_equal(level, LOG_LVL_WARN);
    assert_int_equal(log_level_parse("error", &level), 0);
    assert_int_equal(level, LOG_LVL_ERROR);
    assert_int_equal(log_level_parse("verbose", &level), -1);
    assert_int_equal(log_level_parse("", &level), -1);
    assert_int_equal(log_level_parse(NULL, &level), -1);
    assert_int_equal(level, LOG_LVL_ERROR);
}

/* Points stderr at a fresh temporary file; capture_end() returns what was
 * written (caller frees) and puts stderr back. */
static int saved_stderr = -1;
static FILE *capture_file;

static void capture_begin(void)
{
    capture_file = tmpfile();
    assert_non_null(capture_file);
    fflush(stderr);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(saved_stderr >= 0);
    assert_true(dup2(fileno(capture_file), STDERR_FILENO) >= 0);
}

static char *capture_end(size_t *len)
{
    assert_true(dup2(saved_stderr, STDERR_FILENO) >= 0);
    close(saved_stderr);
    assert_int_equal(fseek(capture_file, 0, SEEK_END), 0);
    long size = ftell(capture_file);
    assert_true(size >= 0);
    rewind(capture_file);
    char *text = xmalloc((size_t)size + 1);
    *len = fread(text, 1, (size_t)size, capture_file);
    assert_int_equal(*len, (size_t)size);
    text[*len] = '\0';
    fclose(capture_file);
    return text;
}

/* Checks "<time> <LEVEL> <service> rid=<rid> " at the start of line and
 * returns the message after it. */
static const char *check_prefix(const char *line, const char *level, const char *rid)
{
    char expected[256];
    int64_t ms = 0;
    int64_t now = util_now_ms();

    assert_int_equal(timeutil_parse_rfc3339(line, 24, &ms), 0);
    assert_true(ms <= now && ms > now - 60000);
    snprintf(expected, sizeof expected, " %s test-service rid=%s ", level, rid);
    assert_memory_equal(line + 24, expected, strlen(expected));
    return line + 24 + strlen(expected);
}

static void test_line_format(void **state)
{
    (void)state;
    size_t len;

    log_init("test-service", LOG_LVL_INFO);
    capture_begin();
    errno = ENOENT;
    log_info("ab12", "order %d created", 42);
    assert_int_equal(errno, ENOENT); /* logging does not disturb errno */
    log_debug("ab12", "not shown at info");
    log_warn(NULL, "no request id");
    log_error("r-1", "two\nlines\r\tand a tab");
    char *text = capture_end(&len);

    char *second = strchr(text, '\n') + 1;
    char *third = strchr(second, '\n') + 1;
    assert_string_equal(strchr(third, '\n'), "\n");

    assert_memory_equal(check_prefix(text, "INFO", "ab12"), "order 42 created\n", 17);
    assert_memory_equal(check_prefix(second, "WARN", "-"), "no request id\n", 14);
    /* A newline in a message must not start a second (forgeable) line. */
    assert_string_equal(check_prefix(third, "ERROR", "r-1"), "two lines  and a tab\n");
    free(text);
}

static void test_errno_and_percent_m(void **state)
{
    (void)state;
    size_t len;

    log_init("test-service", LOG_LVL_INFO);
    capture_begin();
    errno = ENOENT;
    log_error(NULL, "open: %m");
    char *text = capture_end(&len);
    assert_non_null(strstr(text, "open: No such file or directory\n"));
    free(text);

    /* A failing write (stderr closed) neither crashes nor leaks its errno. */
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    close(STDERR_FILENO);
    errno = ENOENT;
    log_error(NULL, "into the void");
    int after = errno;
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    assert_int_equal(after, ENOENT);
}

static void test_level_filter(void **state)
{
    (void)state;
    size_t len;

    log_init("test-service", LOG_LVL_WARN);
    capture_begin();
    log_debug(NULL, "a");
    log_info(NULL, "b");
    log_warn(NULL, "c");
    log_error(NULL, "d");
    char *text = capture_end(&len);
    assert_non_null(strstr(text, " WARN "));
    assert_non_null(strstr(text, " ERROR "));
    assert_null(strstr(text, " INFO "));
    assert_null(strstr(text, " DEBUG "));
    free(text);

    log_init("test-service", LOG_LVL_DEBUG);
    capture_begin();
    log_debug(NULL, "a");
    text = capture_end(&len);
    assert_non_null(strstr(text, " DEBUG "));
    free(text);
    log_init("test-service", LOG_LVL_INFO);
}

static void test_long_message_truncated(void **state)
{
    (void)state;
    size_t len;
    char *big = xmalloc(20001);
    memset(big, 'a', 20000);
    big[20000] = '\0';

    log_init("test-service", LOG_LVL_INFO);
    capture_begin();
    log_info("rid", "%s", big);
    log_info("rid", "after");
    char *text = capture_end(&len);

    char *end = strchr(text, '\n');
    assert_non_null(end);
    size_t line_len = (size_t)(end - text) + 1;
    assert_true(line_len <= 4096);
    assert_true(line_len > 4000);
    assert_memory_equal(end - strlen("...[truncated]"), "...[truncated]", strlen("...[truncated]"));
    assert_string_equal(check_prefix(end + 1, "INFO", "rid"), "after\n");
    free(text);
    free(big);
}

#define THREADS 4
#define LINES_PER_THREAD 300

static void *log_lines(void *arg)
{
    char payload[1500];
    int id = (int)(intptr_t)arg;
    memset(payload, 'a' + id, sizeof payload - 1);
    payload[sizeof payload - 1] = '\0';
    for (int i = 0; i < LINES_PER_THREAD; i++)
        log_info("t", "%d %s", id, payload);
    return NULL;
}

/* Lines from threads logging at once come out whole, never mixed. */
static void test_concurrent_lines_stay_whole(void **state)
{
    (void)state;
    pthread_t threads[THREADS];
    size_t len;
    int seen[THREADS] = {0};

    log_init("test-service", LOG_LVL_INFO);
    capture_begin();
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, log_lines, (void *)(intptr_t)i), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
    char *text = capture_end(&len);

    for (char *line = text; *line; line = strchr(line, '\n') + 1) {
        const char *msg = check_prefix(line, "INFO", "t");
        int id = msg[0] - '0';
        assert_in_range(id, 0, THREADS - 1);
        for (int k = 0; k < 1499; k++)
            assert_int_equal(msg[2 + k], 'a' + id);
        assert_int_equal(msg[2 + 1499], '\n');
        seen[id]++;
    }
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(seen[i], LINES_PER_THREAD);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redacts_userinfo_password),
        cmocka_unit_test(test_leaves_urls_without_password),
        cmocka_unit_test(test_redacts_password_parameters),
        cmocka_unit_test(test_redaction_in_small_buffers),
        cmocka_unit_test(test_redacts_each_url_of_a_list),
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test(test_line_format),
        cmocka_unit_test(test_errno_and_percent_m),
        cmocka_unit_test(test_level_filter),
        cmocka_unit_test(test_long_message_truncated),
        cmocka_unit_test(test_concurrent_lines_stay_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
