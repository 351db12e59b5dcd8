/*
 * Unit tests of config parsing (src/lib/config.c): defaults, flags in both
 * forms, the environment, flags over the environment, the ranges of the
 * numbers, bad values refused with a message that names the option (exit
 * status 2), options that only one service takes, --help and --version,
 * and that the defaults --help names are the ones config_load applies.
 *
 * config_load() exits on --help, --version and on a bad value, so those
 * cases run it in a child process whose output and exit status the test
 * reads; the others call it directly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "testutil.h"
#include "util.h"

#define ARGS_MAX 16
#define OUTPUT_MAX 16384

/* Every variable config reads; cleared before each test so that the
 * environment the tests run in does not leak into them. */
static const char *const variables[] = {
    "PORT",
    "BIND",
    "DATABASE_URL",
    "AMQP_URL",
    "AMQP_QUEUE_TYPE",
    "LOG_LEVEL",
    "BODY_LIMIT",
    "HTTP_THREADS",
    "MAX_CONNECTIONS",
    "IDLE_TIMEOUT",
    "SHUTDOWN_TIMEOUT",
    "DB_POOL_SIZE",
    "RELAY_BATCH",
    "CONSUMER_PREFETCH",
    "CONSUMER_BATCH",
    "IDEMPOTENCY_TTL",
    "CONSISTENCY_KEY",
    "CONSUMER_MAX_ATTEMPTS",
    "CONSUMER_STALL_TIMEOUT",
    "ADMIN_TOKEN",
    "ADMIN_TOKEN_FILE",
    "UI_DIR",
    "USER_SERVICE_URL",
    "ORDER_SERVICE_URL",
    "SOURCE_TOKEN",
};

static int clear_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(variables); i++)
        unsetenv(variables[i]);
    return 0;
}

/* Builds argv from a NULL-terminated list (argv[0] is the program). */
static int make_argv(char **argv, const char *const *args)
{
    int argc = 0;
    argv[argc++] = (char *)"test-service";
    for (; args && *args; args++) {
        assert_true(argc < ARGS_MAX - 1);
        argv[argc++] = (char *)*args;
    }
    argv[argc] = NULL;
    return argc;
}

static void load(struct config *cfg, const char *service, const char *const *args)
{
    char *argv[ARGS_MAX];
    int argc = make_argv(argv, args);
    config_load(cfg, service, 8080, argc, argv);
}

/* What a child that ran config_load said and how it ended. */
struct outcome {
    int status; /* exit status; CHILD_RETURNED when config_load returned */
    char out[OUTPUT_MAX];
    char err[OUTPUT_MAX];
};

#define CHILD_RETURNED 42

/* Kept global so that, at the child's exit, what config_load allocated is
 * still reachable (no leak report). */
static struct config child_cfg;

static void read_all(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t len = fread(buf, 1, size - 1, f);
    buf[len] = '\0';
    fclose(f);
}

/* Runs config_load in a child process; stdout and stderr go to files of
 * a temporary directory, read back once the child ended. */
static void run_child(const char *service, const char *const *args, struct outcome *o)
{
    char dir[256], out_path[300], err_path[300];
    char *argv[ARGS_MAX];
    int argc = make_argv(argv, args);

    assert_int_equal(testutil_mkdtemp(dir, sizeof(dir), "cqrs-test-config"), 0);
    snprintf(out_path, sizeof(out_path), "%s/out", dir);
    snprintf(err_path, sizeof(err_path), "%s/err", dir);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (!freopen(out_path, "w", stdout) || !freopen(err_path, "w", stderr))
            _exit(97);
        config_load(&child_cfg, service, 8080, argc, argv);
        fflush(stdout);
        fflush(stderr);
        _exit(CHILD_RETURNED);
    }
    int wstatus = 0;
    assert_int_equal(waitpid(pid, &wstatus, 0), pid);
    assert_true(WIFEXITED(wstatus));
    o->status = WEXITSTATUS(wstatus);
    read_all(out_path, o->out, sizeof(o->out));
    read_all(err_path, o->err, sizeof(o->err));
    assert_int_equal(testutil_rmtree(dir), 0);
}

/* Runs args and expects exit status 2 with a message holding needle. */
static void expect_refused(const char *service, const char *const *args, const char *needle)
{
    struct outcome o;
    run_child(service, args, &o);
    if (o.status != 2 || !strstr(o.err, needle))
        fail_msg("expected exit 2 with \"%s\", got %d: %s", needle, o.status, o.err);
    assert_non_null(strstr(o.err, "(see --help)"));
    assert_string_equal(o.out, "");
}

