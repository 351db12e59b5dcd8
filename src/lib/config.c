#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "util.h"

#ifndef VERSION
#define VERSION "0.0.0"
#endif

#define MAX_IDEMPOTENCY_TTL_S (366L * 86400)
/* HTTP worker threads by default: one per CPU, within these bounds.
 * Writes never block a worker (they wait suspended for the group commit)
 * and reads are short, so one worker per core suffices. */
#define DEFAULT_THREADS_MIN 2
#define DEFAULT_THREADS_MAX 16
#define DEFAULT_TEXT_MAX 256

enum opt_kind { OPT_INT, OPT_SIZE, OPT_STRING, OPT_LEVEL, OPT_QUEUE_TYPE };

/* Where an option's default comes from. Every default is written once,
 * here or in default_text(): config_load() sets it through the same
 * parser as a flag's value, and --help prints that same text. */
enum opt_default {
    DEF_VALUE,    /* def, written as the option's value ("500") */
    DEF_PORT,     /* the service's own port (config_load's default_port) */
    DEF_DATABASE, /* sqlite:var/<service>.db */
    DEF_CPUS,     /* one HTTP thread per CPU, within the bounds above */
    DEF_NONE,     /* no value; note says what happens instead */
};

struct option_def {
    const char *flag; /* without the leading "--" */
    const char *env;
    enum opt_kind kind;
    size_t offset; /* into struct config */
    long min, max; /* for integers */
    enum opt_default dflt;
    const char *def;  /* DEF_VALUE: the default */
    const char *note; /* NULL, or how a default is chosen (help only) */
    const char *help; /* what it is; --help adds the default */
};

#define FIELD(f) offsetof(struct config, f)
#define VALUE(v) DEF_VALUE, v, NULL

static const struct option_def options[] = {
    {"port", "PORT", OPT_INT, FIELD(port), 1, 65535, DEF_PORT, NULL, NULL, "TCP port to listen on"},
    {"bind", "BIND", OPT_STRING, FIELD(bind), 0, 0, VALUE("127.0.0.1"), "address to listen on"},
    {"database-url", "DATABASE_URL", OPT_STRING, FIELD(database_url), 0, 0, DEF_DATABASE, NULL,
     NULL, "sqlite:PATH or postgres://..."},
    {"amqp-url", "AMQP_URL", OPT_STRING, FIELD(amqp_url), 0, 0,
     VALUE("amqp://guest:guest@127.0.0.1:5672/"), "RabbitMQ URL"},
    {"queue-type", "AMQP_QUEUE_TYPE", OPT_QUEUE_TYPE, FIELD(queue_type), 0, 0, VALUE("classic"),
     "classic or quorum"},
    {"log-level", "LOG_LEVEL", OPT_LEVEL, FIELD(log_level), 0, 0, VALUE("info"),
     "debug, info, warn or error"},
    {"body-limit", "BODY_LIMIT", OPT_SIZE, FIELD(body_limit), 1024, 64L * 1024 * 1024,
     VALUE("1048576"), "largest request body in bytes"},
    {"http-threads", "HTTP_THREADS", OPT_INT, FIELD(http_threads), 1, 256, DEF_CPUS, NULL,
     "one per CPU, 2 to 16", "HTTP worker threads"},
    {"max-connections", "MAX_CONNECTIONS", OPT_INT, FIELD(max_connections), 1, 100000,
     VALUE("1000"), "simultaneous HTTP connections"},
    {"idle-timeout", "IDLE_TIMEOUT", OPT_INT, FIELD(idle_timeout_s), 1, 3600, VALUE("30"),
     "seconds a connection may stay silent, or take to send a request head"},
    {"shutdown-timeout", "SHUTDOWN_TIMEOUT", OPT_INT, FIELD(shutdown_timeout_s), 1, 3600,
     VALUE("10"), "seconds allowed to drain in-flight requests on SIGTERM"},
    {"db-pool", "DB_POOL_SIZE", OPT_INT, FIELD(db_pool_size), 1, 256, DEF_NONE, NULL,
     "the number of HTTP threads", "database connections for requests"},
    {"relay-batch", "RELAY_BATCH", OPT_INT, FIELD(relay_batch), 1, 10000, VALUE("500"),
     "outbox events per confirmed publish batch"},
    {"prefetch", "CONSUMER_PREFETCH", OPT_INT, FIELD(consumer_prefetch), 1, 65535, VALUE("500"),
     "consumer basic.qos prefetch"},
    {"consumer-batch", "CONSUMER_BATCH", OPT_INT, FIELD(consumer_batch), 1, 10000, VALUE("200"),
     "deliveries applied per transaction"},
    /* docs/api.md 8.1: keys live 24 hours at least. */
    {"idempotency-ttl", "IDEMPOTENCY_TTL", OPT_INT, FIELD(idempotency_ttl_s), 1,
     MAX_IDEMPOTENCY_TTL_S, VALUE("86400"), "seconds an Idempotency-Key is remembered at least"},
    {"consistency-key", "CONSISTENCY_KEY", OPT_STRING, FIELD(consistency_key), 0, 0, DEF_NONE, NULL,
     "a built-in key", "secret signing X-Consistency-Token; the same on every service"},
    {"consumer-max-attempts", "CONSUMER_MAX_ATTEMPTS", OPT_INT, FIELD(consumer_max_attempts), 1,
     1000, VALUE("5"), "failed applications of one message before it is dead-lettered"},
    {"consumer-stall-timeout", "CONSUMER_STALL_TIMEOUT", OPT_INT, FIELD(consumer_stall_s), 1, 86400,
     VALUE("60"), "seconds of failing batches before /readyz reports the consumer"},
    {"admin-token", "ADMIN_TOKEN", OPT_STRING, FIELD(admin_token), 0, 0, DEF_NONE, NULL,
     "none, and the admin routes answer 404", "bearer token of the admin routes"},
    {"admin-token-file", "ADMIN_TOKEN_FILE", OPT_STRING, FIELD(admin_token_file), 0, 0, DEF_NONE,
     NULL, "none", "file whose first line is the admin token"},
    {"ui-dir", "UI_DIR", OPT_STRING, FIELD(ui_dir), 0, 0, DEF_NONE, NULL,
     "found next to the binary", "folder of the dashboard's files"},
    /* The writers' default ports (their main.c) on this host. */
    {"user-service-url", "USER_SERVICE_URL", OPT_STRING, FIELD(user_service_url), 0, 0,
     VALUE("http://127.0.0.1:8081"), "the user service, whose event log rebuilds read"},
    {"order-service-url", "ORDER_SERVICE_URL", OPT_STRING, FIELD(order_service_url), 0, 0,
     VALUE("http://127.0.0.1:8082"), "the order service, whose event log rebuilds read"},
    {"source-token", "SOURCE_TOKEN", OPT_STRING, FIELD(source_token), 0, 0, DEF_NONE, NULL,
     "the admin token", "bearer token for the writers' event logs"},
};

