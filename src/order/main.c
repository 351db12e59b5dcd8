/* order-service: orders, the second half of the write side. */
#include "order_service.h"
#include "contract.h"
#include "eventlog.h"
#include "route.h"
#include "util.h"
#include "writer.h"

static const struct http_document openapi = {openapi_json_start, openapi_json_end};

static const struct http_route routes[] = {
    ROUTE("POST", "/order-service/orders", create_handle, &order_create, 0),
    ROUTE("GET", "/order-service/orders", rows_handle_list, &order_rows, 0),
    ROUTE("GET", "/order-service/orders/{id}", rows_handle_get, &order_rows, 0),
    ROUTE("GET", "/order-service/events", eventlog_handle_list, NULL, 0), /* admin */
    ROUTE("GET", "/order-service/openapi.json", http_handle_document, &openapi, 0),
};

int main(int argc, char **argv)
{
    const struct service_spec spec = {
        .name = "order-service",
        .default_port = 8082,
        .prefix = "/order-service",
        .migrations = order_migrations,
        .migration_count = order_migration_count,
        .routes = routes,
        .route_count = ARRAY_LEN(routes),
        .events = &writer_events, /* group commit and outbox relay */
        .topology = &contract_topology,
    };
    return service_run(&spec, argc, argv);
}