static void test_defaults(void **state)
{
    struct config cfg;
    (void)state;

    load(&cfg, "order-service", NULL);
    assert_string_equal(cfg.service, "order-service");
    assert_int_equal(cfg.port, 8080);
    assert_string_equal(cfg.bind, "127.0.0.1");
    assert_string_equal(cfg.database_url, "sqlite:var/order-service.db");
    assert_string_equal(cfg.amqp_url, "amqp://guest:guest@127.0.0.1:5672/");
    assert_string_equal(cfg.queue_type, "classic");
    assert_int_equal(cfg.log_level, LOG_LVL_INFO);
    assert_int_equal(cfg.body_limit, 1048576);
    assert_true(cfg.http_threads >= 2 && cfg.http_threads <= 16);
    assert_int_equal(cfg.db_pool_size, cfg.http_threads);
    assert_int_equal(cfg.max_connections, 1000);
    assert_int_equal(cfg.idle_timeout_s, 30);
    assert_int_equal(cfg.shutdown_timeout_s, 10);
    assert_int_equal(cfg.relay_batch, 500);
    assert_int_equal(cfg.consumer_prefetch, 500);
    assert_int_equal(cfg.consumer_batch, 200);
    assert_int_equal(cfg.idempotency_ttl_s, 86400);
    assert_int_equal(cfg.consumer_max_attempts, 5);
    assert_int_equal(cfg.consumer_stall_s, 60);
    assert_null(cfg.consistency_key);
    assert_null(cfg.admin_token);
    assert_null(cfg.ui_dir);
    assert_string_equal(cfg.user_service_url, "http://127.0.0.1:8081");
    assert_string_equal(cfg.order_service_url, "http://127.0.0.1:8082");
    assert_null(cfg.source_token);
    config_free(&cfg);
}

static void test_flags(void **state)
{
    struct config cfg;
    (void)state;

    load(&cfg, "order-service",
         (const char *const[]){"--port", "9001", "--bind=0.0.0.0", "--log-level", "debug",
                               "--queue-type=quorum", "--body-limit", "2048", "--http-threads=3",
                               "--consistency-key", "k1", NULL});
    assert_int_equal(cfg.port, 9001);
    assert_string_equal(cfg.bind, "0.0.0.0");
    assert_int_equal(cfg.log_level, LOG_LVL_DEBUG);
    assert_string_equal(cfg.queue_type, "quorum");
    assert_int_equal(cfg.body_limit, 2048);
    assert_int_equal(cfg.http_threads, 3);
    assert_int_equal(cfg.db_pool_size, 3); /* follows the threads */
    assert_string_equal(cfg.consistency_key, "k1");
    config_free(&cfg);

    /* The same flag twice: the last one counts. */
    load(&cfg, "order-service", (const char *const[]){"--port=1", "--port=2", NULL});
    assert_int_equal(cfg.port, 2);
    config_free(&cfg);
}

static void test_environment(void **state)
{
    struct config cfg;
    (void)state;

    setenv("PORT", "9100", 1);
    setenv("DATABASE_URL", "sqlite:/tmp/x.db", 1);
    setenv("DB_POOL_SIZE", "7", 1);
    setenv("LOG_LEVEL", "warn", 1);
    setenv("BIND", "", 1); /* empty: as if unset */
    load(&cfg, "user-service", NULL);
    assert_int_equal(cfg.port, 9100);
    assert_string_equal(cfg.database_url, "sqlite:/tmp/x.db");
    assert_int_equal(cfg.db_pool_size, 7);
    assert_int_equal(cfg.log_level, LOG_LVL_WARN);
    assert_string_equal(cfg.bind, "127.0.0.1");
    config_free(&cfg);
}

static void test_flags_over_environment(void **state)
{
    struct config cfg;
    (void)state;

    setenv("PORT", "9100", 1);
    setenv("RELAY_BATCH", "10", 1);
    load(&cfg, "user-service", (const char *const[]){"--port", "9200", NULL});
    assert_int_equal(cfg.port, 9200);      /* the flag wins */
    assert_int_equal(cfg.relay_batch, 10); /* the variable without a flag counts */
    config_free(&cfg);
}

static void test_ranges(void **state)
{
    struct config cfg;
    (void)state;

    load(&cfg, "order-service",
         (const char *const[]){"--port", "65535", "--body-limit", "1024", "--idempotency-ttl",
                               "31622400", NULL});
    assert_int_equal(cfg.port, 65535);
    assert_int_equal(cfg.body_limit, 1024);
    assert_int_equal(cfg.idempotency_ttl_s, 31622400);
    config_free(&cfg);
    load(&cfg, "order-service", (const char *const[]){"--port", "1", NULL});
    assert_int_equal(cfg.port, 1);
    config_free(&cfg);

    expect_refused("order-service", (const char *const[]){"--port", "0", NULL},
                   "invalid value for --port: '0'");
    expect_refused("order-service", (const char *const[]){"--port=65536", NULL},
                   "invalid value for --port: '65536'");
    expect_refused("order-service", (const char *const[]){"--body-limit", "1023", NULL},
                   "invalid value for --body-limit: '1023'");
    expect_refused("order-service", (const char *const[]){"--idempotency-ttl", "31622401", NULL},
                   "invalid value for --idempotency-ttl");
    expect_refused("order-service",
                   (const char *const[]){"--http-threads", "99999999999999999999", NULL},
                   "invalid value for --http-threads");
}