/* Options that only one service takes (the others are every service's).
 * Elsewhere the flag is unknown and --help does not list it; its variable
 * is ignored there, since one settings file may serve several services. */
static const struct {
    const char *flag;
    const char *service;
} only_for[] = {
    {"ui-dir", "invoice-service"},
    {"user-service-url", "invoice-service"},
    {"order-service-url", "invoice-service"},
    {"source-token", "invoice-service"},
};

static int option_applies(const struct config *cfg, const struct option_def *o)
{
    for (size_t i = 0; i < ARRAY_LEN(only_for); i++)
        if (strcmp(only_for[i].flag, o->flag) == 0)
            return strcmp(only_for[i].service, cfg->service) == 0;
    return 1;
}

/* The default of o as the text of a value (in buf, DEFAULT_TEXT_MAX
 * bytes, or static), or NULL when it has none (DEF_NONE). */
static const char *default_text(const struct config *cfg, int default_port,
                                const struct option_def *o, char *buf)
{
    long cpus;

    switch (o->dflt) {
    case DEF_VALUE:
        return o->def;
    case DEF_PORT:
        snprintf(buf, DEFAULT_TEXT_MAX, "%d", default_port);
        return buf;
    case DEF_DATABASE:
        snprintf(buf, DEFAULT_TEXT_MAX, "sqlite:var/%s.db", cfg->service);
        return buf;
    case DEF_CPUS:
        cpus = sysconf(_SC_NPROCESSORS_ONLN);
        cpus = cpus < DEFAULT_THREADS_MIN   ? DEFAULT_THREADS_MIN
               : cpus > DEFAULT_THREADS_MAX ? DEFAULT_THREADS_MAX
                                            : cpus;
        snprintf(buf, DEFAULT_TEXT_MAX, "%ld", cpus);
        return buf;
    case DEF_NONE:
        break;
    }
    return NULL;
}

static void usage(const struct config *cfg, int default_port, FILE *out)
{
    char buf[DEFAULT_TEXT_MAX];

    fprintf(out, "usage: %s [options]\n\noptions (flag / environment variable):\n", cfg->service);
    for (size_t i = 0; i < ARRAY_LEN(options); i++) {
        const struct option_def *o = &options[i];
        const char *def = default_text(cfg, default_port, o, buf);
        if (!option_applies(cfg, o))
            continue;
        fprintf(out, "  --%-22s %-22s %s (default", o->flag, o->env, o->help);
        if (def)
            fprintf(out, " %s%s%s)\n", def, o->note ? ": " : "", o->note ? o->note : "");
        else
            fprintf(out, ": %s)\n", o->note);
    }
    fprintf(out, "  --%-22s %-22s %s\n", "help", "", "print this and exit");
    fprintf(out, "  --%-22s %-22s %s\n", "version", "", "print the version and exit");
}

static void die(const struct config *cfg, const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "%s: ", cfg->service);
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n(see --help)\n");
    exit(2);
}

