/*
 * invoice-service: the read side. A consumer applies user, account and
 * order events to a projection of monthly invoices (projection.c); its
 * GET routes answer queries on it with the table of invoices.c.
 */
#ifndef INVOICE_SERVICE_H
#define INVOICE_SERVICE_H

#include "consumer.h"
#include "db.h"
#include "mq.h"
#include "rows.h"

extern const struct db_migration invoice_migrations[];
extern const size_t invoice_migration_count;

/* The consumer's apply callback (consumer.h); ctx is the service's
 * readwait, told the positions it applies (may be NULL). */
int projection_apply(db *conn, const struct mq_delivery *d, struct consumer_result *res,
                     void *ctx);
/* The consumer's committed callback: wakes the reads waiting for them. */
void projection_committed(void *ctx);

extern const struct rows_list invoice_rows; /* GET list and GET {id} */

/* GET list and GET {id}: the usual answers of invoice_rows, after waiting
 * for consistent_with tokens when the query has some (docs/api.md). */
void invoices_handle_list(http_request *req, void *app);
void invoices_handle_get(http_request *req, void *app);

#endif