static void test_bad_values(void **state)
{
    (void)state;

    expect_refused("order-service", (const char *const[]){"--port", "80x", NULL},
                   "invalid value for --port: '80x'");
    expect_refused("order-service", (const char *const[]){"--port", "", NULL},
                   "invalid value for --port: ''");
    expect_refused("order-service", (const char *const[]){"--log-level", "loud", NULL},
                   "invalid value for --log-level: 'loud'");
    expect_refused("order-service", (const char *const[]){"--queue-type", "fanout", NULL},
                   "invalid value for --queue-type: 'fanout' (classic or quorum)");
    expect_refused("order-service", (const char *const[]){"--bind=", NULL},
                   "empty value for --bind");
    expect_refused("order-service", (const char *const[]){"--colour", "red", NULL},
                   "unknown option '--colour'");
    expect_refused("order-service", (const char *const[]){"--port", NULL},
                   "option '--port' needs a value");
    expect_refused("order-service", (const char *const[]){"extra", NULL},
                   "unexpected argument 'extra'");
    expect_refused("order-service",
                   (const char *const[]){"--admin-token", "a", "--admin-token-file", "/x", NULL},
                   "not both");
    expect_refused("order-service", (const char *const[]){"--admin-token", "has space", NULL},
                   "the admin token must be");
    /* A bad variable is refused as a bad flag is, and named by its flag. */
    setenv("CONSUMER_BATCH", "many", 1);
    expect_refused("invoice-service", NULL, "invalid value for --consumer-batch: 'many'");
}

