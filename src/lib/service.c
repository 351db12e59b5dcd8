#include "service.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"

void service_block_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int service_wait_for_signal(void)
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

db_pool *service_open_database(const struct config *cfg, const struct db_migration *migrations,
                               size_t count)
{
    char err[256], shown[512];
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

void service_db_error(int rc, struct api_error *err)
{
    if (rc == DB_BUSY || rc == DB_UNAVAILABLE)
        api_error_set(err, 503, "unavailable", NULL,
                      "the service's database is not usable right now; retry later");
    else
        api_error_set(err, 500, "internal", NULL, "internal error");
}
