/*
 * writer: the life of a write-side service (user-service, order-service):
 * configuration, database and migrations, the outbox relay, the HTTP
 * routes; then wait for SIGTERM and shut down in reverse order: stop
 * accepting and drain requests, let the relay finish its batch, close the
 * database.
 */
#ifndef LIB_WRITER_H
#define LIB_WRITER_H

#include <stddef.h>

#include "config.h"
#include "db.h"
#include "groupcommit.h"
#include "http.h"
#include "outbox.h"

/* What handlers of a write-side service receive as their app pointer. */
struct writer_app {
    const struct config *cfg;
    db_pool *pool;      /* reads */
    groupcommit *gc;    /* writes, sharing their commits */
    outbox_relay *relay;
};

struct writer_service {
    const char *name;        /* "order-service" */
    int default_port;
    const char *prefix;      /* "/order-service", for the start-up log */
    const struct db_migration *migrations;
    size_t migration_count;
    const struct http_route *routes;
    size_t route_count;
};

/* Runs the service until SIGTERM/SIGINT; returns the exit status. */
int writer_main(const struct writer_service *svc, int argc, char **argv);

#endif