static void test_admin_token_file(void **state)
{
    char dir[256], path[300];
    struct config cfg;
    (void)state;

    assert_int_equal(testutil_mkdtemp(dir, sizeof(dir), "cqrs-test-config"), 0);
    snprintf(path, sizeof(path), "%s/token", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("s3cret-token\nsecond line\n", f);
    fclose(f);
    load(&cfg, "order-service", (const char *const[]){"--admin-token-file", path, NULL});
    assert_string_equal(cfg.admin_token, "s3cret-token");
    config_free(&cfg);
    assert_int_equal(testutil_rmtree(dir), 0);
    expect_refused("order-service", (const char *const[]){"--admin-token-file", path, NULL},
                   "cannot read --admin-token-file");
}

/* The rebuild sources and the dashboard are invoice-service's: elsewhere
 * the flag is unknown and the variable ignored. */
static void test_options_of_one_service(void **state)
{
    struct config cfg;
    (void)state;

    load(&cfg, "invoice-service",
         (const char *const[]){"--ui-dir", "/srv/ui", "--source-token", "t", "--user-service-url",
                               "http://127.0.0.1:1", NULL});
    assert_string_equal(cfg.ui_dir, "/srv/ui");
    assert_string_equal(cfg.source_token, "t");
    assert_string_equal(cfg.user_service_url, "http://127.0.0.1:1");
    config_free(&cfg);

    static const char *const only_invoice[] = {"--ui-dir", "--user-service-url",
                                               "--order-service-url", "--source-token"};
    for (size_t i = 0; i < ARRAY_LEN(only_invoice); i++) {
        char msg[128];
        snprintf(msg, sizeof(msg), "unknown option '%s'", only_invoice[i]);
        expect_refused("order-service", (const char *const[]){only_invoice[i], "x", NULL}, msg);
        expect_refused("user-service", (const char *const[]){only_invoice[i], "x", NULL}, msg);
    }

    setenv("UI_DIR", "/srv/ui", 1);
    setenv("SOURCE_TOKEN", "t", 1);
    load(&cfg, "order-service", NULL);
    assert_null(cfg.ui_dir);
    assert_null(cfg.source_token);
    config_free(&cfg);
    load(&cfg, "invoice-service", NULL);
    assert_string_equal(cfg.ui_dir, "/srv/ui");
    config_free(&cfg);
}

static void test_version(void **state)
{
    struct outcome o;
    (void)state;

    run_child("user-service", (const char *const[]){"--port", "1", "--version", NULL}, &o);
    assert_int_equal(o.status, 0);
    assert_true(strncmp(o.out, "user-service ", strlen("user-service ")) == 0);
}

/* --help lists the options a service takes, and only those. */
static void test_help_lists_options(void **state)
{
    struct outcome o;
    (void)state;

    run_child("order-service", (const char *const[]){"--help", NULL}, &o);
    assert_int_equal(o.status, 0);
    assert_non_null(strstr(o.out, "usage: order-service [options]"));
    assert_non_null(strstr(o.out, "--port"));
    assert_non_null(strstr(o.out, "DATABASE_URL"));
    assert_non_null(strstr(o.out, "--version"));
    assert_null(strstr(o.out, "--ui-dir"));
    assert_null(strstr(o.out, "--source-token"));

    run_child("invoice-service", (const char *const[]){"-h", NULL}, &o);
    assert_int_equal(o.status, 0);
    assert_non_null(strstr(o.out, "--ui-dir"));
    assert_non_null(strstr(o.out, "--source-token"));
}

/* Every setting of cfg as text, to compare two configurations whole. */
static void fingerprint(const struct config *c, char *buf, size_t size)
{
#define S(x) ((x) ? (x) : "(null)")
    snprintf(
        buf, size, "%d|%s|%s|%s|%s|%d|%zu|%d|%d|%d|%d|%d|%d|%d|%d|%d|%s|%d|%d|%s|%s|%s|%s|%s|%s",
        c->port, S(c->bind), S(c->database_url), S(c->amqp_url), S(c->queue_type),
        (int)c->log_level, c->body_limit, c->http_threads, c->max_connections, c->idle_timeout_s,
        c->shutdown_timeout_s, c->db_pool_size, c->relay_batch, c->consumer_prefetch,
        c->consumer_batch, c->idempotency_ttl_s, S(c->consistency_key), c->consumer_max_attempts,
        c->consumer_stall_s, S(c->admin_token), S(c->admin_token_file), S(c->ui_dir),
        S(c->user_service_url), S(c->order_service_url), S(c->source_token));
#undef S
}

/* The defaults --help names are the real ones: every option states its
 * default, and giving each stated value as a flag changes nothing. */
static void check_help_defaults(const char *service)
{
    static const char marker[] = " (default";
    char want[OUTPUT_MAX], got[OUTPUT_MAX];
    struct outcome o;
    struct config cfg;
    int options = 0, valued = 0;

    load(&cfg, service, NULL);
    fingerprint(&cfg, want, sizeof(want));
    config_free(&cfg);
    run_child(service, (const char *const[]){"--help", NULL}, &o);
    assert_int_equal(o.status, 0);
    for (char *line = strtok(o.out, "\n"); line; line = strtok(NULL, "\n")) {
        char flag[64], arg[512];
        const char *dash = strstr(line, "--");
        if (!dash || strncmp(line, "  --", 4) != 0 || strncmp(dash, "--help", 6) == 0 ||
            strncmp(dash, "--version", 9) == 0)
            continue;
        options++;
        size_t flen = strcspn(dash, " ");
        snprintf(flag, sizeof(flag), "%.*s", (int)flen, dash);
        const char *def = strstr(line, marker);
        if (!def || line[strlen(line) - 1] != ')')
            fail_msg("%s: no default stated: %s", service, line);
        def += strlen(marker);
        if (*def == ':')
            continue; /* no value: the note says what happens instead */
        def++;
        const char *note = strstr(def, ": ");
        size_t vlen = note ? (size_t)(note - def) : strlen(def) - 1;
        snprintf(arg, sizeof(arg), "%s=%.*s", flag, (int)vlen, def);
        load(&cfg, service, (const char *const[]){arg, NULL});
        fingerprint(&cfg, got, sizeof(got));
        config_free(&cfg);
        if (strcmp(want, got) != 0)
            fail_msg("%s: %s is not the default\n want %s\n got  %s", service, arg, want, got);
        valued++;
    }
    assert_true(options >= 20);
    assert_true(valued >= 15);
}

static void test_help_names_real_defaults(void **state)
{
    struct outcome o;
    char line_port[64];
    (void)state;

    check_help_defaults("user-service");
    check_help_defaults("order-service");
    check_help_defaults("invoice-service");

    /* A few in full, as an operator reads them. */
    run_child("order-service", (const char *const[]){"--help", NULL}, &o);
    snprintf(line_port, sizeof(line_port), "TCP port to listen on (default %d)", 8080);
    assert_non_null(strstr(o.out, line_port));
    assert_non_null(strstr(o.out, "(default sqlite:var/order-service.db)"));
    assert_non_null(strstr(o.out, "SIGTERM (default 10)"));
    assert_non_null(strstr(o.out, "(default: the number of HTTP threads)"));
}

#define TEST(t) cmocka_unit_test_setup(t, clear_env)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_defaults),
        TEST(test_flags),
        TEST(test_environment),
        TEST(test_flags_over_environment),
        TEST(test_ranges),
        TEST(test_bad_values),
        TEST(test_admin_token_file),
        TEST(test_options_of_one_service),
        TEST(test_version),
        TEST(test_help_lists_options),
        TEST(test_help_names_real_defaults),
    };

    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
