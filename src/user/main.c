/* user-service: users and accounts, the first half of the write side. */
#include "user_service.h"
#include "util.h"
#include "writer.h"

static const struct http_route routes[] = {
    {"POST", "/system-api/users", users_create},
    {"GET", "/system-api/users", users_list},
    {"GET", "/system-api/users/{id}", users_get},
    {"POST", "/system-api/accounts", accounts_create},
    {"GET", "/system-api/accounts", accounts_list},
    {"GET", "/system-api/accounts/{id}", accounts_get},
};

int main(int argc, char **argv)
{
    const struct service_spec service = {
        .name = SERVICE_NAME,
        .default_port = 8081,
        .prefix = "/system-api",
        .migrations = user_migrations,
        .migration_count = user_migration_count,
        .routes = routes,
        .route_count = ARRAY_LEN(routes),
        .events = &writer_events, /* group commit and outbox relay */
    };
    return service_run(&service, argc, argv);
}
