/*
 * service: the start-up and shutdown steps every service shares, so each
 * main.c reads as a table of contents.
 */
#ifndef LIB_SERVICE_H
#define LIB_SERVICE_H

#include <stddef.h>

#include "api_error.h"
#include "config.h"
#include "db.h"

/* Blocks SIGTERM, SIGINT and SIGPIPE in every thread (call first, before
 * any thread starts) so that service_wait_for_signal() receives them. */
void service_block_signals(void);

/* Waits for SIGTERM or SIGINT; returns the signal number. */
int service_wait_for_signal(void);

/* Opens the pool and applies the migrations; logs and returns NULL on
 * failure. Creates the directory of a relative SQLite path such as
 * var/x.db when it is missing. */
db_pool *service_open_database(const struct config *cfg, const struct db_migration *migrations,
                               size_t count);

/* Maps a failed database call to the answer a client gets: 503
 * unavailable for busy or lost databases, 500 otherwise. */
void service_db_error(int rc, struct api_error *err);

#endif
