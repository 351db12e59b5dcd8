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

#define DEFAULT_BIND "127.0.0.1"
#define DEFAULT_AMQP_URL "amqp://guest:guest@127.0.0.1:5672/"
#define DEFAULT_BODY_LIMIT (1024 * 1024)
#define DEFAULT_IDEMPOTENCY_TTL_S 86400 /* docs/api.md 8.1: keys live 24 hours at least */
#define MAX_IDEMPOTENCY_TTL_S (366L * 86400)
#define DEFAULT_MAX_ATTEMPTS 5
#define DEFAULT_STALL_S 60
/* The writers' default ports (their main.c) on this host. */
#define DEFAULT_USER_SERVICE_URL "http://127.0.0.1:8081"
#define DEFAULT_ORDER_SERVICE_URL "http://127.0.0.1:8082"

enum opt_kind { OPT_INT, OPT_SIZE, OPT_STRING, OPT_LEVEL, OPT_QUEUE_TYPE };

struct option_def {
    const char *flag; /* without the leading "--" */
    const char *env;
    enum opt_kind kind;
    size_t offset; /* into struct config */
    long min, max; /* for integers */
    const char *help;
};

#define FIELD(f) offsetof(struct config, f)

static const struct option_def options[] = {
    {"port", "PORT", OPT_INT, FIELD(port), 1, 65535, "TCP port to listen on"},
    {"bind", "BIND", OPT_STRING, FIELD(bind), 0, 0, "address to listen on (default 127.0.0.1)"},
    {"database-url", "DATABASE_URL", OPT_STRING, FIELD(database_url), 0, 0,
     "sqlite:PATH (default sqlite:var/<service>.db) or postgres://..."},
    {"amqp-url", "AMQP_URL", OPT_STRING, FIELD(amqp_url), 0, 0,
     "RabbitMQ URL (default " DEFAULT_AMQP_URL ")"},
    {"queue-type", "AMQP_QUEUE_TYPE", OPT_QUEUE_TYPE, FIELD(queue_type), 0, 0,
     "classic (default) or quorum"},
    {"log-level", "LOG_LEVEL", OPT_LEVEL, FIELD(log_level), 0, 0,
     "debug, info (default), warn, error"},
    {"body-limit", "BODY_LIMIT", OPT_SIZE, FIELD(body_limit), 1024, 64L * 1024 * 1024,
     "largest request body in bytes (default 1048576)"},
    {"http-threads", "HTTP_THREADS", OPT_INT, FIELD(http_threads), 1, 256,
     "HTTP worker threads (default: one per CPU, at least 2)"},
    {"max-connections", "MAX_CONNECTIONS", OPT_INT, FIELD(max_connections), 1, 100000,
     "simultaneous HTTP connections (default 1000)"},
    {"idle-timeout", "IDLE_TIMEOUT", OPT_INT, FIELD(idle_timeout_s), 1, 3600,
     "seconds a connection may stay silent, or take to send a request head (default 30)"},
    {"shutdown-timeout", "SHUTDOWN_TIMEOUT", OPT_INT, FIELD(shutdown_timeout_s), 1, 3600,
     "seconds allowed to drain in-flight requests on SIGTERM (default 10)"},
    {"db-pool", "DB_POOL_SIZE", OPT_INT, FIELD(db_pool_size), 1, 256,
     "database connections for requests (default: http threads)"},
    {"relay-batch", "RELAY_BATCH", OPT_INT, FIELD(relay_batch), 1, 10000,
     "outbox events per confirmed publish batch (default 500)"},
    {"prefetch", "CONSUMER_PREFETCH", OPT_INT, FIELD(consumer_prefetch), 1, 65535,
     "consumer basic.qos prefetch (default 500)"},
    {"consumer-batch", "CONSUMER_BATCH", OPT_INT, FIELD(consumer_batch), 1, 10000,
     "deliveries applied per transaction (default 200)"},
    {"idempotency-ttl", "IDEMPOTENCY_TTL", OPT_INT, FIELD(idempotency_ttl_s), 1,
     MAX_IDEMPOTENCY_TTL_S, "seconds an Idempotency-Key is remembered at least (default 86400)"},
    {"consistency-key", "CONSISTENCY_KEY", OPT_STRING, FIELD(consistency_key), 0, 0,
     "secret signing X-Consistency-Token; the same on every service"},
    {"consumer-max-attempts", "CONSUMER_MAX_ATTEMPTS", OPT_INT, FIELD(consumer_max_attempts), 1,
     1000, "failed applications of one message before it is dead-lettered (default 5)"},
    {"consumer-stall-timeout", "CONSUMER_STALL_TIMEOUT", OPT_INT, FIELD(consumer_stall_s), 1, 86400,
     "seconds of failing batches before /readyz reports the consumer (default 60)"},
    {"admin-token", "ADMIN_TOKEN", OPT_STRING, FIELD(admin_token), 0, 0,
     "bearer token of the admin routes (none: they answer 404)"},
    {"admin-token-file", "ADMIN_TOKEN_FILE", OPT_STRING, FIELD(admin_token_file), 0, 0,
     "file whose first line is the admin token"},
    {"ui-dir", "UI_DIR", OPT_STRING, FIELD(ui_dir), 0, 0,
     "folder of the dashboard's files (default: found next to the binary)"},
    {"user-service-url", "USER_SERVICE_URL", OPT_STRING, FIELD(user_service_url), 0, 0,
     "the user service, whose event log rebuilds read (default " DEFAULT_USER_SERVICE_URL ")"},
    {"order-service-url", "ORDER_SERVICE_URL", OPT_STRING, FIELD(order_service_url), 0, 0,
     "the order service, whose event log rebuilds read (default " DEFAULT_ORDER_SERVICE_URL ")"},
    {"source-token", "SOURCE_TOKEN", OPT_STRING, FIELD(source_token), 0, 0,
     "bearer token for the writers' event logs (default: the admin token)"},
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

static void usage(const struct config *cfg, FILE *out)
{
    fprintf(out, "usage: %s [options]\n\noptions (flag / environment variable):\n", cfg->service);
    for (size_t i = 0; i < ARRAY_LEN(options); i++)
        if (option_applies(cfg, &options[i]))
            fprintf(out, "  --%-22s %-22s %s\n", options[i].flag, options[i].env, options[i].help);
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
    char dbdefault[256];

    memset(cfg, 0, sizeof(*cfg));
    cfg->service = service;
    cfg->port = default_port;
    cfg->bind = xstrdup(DEFAULT_BIND);
    snprintf(dbdefault, sizeof(dbdefault), "sqlite:var/%s.db", service);
    cfg->database_url = xstrdup(dbdefault);
    cfg->amqp_url = xstrdup(DEFAULT_AMQP_URL);
    cfg->queue_type = xstrdup("classic");
    cfg->log_level = LOG_LVL_INFO;
    cfg->body_limit = DEFAULT_BODY_LIMIT;
    /* Writes never block a worker (they wait suspended for the group
     * commit) and reads are short, so one worker per core suffices. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->http_threads = cpus < 2 ? 2 : cpus > 16 ? 16 : (int)cpus;
    cfg->max_connections = 1000;
    cfg->idle_timeout_s = 30;
    cfg->shutdown_timeout_s = 10;
    cfg->db_pool_size = 0;
    cfg->relay_batch = 500;
    cfg->consumer_prefetch = 500;
    cfg->consumer_batch = 200;
    cfg->idempotency_ttl_s = DEFAULT_IDEMPOTENCY_TTL_S;
    cfg->consumer_max_attempts = DEFAULT_MAX_ATTEMPTS;
    cfg->consumer_stall_s = DEFAULT_STALL_S;
    cfg->user_service_url = xstrdup(DEFAULT_USER_SERVICE_URL);
    cfg->order_service_url = xstrdup(DEFAULT_ORDER_SERVICE_URL);

    /* Environment first, so that flags override it. */
    for (size_t i = 0; i < ARRAY_LEN(options); i++) {
        const char *v = getenv(options[i].env);
        if (v && *v && option_applies(cfg, &options[i]))
            set_option(cfg, &options[i], v);
    }

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(cfg, stdout);
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
