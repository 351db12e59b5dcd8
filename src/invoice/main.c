/*
 * invoice-service: configuration, database, the event consumer, the query
 * routes; then wait for SIGTERM and shut down in reverse order.
 */
#include <stdlib.h>

#include "consumer.h"
#include "http.h"
#include "invoice_service.h"
#include "log.h"
#include "service.h"
#include "util.h"

static const struct http_route routes[] = {
    {"GET", "/invoice-service/invoices", invoices_list},
    {"GET", "/invoice-service/invoices/{id}", invoices_get},
};

static const char *const consumed_queues[] = {"user", "account", "order", NULL};

static void readiness(void *app, int *database_ok, int *broker_ok)
{
    struct invoice_app *a = app;
    db *conn = db_pool_acquire(a->pool);
    *database_ok = db_ping(conn) == DB_OK;
    db_pool_release(a->pool, conn);
    *broker_ok = consumer_connected(a->consumer);
}

int main(int argc, char **argv)
{
    struct config cfg;
    struct invoice_app app = {0};
    http_server *http = NULL;
    char err[256];
    int status = EXIT_FAILURE;

    config_load(&cfg, SERVICE_NAME, 8083, argc, argv);
    log_init(cfg.service, cfg.log_level);
    service_block_signals();
    app.cfg = &cfg;

    app.pool = service_open_database(&cfg, invoice_migrations, invoice_migration_count);
    if (!app.pool)
        goto out;

    struct consumer_config consumer_cfg = {
        .database_url = cfg.database_url,
        .amqp_url = cfg.amqp_url,
        .service = cfg.service,
        .queue_type = cfg.queue_type,
        .queues = consumed_queues,
        .prefetch = cfg.consumer_prefetch,
        .batch_size = cfg.consumer_batch,
        .apply = projection_apply,
        .ctx = NULL,
    };
    app.consumer = consumer_start(&consumer_cfg);
    if (!app.consumer)
        goto out;

    struct http_server_config http_cfg = {
        .cfg = &cfg,
        .routes = routes,
        .route_count = ARRAY_LEN(routes),
        .ready = readiness,
        .app = &app,
    };
    http = http_server_start(&http_cfg, err, sizeof(err));
    if (!http) {
        log_error(NULL, "%s", err);
        goto out;
    }
    log_info(NULL, "listening on http://%s:%d/invoice-service", cfg.bind, cfg.port);

    int sig = service_wait_for_signal();
    log_info(NULL, "signal %d: shutting down", sig);
    http_server_stop(http);
    status = EXIT_SUCCESS;
out:
    consumer_stop(app.consumer);
    if (app.pool)
        db_pool_close(app.pool);
    log_info(NULL, "stopped");
    config_free(&cfg);
    return status;
}
