#include "service.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"

/* Blocks SIGTERM, SIGINT and SIGPIPE in every thread (called first, before
 * any thread starts) so that wait_for_signal() receives them. */
static void block_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Waits for SIGTERM or SIGINT; returns the signal number. */
static int wait_for_signal(void)
{
    sigset_t set;
    int sig = 0;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    while (sigwait(&set, &sig) != 0)
        ;
    return sig;
}

/* "sqlite:var/x.db" -> makes "var" if missing. Only one level: a deeper
 * missing path is the operator's to create. */
static void ensure_sqlite_dir(const char *url)
{
    const char *path = NULL;
    char dir[512];

    if (strncmp(url, "sqlite://", 9) == 0)
        path = url + 9;
    else if (strncmp(url, "sqlite:", 7) == 0)
        path = url + 7;
    if (!path)
        return;
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path || (size_t)(slash - path) >= sizeof(dir))
        return;
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = '\0';
    dir[strcspn(dir, "?")] = '\0';
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        log_warn(NULL, "cannot create directory %s: %s", dir, strerror(errno));
}

/* Opens the pool and applies the migrations; logs and returns NULL on
 * failure. Creates the directory of a relative SQLite path such as
 * var/x.db when it is missing. */
static db_pool *open_database(const struct config *cfg, const struct db_migration *migrations,
                              size_t count)
{
    char err[UTIL_ERR_MAX], shown[512];
    db *conn = NULL;
    db_pool *pool = NULL;

    log_redact_url(cfg->database_url, shown, sizeof(shown));
    ensure_sqlite_dir(cfg->database_url);
    if (db_open(cfg->database_url, &conn, err, sizeof(err)) != DB_OK) {
        log_error(NULL, "cannot open database %s: %s", shown, err);
        return NULL;
    }
    if (db_migrate(conn, migrations, count, err, sizeof(err)) != DB_OK) {
        log_error(NULL, "migrating %s failed: %s", shown, err);
        db_close(conn);
        return NULL;
    }
    db_close(conn);
    pool = db_pool_open(cfg->database_url, cfg->db_pool_size, err, sizeof(err));
    if (!pool) {
        log_error(NULL, "cannot open database pool %s: %s", shown, err);
        return NULL;
    }
    log_info(NULL, "database %s ready", shown);
    return pool;
}

static void readiness(void *app, struct http_readiness *r)
{
    struct service *s = app;
    const struct service_events *events = s->spec->events;
    db *conn = db_pool_acquire(s->pool);
    r->database_ok = db_ping(conn) == DB_OK;
    db_pool_release(s->pool, conn);
    r->broker_ok = events->connected(s);
    if (events->check) {
        r->extra_name = events->check_name;
        if (events->check(s, r->extra_problem, sizeof(r->extra_problem)))
            r->extra_problem[0] = '\0';
    }
}

int service_run(const struct service_spec *spec, int argc, char **argv)
{
    struct config cfg;
    struct service s = {.spec = spec, .cfg = &cfg};
    http_server *http = NULL;
    char err[UTIL_ERR_MAX];
    int status = EXIT_FAILURE;

    config_load(&cfg, spec->name, spec->default_port, argc, argv);
    log_init(cfg.service, cfg.log_level);
    block_signals();

    s.pool = open_database(&cfg, spec->migrations, spec->migration_count);
    if (!s.pool)
        goto out;

    if (spec->events->start(&s) != 0)
        goto out;

    struct http_server_config http_cfg = {
        .cfg = &cfg,
        .routes = spec->routes,
        .route_count = spec->route_count,
        .ready = readiness,
        .app = &s,
    };
    http = http_server_start(&http_cfg, err, sizeof(err));
    if (!http) {
        log_error(NULL, "%s", err);
        goto out;
    }
    log_info(NULL, "listening on http://%s:%d%s", cfg.bind, cfg.port, spec->prefix);

    int sig = wait_for_signal();
    log_info(NULL, "signal %d: shutting down", sig);
    http_server_stop(http); /* drains the requests in flight first */
    status = EXIT_SUCCESS;
out:
    spec->events->stop(&s);
    if (s.pool)
        db_pool_close(s.pool);
    log_info(NULL, "stopped");
    config_free(&cfg);
    return status;
}

void service_db_error(int rc, struct api_error *err)
{
    if (rc == DB_BUSY || rc == DB_UNAVAILABLE)
        api_error_set(err, 503, "unavailable", NULL,
                      "the service's database is not usable right now; retry later");
    else
        api_error_set(err, 500, "internal", NULL, "internal error");
}
