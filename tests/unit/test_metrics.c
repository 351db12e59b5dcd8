/*
 * Unit tests for metrics: the rendered Prometheus text (exact sample
 * lines, grouping, HELP/TYPE, escaping), thread safety and the series cap.
 *
 * The registry is process-wide and has no reset, so each test uses its
 * own metric names and the one that fills the table runs last.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static char *render(void)
{
    size_t len = 0;
    char *text = metrics_render(&len);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    return text;
}

/* The exact line, start to end, somewhere in text. */
static const char *find_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return p;
    return NULL;
}

static void expect_line(const char *text, const char *line)
{
    if (!find_line(text, line))
        fail_msg("missing line: %s\n--- rendered:\n%s", line, text);
}

static void expect_no_line_with(const char *text, const char *fragment)
{
    if (strstr(text, fragment))
        fail_msg("unexpected \"%s\" in:\n%s", fragment, text);
}

static int count_of(const char *text, const char *fragment)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, fragment)) != NULL; p += strlen(fragment))
        n++;
    return n;
}

static bool is_name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

/*
 * A small reader of the 0.0.4 text format: comment lines are HELP or TYPE;
 * a sample is name[{labels}] value with labels name="escaped", and every
 * sample follows the TYPE line of its metric family.
 */
static void check_exposition(const char *text)
{
    char family[256] = "";
    const char *line = text;

    assert_true(*text == '\0' || text[strlen(text) - 1] == '\n');
    while (*line) {
        const char *end = strchr(line, '\n');
        if (strncmp(line, "# HELP ", 7) == 0)
            goto next;
        if (strncmp(line, "# TYPE ", 7) == 0) {
            const char *name = line + 7;
            size_t n = strcspn(name, " ");
            assert_true(n < sizeof family);
            memcpy(family, name, n);
            family[n] = '\0';
            goto next;
        }
        const char *p = line;
        assert_true(is_name_char(*p, true));
        while (is_name_char(*p, false))
            p++;
        if (strncmp(line, family, strlen(family)) != 0 || !*family)
            fail_msg("sample outside its family (%s): %.*s", family, (int)(end - line), line);
        if (*p == '{') {
            p++;
            while (*p != '}') {
                assert_true(is_name_char(*p, true));
                while (is_name_char(*p, false))
                    p++;
                assert_int_equal(*p++, '=');
                assert_int_equal(*p++, '"');
                while (*p != '"') {
                    assert_true(*p != '\n' && *p != '\0');
                    if (*p == '\\') {
                        p++;
                        assert_true(*p == '\\' || *p == '"' || *p == 'n');
                    }
                    p++;
                }
                p++;
                if (*p == ',')
                    p++;
            }
            p++;
        }
        assert_int_equal(*p++, ' ');
        char *value_end;
        strtod(p, &value_end);
        if (value_end != end)
            fail_msg("bad value: %.*s", (int)(end - line), line);
    next:
        line = end + 1;
    }
}

