/*
 * config: a service's settings from flags, then environment, then defaults.
 *
 *   --port / PORT, --bind / BIND, --database-url / DATABASE_URL,
 *   --amqp-url / AMQP_URL, --log-level / LOG_LEVEL, and the tuning knobs
 *   listed by --help. Flags take "--name value" or "--name=value".
 *
 * config_load() answers --help and --version itself (exit 0) and exits 2
 * with a message on a bad flag or value. Strings in struct config are
 * owned by it and freed by config_free().
 */
#ifndef LIB_CONFIG_H
#define LIB_CONFIG_H

#include <stddef.h>

#include "log.h"

struct config {
    const char *service; /* "order-service"; borrowed from the caller */
    int port;
    char *bind;
    char *database_url;
    char *amqp_url;
    char *queue_type; /* "classic" or "quorum" */
    enum log_level log_level;
    size_t body_limit; /* bytes */
    int http_threads;  /* MHD worker threads */
    int max_connections;
    int idle_timeout_s;     /* idle keep-alive / slow client timeout */
    int shutdown_timeout_s; /* bound on draining in-flight requests */
    int db_pool_size;
    int relay_batch;           /* outbox rows per confirmed batch */
    int consumer_prefetch;     /* basic.qos for the invoice consumer */
    int consumer_batch;        /* deliveries per transaction */
    int idempotency_ttl_s;     /* writers: Idempotency-Key kept at least this */
    char *consistency_key;     /* signs consistency tokens; NULL: built-in */
    int consumer_max_attempts; /* failed applications before a dead letter */
    int consumer_stall_s;      /* failing this long makes /readyz 503 */
    /* The admin token (admin.h): from --admin-token, or the first line of
     * --admin-token-file; NULL when neither is given. Never logged. */
    char *admin_token;
    char *admin_token_file;
    char *ui_dir; /* invoice-service: the dashboard's files; NULL: default */
    /* invoice-service: where rebuilds read the writers' event logs, and
     * the bearer token they send (NULL: the admin token). Never logged. */
    char *user_service_url;
    char *order_service_url;
    char *source_token;
};

/* default_port and service name differ per service. */
void config_load(struct config *cfg, const char *service, int default_port, int argc, char **argv);
void config_free(struct config *cfg);

#endif
