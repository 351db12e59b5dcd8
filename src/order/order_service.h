/*
 * order-service: orders (docs/api.md "Order Service"). Each create writes the
 * order and its order.created event in one transaction through the
 * outbox. The tables below describe the endpoints; main.c routes them.
 */
#ifndef ORDER_SERVICE_H
#define ORDER_SERVICE_H

#include "create.h"
#include "db.h"
#include "rows.h"

extern const struct db_migration order_migrations[];
extern const size_t order_migration_count;

extern const struct create_spec order_create; /* POST */
extern const struct rows_list order_rows;     /* GET list and GET {id} */

#endif