static void test_request_metrics(void **state)
{
    (void)state;
    /* Durations that are exact in binary, so _sum has one right text. */
    metrics_observe_request("/order-service/orders", "POST", 201, 0.001953125);
    metrics_observe_request("/order-service/orders", "POST", 201, 0.00048828125);
    metrics_observe_request("/order-service/orders", "POST", 422, 0.125);
    metrics_observe_request("/order-service/orders", "GET", 200, 3.0);
    char *text = render();

    expect_line(text, "# TYPE http_requests_total counter");
    expect_line(text, "# TYPE http_request_duration_seconds histogram");
    assert_non_null(strstr(text, "# HELP http_requests_total "));
    assert_non_null(strstr(text, "# HELP http_request_duration_seconds "));
    expect_line(text,
                "http_requests_total{route=\"/order-service/orders\",method=\"POST\","
                "status=\"201\"} 2");
    expect_line(text,
                "http_requests_total{route=\"/order-service/orders\",method=\"POST\","
                "status=\"422\"} 1");
    expect_line(text,
                "http_requests_total{route=\"/order-service/orders\",method=\"GET\","
                "status=\"200\"} 1");

    /* Cumulative buckets; a value on a bound counts in that bucket. */
    static const struct {
        const char *le;
        int count;
    } post[] = {{"0.0005", 1}, {"0.001", 1}, {"0.0025", 2}, {"0.005", 2}, {"0.01", 2},
                {"0.025", 2},  {"0.05", 2},  {"0.1", 2},    {"0.25", 3},  {"0.5", 3},
                {"1", 3},      {"2.5", 3},   {"+Inf", 3}};
    char line[256];
    for (size_t i = 0; i < sizeof post / sizeof post[0]; i++) {
        snprintf(line, sizeof line,
                 "http_request_duration_seconds_bucket{route=\"/order-service/orders\","
                 "method=\"POST\",le=\"%s\"} %d",
                 post[i].le, post[i].count);
        expect_line(text, line);
    }
    expect_line(text,
                "http_request_duration_seconds_sum{route=\"/order-service/orders\","
                "method=\"POST\"} 0.12744140625");
    expect_line(text,
                "http_request_duration_seconds_count{route=\"/order-service/orders\","
                "method=\"POST\"} 3");
    expect_line(text,
                "http_request_duration_seconds_bucket{route=\"/order-service/orders\","
                "method=\"GET\",le=\"2.5\"} 0");
    expect_line(text,
                "http_request_duration_seconds_bucket{route=\"/order-service/orders\","
                "method=\"GET\",le=\"+Inf\"} 1");
    expect_line(text,
                "http_request_duration_seconds_sum{route=\"/order-service/orders\","
                "method=\"GET\"} 3");
    assert_int_equal(count_of(text, "# TYPE http_requests_total "), 1);
    assert_int_equal(count_of(text, "# HELP http_requests_total "), 1);
    check_exposition(text);
    free(text);
}

static void test_label_values_escaped(void **state)
{
    (void)state;
    metrics_observe_request("/odd\"route\\with\nnewline", "GET", 404, 0.001);
    char *text = render();
    expect_line(text,
                "http_requests_total{route=\"/odd\\\"route\\\\with\\nnewline\","
                "method=\"GET\",status=\"404\"} 1");
    check_exposition(text);
    free(text);
}

static void test_counters_and_gauges(void **state)
{
    (void)state;
    metrics_describe("orders_created_total", "counter", "Orders created.");
    metrics_counter_add("orders_created_total", NULL, 2);
    metrics_counter_add("orders_created_total", NULL, 3);
    metrics_counter_add("orders_created_total", NULL, -4); /* ignored: counters only rise */
    metrics_counter_add("events_published_total", "type=\"order.created\"", 7);
    metrics_gauge_set("outbox_pending", NULL, 10);
    metrics_gauge_add("outbox_pending", NULL, -3);
    metrics_describe("consumer_inflight", "gauge", "Deliveries being applied.");
    metrics_gauge_add("consumer_inflight", "queue=\"order\"", 2);
    metrics_counter_add("saturating_total", NULL, INT64_MAX);
    metrics_counter_add("saturating_total", NULL, INT64_MAX);
    char *text = render();

    expect_line(text, "# HELP orders_created_total Orders created.");
    expect_line(text, "# TYPE orders_created_total counter");
    expect_line(text, "orders_created_total 5");
    /* Undescribed: a generic HELP and the type of the call that made it. */
    expect_line(text, "# TYPE events_published_total counter");
    assert_non_null(strstr(text, "# HELP events_published_total "));
    expect_line(text, "events_published_total{type=\"order.created\"} 7");
    expect_line(text, "# TYPE outbox_pending gauge");
    expect_line(text, "outbox_pending 7");
    expect_line(text, "# HELP consumer_inflight Deliveries being applied.");
    expect_line(text, "# TYPE consumer_inflight gauge");
    expect_line(text, "consumer_inflight{queue=\"order\"} 2");
    expect_line(text, "saturating_total 9223372036854775807");
    check_exposition(text);
    free(text);
}

