/* user-service: users and accounts, the first half of the write side. */
#include "user_service.h"
#include "contract.h"
#include "eventlog.h"
#include "route.h"
#include "util.h"
#include "writer.h"

static const struct http_document openapi = {openapi_json_start, openapi_json_end};

static const struct http_route routes[] = {
    ROUTE("POST", "/system-api/users", create_handle, &user_create, 0),
    ROUTE("GET", "/system-api/users", rows_handle_list, &user_rows, 0),
    ROUTE("GET", "/system-api/users/{id}", rows_handle_get, &user_rows, 0),
    ROUTE("POST", "/system-api/accounts", create_handle, &account_create, 0),
    ROUTE("GET", "/system-api/accounts", rows_handle_list, &account_rows, 0),
    ROUTE("GET", "/system-api/accounts/{id}", rows_handle_get, &account_rows, 0),
    ROUTE("GET", "/system-api/events", eventlog_handle_list, NULL, 0), /* admin */
    ROUTE("GET", "/system-api/openapi.json", http_handle_document, &openapi, 0),
};

int main(int argc, char **argv)
{
    const struct service_spec spec = {
        .name = "user-service",
        .default_port = 8081,
        .prefix = "/system-api",
        .migrations = user_migrations,
        .migration_count = user_migration_count,
        .routes = routes,
        .route_count = ARRAY_LEN(routes),
        .events = &writer_events, /* group commit and outbox relay */
        .topology = &contract_topology,
    };
    return service_run(&spec, argc, argv);
}
