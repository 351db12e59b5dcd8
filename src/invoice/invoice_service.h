/*
 * invoice-service: the read side. A consumer applies user, account and
 * order events to a projection of monthly invoices (projection.c); HTTP
 * handlers answer queries on it (invoices.c).
 */
#ifndef INVOICE_SERVICE_H
#define INVOICE_SERVICE_H

#include "consumer.h"
#include "db.h"
#include "http.h"
#include "mq.h"

#define SERVICE_NAME "invoice-service"

extern const struct db_migration invoice_migrations[];
extern const size_t invoice_migration_count;

/* The consumer's apply callback (consumer.h). */
int projection_apply(db *conn, const struct mq_delivery *d, struct consumer_result *res,
                     void *ctx);

void invoices_list(http_request *req, void *app);
void invoices_get(http_request *req, void *app);

#endif
