#include "writer.h"

#include <stdlib.h>

#include "log.h"
#include "service.h"

#define RELAY_POLL_INTERVAL_MS 1000
#define GROUP_COMMIT_MAX 256 /* requests sharing one commit, at most */

static void readiness(void *app, int *database_ok, int *broker_ok)
{
    struct writer_app *a = app;
    db *conn = db_pool_acquire(a->pool);
    *database_ok = db_ping(conn) == DB_OK;
    db_pool_release(a->pool, conn);
    *broker_ok = outbox_relay_connected(a->relay);
}

int writer_main(const struct writer_service *svc, int argc, char **argv)
{
    struct config cfg;
    struct writer_app app = {0};
    http_server *http = NULL;
    char err[256];
    int status = EXIT_FAILURE;

    config_load(&cfg, svc->name, svc->default_port, argc, argv);
    log_init(cfg.service, cfg.log_level);
    service_block_signals();
    app.cfg = &cfg;

    app.pool = service_open_database(&cfg, svc->migrations, svc->migration_count);
    if (!app.pool)
        goto out;

    app.gc = groupcommit_start(cfg.database_url, GROUP_COMMIT_MAX, err, sizeof(err));
    if (!app.gc) {
        log_error(NULL, "cannot start the group commit: %s", err);
        goto out;
    }

    struct outbox_relay_config relay_cfg = {
        .database_url = cfg.database_url,
        .amqp_url = cfg.amqp_url,
        .service = cfg.service,
        .queue_type = cfg.queue_type,
        .batch_size = cfg.relay_batch,
        .poll_interval_ms = RELAY_POLL_INTERVAL_MS,
        .gc = app.gc,
    };
    app.relay = outbox_relay_start(&relay_cfg);
    if (!app.relay)
        goto out;

    struct http_server_config http_cfg = {
        .cfg = &cfg,
        .routes = svc->routes,
        .route_count = svc->route_count,
        .ready = readiness,
        .app = &app,
    };
    http = http_server_start(&http_cfg, err, sizeof(err));
    if (!http) {
        log_error(NULL, "%s", err);
        goto out;
    }
    log_info(NULL, "listening on http://%s:%d%s", cfg.bind, cfg.port, svc->prefix);

    int sig = service_wait_for_signal();
    log_info(NULL, "signal %d: shutting down", sig);
    http_server_stop(http);
    status = EXIT_SUCCESS;
out:
    if (app.relay)
        outbox_relay_stop(app.relay); /* before the group commit it uses */
    groupcommit_stop(app.gc);
    if (app.pool)
        db_pool_close(app.pool);
    log_info(NULL, "stopped");
    config_free(&cfg);
    return status;
}