static void test_help_escaped_and_described_later(void **state)
{
    (void)state;
    metrics_counter_add("late_total", NULL, 1);
    metrics_describe("late_total", "counter", "First line\nsecond \\ line");
    metrics_describe("never_used_total", "counter", "Nothing recorded.");
    char *text = render();
    expect_line(text, "# HELP late_total First line\\nsecond \\\\ line");
    expect_line(text, "# TYPE late_total counter");
    expect_line(text, "late_total 1");
    expect_no_line_with(text, "never_used_total");
    check_exposition(text);
    free(text);
}

static void test_histograms(void **state)
{
    (void)state;
    metrics_describe("event_lag_seconds", "histogram", "From occurred_at to applied.");
    metrics_observe("event_lag_seconds", "queue=\"order\"", 0.0005);
    metrics_observe("event_lag_seconds", "queue=\"order\"", 0.75);
    metrics_observe("event_lag_seconds", "queue=\"order\"", 100);
    metrics_observe("event_lag_seconds", "queue=\"user\"", -1); /* clock skew: counted as 0 */
    metrics_observe("event_lag_seconds", "queue=\"user\"", 0.0 / 0.0); /* NaN: ignored */
    metrics_observe("plain_seconds", NULL, 0.25);
    metrics_observe("plain_seconds", NULL, 1.25);
    char *text = render();

    expect_line(text, "# HELP event_lag_seconds From occurred_at to applied.");
    expect_line(text, "# TYPE event_lag_seconds histogram");
    expect_line(text, "event_lag_seconds_bucket{queue=\"order\",le=\"0.0005\"} 1");
    expect_line(text, "event_lag_seconds_bucket{queue=\"order\",le=\"0.5\"} 1");
    expect_line(text, "event_lag_seconds_bucket{queue=\"order\",le=\"1\"} 2");
    expect_line(text, "event_lag_seconds_bucket{queue=\"order\",le=\"2.5\"} 2");
    expect_line(text, "event_lag_seconds_bucket{queue=\"order\",le=\"+Inf\"} 3");
    expect_line(text, "event_lag_seconds_sum{queue=\"order\"} 100.7505");
    expect_line(text, "event_lag_seconds_count{queue=\"order\"} 3");
    expect_line(text, "event_lag_seconds_bucket{queue=\"user\",le=\"0.0005\"} 1");
    expect_line(text, "event_lag_seconds_sum{queue=\"user\"} 0");
    expect_line(text, "event_lag_seconds_count{queue=\"user\"} 1");

    expect_line(text, "# TYPE plain_seconds histogram");
    expect_line(text, "plain_seconds_bucket{le=\"0.1\"} 0");
    expect_line(text, "plain_seconds_bucket{le=\"0.25\"} 1");
    expect_line(text, "plain_seconds_bucket{le=\"+Inf\"} 2");
    expect_line(text, "plain_seconds_sum 1.5");
    expect_line(text, "plain_seconds_count 2");
    assert_int_equal(count_of(text, "plain_seconds_bucket{"), 13);
    check_exposition(text);
    free(text);
}

/* Series of one name are rendered together under one HELP/TYPE, however
 * their creation was interleaved with other names. */
static void test_grouped_by_name(void **state)
{
    (void)state;
    metrics_counter_add("group_a_total", "k=\"1\"", 1);
    metrics_counter_add("group_b_total", NULL, 1);
    metrics_counter_add("group_a_total", "k=\"2\"", 1);
    char *text = render();

    assert_int_equal(count_of(text, "# TYPE group_a_total "), 1);
    const char *type_a = find_line(text, "# TYPE group_a_total counter");
    const char *a1 = find_line(text, "group_a_total{k=\"1\"} 1");
    const char *a2 = find_line(text, "group_a_total{k=\"2\"} 1");
    const char *type_b = find_line(text, "# TYPE group_b_total counter");
    assert_non_null(type_a);
    assert_non_null(a1);
    assert_non_null(a2);
    assert_non_null(type_b);
    assert_true(type_a < a1 && a1 < a2);
    assert_true(a2 < type_b || type_b < type_a);
    check_exposition(text);
    free(text);
}

