/* order-service: orders, the second half of the write side. */
#include "order_service.h"
#include "util.h"
#include "writer.h"

static const struct http_route routes[] = {
    {"POST", "/order-service/orders", orders_create},
    {"GET", "/order-service/orders", orders_list},
    {"GET", "/order-service/orders/{id}", orders_get},
};

int main(int argc, char **argv)
{
    const struct service_spec service = {
        .name = SERVICE_NAME,
        .default_port = 8082,
        .prefix = "/order-service",
        .migrations = order_migrations,
        .migration_count = order_migration_count,
        .routes = routes,
        .route_count = ARRAY_LEN(routes),
        .events = &writer_events, /* group commit and outbox relay */
    };
    return service_run(&service, argc, argv);
}
