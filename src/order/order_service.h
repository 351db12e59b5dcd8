/*
 * order-service: orders (docs/api.md "Order Service"). Each create writes the
 * order and its order.created event in one transaction through the
 * outbox. The tables below describe the endpoints; main.c routes them.
 */
#ifndef ORDER_SERVICE_H
#define ORDER_SERVICE_H

#include <stdint.h>

#include "create.h"
#include "db.h"
#include "rows.h"

extern const struct db_migration order_migrations[];
extern const size_t order_migration_count;

extern const struct create_spec order_create; /* POST */
extern const struct rows_list order_rows;     /* GET list and GET {id} */

/*
 * What the POST's parse callback makes of one item: strings borrowed from
 * the request's JSON (its limits are the contract's, src/contract).
 * Declared here rather than kept in orders.c so that the fuzz harnesses
 * (tests/fuzz) can check what the parser accepts.
 */

struct new_order {
    int64_t user_id;
    int64_t amount_cents;
    const char *description;
    int64_t created_at; /* ms, when has_created_at */
    int has_created_at;
};

/* The fields a body may name (any other is refused). */
extern const char *const order_fields[];
extern const size_t order_field_count;

#endif
