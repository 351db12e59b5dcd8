/*
 * invoice-service: the read side. Its routes answer queries on the
 * invoices; its events are the consumer that applies user, account and
 * order events to them (projection.c).
 */
#include <string.h>

#include "consumer.h"
#include "contract.h"
#include "deadletter.h"
#include "invoice_service.h"
#include "log.h"
#include "rebuild.h"
#include "route.h"
#include "service.h"
#include "util.h"

/* The consumer's listeners: reads waiting for it, and the event stream. */
static struct invoice_live live;
static const struct http_document openapi = {openapi_json_start, openapi_json_end};

static const struct http_route routes[] = {
    ROUTE("GET", "/invoice-service/invoices", invoices_handle_list, &invoice_rows, 0),
    ROUTE("GET", "/invoice-service/invoices/{id}", invoices_handle_get, &invoice_rows, 0),
    /* Admin routes (admin.h): 404 unless the service has an admin token. */
    ROUTE("GET", "/invoice-service/dead-letters", deadletter_handle_list, &deadletter_rows, 0),
    ROUTE("GET", "/invoice-service/dead-letters/{id}", deadletter_handle_get, &deadletter_rows, 0),
    ROUTE("POST", "/invoice-service/dead-letters/{id}/redrive", deadletter_handle_redrive, NULL, 1),
    ROUTE("POST", "/invoice-service/dead-letters/redrive", deadletter_handle_redrive_all, NULL, 1),
    ROUTE("POST", "/invoice-service/rebuilds", rebuild_handle_create, NULL, 1),
    ROUTE("GET", "/invoice-service/rebuilds/{id}", rebuild_handle_get, NULL, 0),
    /* The live dashboard (README.md "The dashboard") and its events. */
    ROUTE("GET", "/invoice-service/stream", stream_handle, &live, 0),
    ROUTE("GET", "/invoice-service/ui", ui_handle_redirect, NULL, 0),
    ROUTE("GET", "/invoice-service/ui/", ui_handle_file, &ui_index, 0),
    ROUTE("GET", "/invoice-service/ui/index.html", ui_handle_file, &ui_index, 0),
    ROUTE("GET", "/invoice-service/ui/app.js", ui_handle_file, &ui_script, 0),
    ROUTE("GET", "/invoice-service/ui/style.css", ui_handle_file, &ui_style, 0),
    ROUTE("GET", "/invoice-service/openapi.json", http_handle_document, &openapi, 0),
};

/* The reads that wait for consistency tokens first: the consumer wakes
 * them. */
static int start_consumer(struct service *s)
{
    const struct config *cfg = s->cfg;
    char err[UTIL_ERR_MAX];

    if (ui_set_dir(cfg->ui_dir) != 0)
        return -1;
    /* First: no rebuild of this process runs yet (rebuild.h). */
    if (rebuild_service_start(s) != 0)
        return -1;
    s->readwait = readwait_start(cfg->database_url, err, sizeof(err));
    if (!s->readwait) {
        log_error(NULL, "cannot start consistent reads: %s", err);
        return -1;
    }
    live.readwait = s->readwait;
    live.hub = sse_hub_start(err, sizeof(err));
    if (!live.hub) {
        log_error(NULL, "cannot start the event stream: %s", err);
        return -1;
    }
    struct consumer_config consumer_cfg = {
        .database_url = cfg->database_url,
        .amqp_url = cfg->amqp_url,
        .service = cfg->service,
        .queue_type = cfg->queue_type,
        .topology = s->spec->topology,
        .dead_letter_queue = CONTRACT_DEAD_LETTER_QUEUE,
        .prefetch = cfg->consumer_prefetch,
        .batch_size = cfg->consumer_batch,
        .max_attempts = cfg->consumer_max_attempts,
        .stall_s = cfg->consumer_stall_s,
        .apply = projection_apply,
        .begin = projection_begin,
        .committed = projection_committed,
        .ctx = &live,
    };
    s->consumer = consumer_start(&consumer_cfg);
    return s->consumer ? 0 : -1;
}

static int broker_connected(const struct service *s)
{
    return consumer_connected(s->consumer);
}

static int consumer_healthy(const struct service *s, char *problem, size_t len)
{
    return consumer_check(s->consumer, problem, len);
}

/* Deliveries not yet acked go back to their queues. HTTP has drained, so
 * no read waits any more. */
static void stop_consumer(struct service *s)
{
    rebuild_service_stop();
    consumer_stop(s->consumer);
    readwait_stop(s->readwait);
    sse_hub_stop(live.hub);
    live.hub = NULL;
    for (size_t i = 0; i < live.pending_count; i++)
        free(live.pending[i]);
    free(live.pending);
    live.pending = NULL;
    live.pending_count = 0;
}

static const struct service_events consumer_events = {
    .start = start_consumer,
    .connected = broker_connected,
    .check_name = "consumer",
    .check = consumer_healthy,
    .stop = stop_consumer,
};

int main(int argc, char **argv)
{
    /* The operators' form of a rebuild (README.md "Rebuilding the
     * invoices"): no HTTP, same database and code. */
    if (argc > 1 && strcmp(argv[1], "rebuild") == 0)
        return rebuild_cli(argc - 1, argv + 1);
    const struct service_spec spec = {
        .name = "invoice-service",
        .default_port = 8083,
        .prefix = "/invoice-service",
        .migrations = invoice_migrations,
        .migration_count = invoice_migration_count,
        .routes = routes,
        .route_count = ARRAY_LEN(routes),
        .events = &consumer_events,
        .topology = &contract_topology,
    };
    return service_run(&spec, argc, argv);
}