/* What would make the page unparseable is refused, not rendered. */
static void test_invalid_input_dropped(void **state)
{
    (void)state;
    metrics_counter_add("bad name", NULL, 1);
    metrics_counter_add("9starts_with_digit", NULL, 1);
    metrics_counter_add("", NULL, 1);
    metrics_counter_add(NULL, NULL, 1);
    metrics_counter_add("newline_labels_total", "k=\"a\nb\"", 1);
    metrics_counter_add("mixed_kind", NULL, 1);
    metrics_observe("mixed_kind", NULL, 0.1);      /* a counter cannot turn histogram */
    metrics_observe("mixed_kind", "x=\"1\"", 0.1); /* nor grow a histogram series */
    metrics_describe("bad name", "counter", "x");
    char *text = render();
    expect_no_line_with(text, "bad name");
    expect_no_line_with(text, "9starts_with_digit");
    expect_no_line_with(text, "newline_labels_total");
    expect_no_line_with(text, "mixed_kind_bucket");
    expect_no_line_with(text, "mixed_kind{");
    expect_line(text, "mixed_kind 1");
    expect_line(text, "# TYPE mixed_kind counter");
    check_exposition(text);
    free(text);
}

#define THREADS 4
#define ROUNDS 5000

static pthread_barrier_t start_line;

static void *hammer(void *arg)
{
    (void)arg;
    /* All threads start together, so their updates really do overlap. */
    pthread_barrier_wait(&start_line);
    for (int i = 0; i < ROUNDS; i++) {
        metrics_observe_request("/threads", "GET", 200, 0.002);
        metrics_counter_add("threads_total", NULL, 1);
        metrics_gauge_add("threads_gauge", NULL, i % 2 ? -1 : 1);
        if (i % 100 == 0)
            free(metrics_render(NULL));
    }
    return NULL;
}

static void test_thread_safe(void **state)
{
    (void)state;
    pthread_t threads[THREADS];
    char line[160];

    assert_int_equal(pthread_barrier_init(&start_line, NULL, THREADS), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, hammer, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&start_line);
    char *text = render();
    snprintf(line, sizeof line,
             "http_requests_total{route=\"/threads\",method=\"GET\",status=\"200\"} %d",
             THREADS * ROUNDS);
    expect_line(text, line);
    snprintf(line, sizeof line,
             "http_request_duration_seconds_count{route=\"/threads\",method=\"GET\"} %d",
             THREADS * ROUNDS);
    expect_line(text, line);
    snprintf(line, sizeof line,
             "http_request_duration_seconds_bucket{route=\"/threads\",method=\"GET\","
             "le=\"0.0025\"} %d",
             THREADS * ROUNDS);
    expect_line(text, line);
    snprintf(line, sizeof line, "threads_total %d", THREADS * ROUNDS);
    expect_line(text, line);
    expect_line(text, "threads_gauge 0");
    free(text);
}

/* Runs last: fills the table. New series beyond the cap are dropped while
 * the existing ones keep counting. */
static void test_series_cap(void **state)
{
    (void)state;
    char labels[32];
    for (int i = 0; i < METRICS_MAX_SERIES + 100; i++) {
        snprintf(labels, sizeof labels, "n=\"%d\"", i);
        metrics_counter_add("cap_total", labels, 1);
    }
    metrics_counter_add("threads_total", NULL, 1);
    metrics_counter_add("after_cap_total", NULL, 1);
    char *text = render();

    int cap_lines = count_of(text, "\ncap_total{");
    assert_true(cap_lines > 0 && cap_lines < METRICS_MAX_SERIES);
    expect_line(text, "cap_total{n=\"0\"} 1");
    snprintf(labels, sizeof labels, "n=\"%d\"", METRICS_MAX_SERIES + 99);
    expect_no_line_with(text, labels);
    expect_no_line_with(text, "after_cap_total");
    char line[64];
    snprintf(line, sizeof line, "threads_total %d", THREADS * ROUNDS + 1);
    expect_line(text, line);
    check_exposition(text);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_metrics),
        cmocka_unit_test(test_label_values_escaped),
        cmocka_unit_test(test_counters_and_gauges),
        cmocka_unit_test(test_help_escaped_and_described_later),
        cmocka_unit_test(test_histograms),
        cmocka_unit_test(test_grouped_by_name),
        cmocka_unit_test(test_invalid_input_dropped),
        cmocka_unit_test(test_thread_safe),
        cmocka_unit_test(test_series_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