static void set_option(struct config *cfg, const struct option_def *o, const char *value)
{
    void *field = (char *)cfg + o->offset;
    char *end = NULL;
    long n;

    switch (o->kind) {
    case OPT_INT:
    case OPT_SIZE:
        errno = 0;
        n = strtol(value, &end, 10);
        if (errno || end == value || *end || n < o->min || n > o->max)
            die(cfg, "invalid value for --%s: '%s'", o->flag, value);
        if (o->kind == OPT_INT)
            *(int *)field = (int)n;
        else
            *(size_t *)field = (size_t)n;
        break;
    case OPT_STRING:
        if (!*value)
            die(cfg, "empty value for --%s%s", o->flag, "");
        free(*(char **)field);
        *(char **)field = xstrdup(value);
        break;
    case OPT_LEVEL:
        if (log_level_parse(value, (enum log_level *)field) != 0)
            die(cfg, "invalid value for --%s: '%s'", o->flag, value);
        break;
    case OPT_QUEUE_TYPE:
        if (strcmp(value, "classic") != 0 && strcmp(value, "quorum") != 0)
            die(cfg, "invalid value for --%s: '%s' (classic or quorum)", o->flag, value);
        free(*(char **)field);
        *(char **)field = xstrdup(value);
        break;
    }
}

/* The token from --admin-token or --admin-token-file, checked; exits 2
 * without ever printing it. */
static void load_admin_token(struct config *cfg)
{
    char line[ADMIN_TOKEN_MAX + 2];

    if (cfg->admin_token && cfg->admin_token_file)
        die(cfg, "give the admin token by %s or by %s, not both", "--admin-token / ADMIN_TOKEN",
            "--admin-token-file / ADMIN_TOKEN_FILE");
    if (cfg->admin_token_file) {
        FILE *f = fopen(cfg->admin_token_file, "r");
        if (!f)
            die(cfg, "cannot read --admin-token-file '%s': %s", cfg->admin_token_file,
                strerror(errno));
        if (!fgets(line, sizeof(line), f))
            line[0] = '\0';
        fclose(f);
        line[strcspn(line, "\r\n")] = '\0';
        cfg->admin_token = xstrdup(line);
    }
    if (cfg->admin_token && !admin_token_valid(cfg->admin_token, strlen(cfg->admin_token)))
        die(cfg, "the admin token must be 1..%s visible ASCII characters without spaces%s", "1024",
            "");
}

static const struct option_def *find_flag(const struct config *cfg, const char *name, size_t len)
{
    for (size_t i = 0; i < ARRAY_LEN(options); i++)
        if (strlen(options[i].flag) == len && strncmp(options[i].flag, name, len) == 0 &&
            option_applies(cfg, &options[i]))
            return &options[i];
    return NULL;
}

void config_load(struct config *cfg, const char *service, int default_port, int argc, char **argv)
{
    char buf[DEFAULT_TEXT_MAX];

    memset(cfg, 0, sizeof(*cfg));
    cfg->service = service;
    /* Defaults first, through the parser a flag's value takes. */
    for (size_t i = 0; i < ARRAY_LEN(options); i++) {
        const char *def = default_text(cfg, default_port, &options[i], buf);
        if (def)
            set_option(cfg, &options[i], def);
    }

    /* Then the environment, so that flags override it. */
    for (size_t i = 0; i < ARRAY_LEN(options); i++) {
        const char *v = getenv(options[i].env);
        if (v && *v && option_applies(cfg, &options[i]))
            set_option(cfg, &options[i], v);
    }

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(cfg, default_port, stdout);
            config_free(cfg);
            exit(0);
        }
        if (strcmp(arg, "--version") == 0) {
            printf("%s %s\n", service, VERSION);
            config_free(cfg);
            exit(0);
        }
        if (strncmp(arg, "--", 2) != 0)
            die(cfg, "unexpected argument '%s'%s", arg, "");
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const struct option_def *o = find_flag(cfg, name, len);
        if (!o)
            die(cfg, "unknown option '%s'%s", arg, "");
        const char *value = eq ? eq + 1 : NULL;
        if (!value) {
            if (i + 1 >= argc)
                die(cfg, "option '%s' needs a value%s", arg, "");
            value = argv[++i];
        }
        set_option(cfg, o, value);
    }
    if (cfg->db_pool_size == 0)
        cfg->db_pool_size = cfg->http_threads;
    load_admin_token(cfg);
}

void config_free(struct config *cfg)
{
    free(cfg->bind);
    free(cfg->database_url);
    free(cfg->amqp_url);
    free(cfg->queue_type);
    free(cfg->consistency_key);
    free(cfg->admin_token);
    free(cfg->admin_token_file);
    free(cfg->ui_dir);
    cfg->ui_dir = NULL;
    free(cfg->user_service_url);
    free(cfg->order_service_url);
    free(cfg->source_token);
    cfg->user_service_url = cfg->order_service_url = cfg->source_token = NULL;
    cfg->bind = cfg->database_url = cfg->amqp_url = cfg->queue_type = NULL;
    cfg->consistency_key = NULL;
    cfg->admin_token = cfg->admin_token_file = NULL;
}
