/*
 * service: the life every service shares, so that each main.c only says
 * what is its own. service_run() loads the configuration, opens the
 * database (migrations applied), starts the service's events (the outbox
 * relay of a writer, the consumer of invoice-service), serves its routes,
 * waits for SIGTERM or SIGINT, and shuts down in reverse order: HTTP
 * drains the requests in flight first, then the events stop, then the
 * database closes.
 */
#ifndef LIB_SERVICE_H
#define LIB_SERVICE_H

#include <stddef.h>

#include "api_error.h"
#include "config.h"
#include "consumer.h"
#include "db.h"
#include "groupcommit.h"
#include "http.h"
#include "outbox.h"
#include "readwait.h"

struct service_spec;

/* A running service: what its handlers receive as their app pointer and
 * its events hooks as theirs. Owned by service_run(), valid until it
 * returns; the hooks set and stop the fields of their own kind. */
struct service {
    const struct service_spec *spec;
    const struct config *cfg;
    db_pool *pool;       /* reads */
    groupcommit *gc;     /* writers: creates share its commits */
    outbox_relay *relay; /* writers: publishes what the creates appended */
    consumer *consumer;  /* invoice-service: applies the events it reads */
    readwait *readwait;  /* invoice-service: reads waiting for that */
};

/* How a service exchanges events with the broker (writer.h for the write
 * side; invoice-service has its own). */
struct service_events {
    /* Runs once the database is ready, before HTTP starts; returns 0, or
     * -1 (logged) to give up. */
    int (*start)(struct service *s);
    /* For /readyz: whether the broker connection is up. */
    int (*connected)(const struct service *s);
    /* Optional, for /readyz: a third check named check_name ("consumer")
     * that fills problem with why it fails and returns 0, or returns 1. */
    const char *check_name;
    int (*check)(const struct service *s, char *problem, size_t len);
    /* Runs after HTTP has drained; also after a failed start-up, so it
     * stops what was started and passes over what was not. */
    void (*stop)(struct service *s);
};

/* What makes one service differ from another. */
struct service_spec {
    const char *name; /* "order-service": logs, event source, --help */
    int default_port;
    const char *prefix; /* "/order-service", for the start-up log */
    const struct db_migration *migrations;
    size_t migration_count;
    const struct http_route *routes;
    size_t route_count;
    const struct service_events *events;
    const struct mq_topology *topology; /* the broker's, declared by events */
};

/* The service's own OpenAPI document, openapi/<service>.json, which the
 * Makefile links into each service binary (embed_openapi.S); each main.c
 * serves it at <prefix>/openapi.json with http_handle_document(). */
extern const char openapi_json_start[];
extern const char openapi_json_end[];

/* Runs the service until SIGTERM/SIGINT; returns the exit status. */
int service_run(const struct service_spec *spec, int argc, char **argv);

/* Maps a failed database call to the answer a client gets: 503
 * unavailable for busy or lost databases, 500 otherwise. */
void service_db_error(int rc, struct api_error *err);

#endif
