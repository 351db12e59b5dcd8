#include "idempotency.h"
#include "order_service.h"
#include "outbox.h"

/* amount is integer cents; created_at is ms since the epoch (UTC). */
static const char orders_sqlite[] =
    "CREATE TABLE orders ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  user_id INTEGER NOT NULL,"
    "  amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),"
    "  description TEXT,"
    "  created_at INTEGER NOT NULL);"
    "CREATE INDEX orders_user ON orders (user_id);";

static const char orders_postgres[] =
    "CREATE TABLE orders ("
    "  id BIGSERIAL PRIMARY KEY,"
    "  user_id BIGINT NOT NULL,"
    "  amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),"
    "  description TEXT,"
    "  created_at BIGINT NOT NULL);"
    "CREATE INDEX orders_user ON orders (user_id);";

const struct db_migration order_migrations[] = {
    {1, "orders", orders_sqlite, orders_postgres},
    {2, "outbox", outbox_schema_sqlite, outbox_schema_postgres},
    {3, "idempotency_keys", idempotency_schema_sqlite, idempotency_schema_postgres},
    {4, "outbox traceparent", outbox_trace_schema, outbox_trace_schema},
    {5, "event_log", outbox_positions_schema_sqlite, outbox_positions_schema_postgres},
};
const size_t order_migration_count = sizeof(order_migrations) / sizeof(order_migrations[0]);
