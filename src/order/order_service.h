/*
 * order-service: orders (API.md "Order Service"). Each create writes the
 * order and its order.created event in one transaction through the
 * outbox. Handlers receive a struct service (service.h).
 */
#ifndef ORDER_SERVICE_H
#define ORDER_SERVICE_H

#include "db.h"
#include "http.h"

#define SERVICE_NAME "order-service"

extern const struct db_migration order_migrations[];
extern const size_t order_migration_count;

void orders_create(http_request *req, void *app);
void orders_list(http_request *req, void *app);
void orders_get(http_request *req, void *app);

#endif
