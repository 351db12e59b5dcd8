#include "deadletter.h"
#include "inbox.h"
#include "invoice_service.h"

/* customers: what the events told about each user (name, email, and the
 * address of the account with the highest id). invoices: one per user
 * and calendar month (UTC), with the running total in integer cents.
 * invoice_lines: one per order id, ever. */
static const char projection_sqlite[] =
    "CREATE TABLE customers ("
    "  user_id INTEGER PRIMARY KEY,"
    "  name TEXT,"
    "  email TEXT,"
    "  account_id INTEGER,"
    "  address1 TEXT, address2 TEXT, city TEXT, state TEXT, zip TEXT);"
    "CREATE TABLE invoices ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  user_id INTEGER NOT NULL,"
    "  year INTEGER NOT NULL,"
    "  month INTEGER NOT NULL,"
    "  total_cents INTEGER NOT NULL DEFAULT 0,"
    "  order_count INTEGER NOT NULL DEFAULT 0,"
    "  updated_at INTEGER NOT NULL,"
    "  UNIQUE (user_id, year, month));"
    "CREATE TABLE invoice_lines ("
    "  order_id INTEGER PRIMARY KEY,"
    "  invoice_id INTEGER NOT NULL REFERENCES invoices (id),"
    "  description TEXT,"
    "  amount_cents INTEGER NOT NULL,"
    "  purchased_at INTEGER NOT NULL);"
    "CREATE INDEX invoice_lines_invoice ON invoice_lines (invoice_id, purchased_at, order_id);";

static const char projection_postgres[] =
    "CREATE TABLE customers ("
    "  user_id BIGINT PRIMARY KEY,"
    "  name TEXT,"
    "  email TEXT,"
    "  account_id BIGINT,"
    "  address1 TEXT, address2 TEXT, city TEXT, state TEXT, zip TEXT);"
    "CREATE TABLE invoices ("
    "  id BIGSERIAL PRIMARY KEY,"
    "  user_id BIGINT NOT NULL,"
    "  year INTEGER NOT NULL,"
    "  month INTEGER NOT NULL,"
    "  total_cents BIGINT NOT NULL DEFAULT 0,"
    "  order_count INTEGER NOT NULL DEFAULT 0,"
    "  updated_at BIGINT NOT NULL,"
    "  UNIQUE (user_id, year, month));"
    "CREATE TABLE invoice_lines ("
    "  order_id BIGINT PRIMARY KEY,"
    "  invoice_id BIGINT NOT NULL REFERENCES invoices (id),"
    "  description TEXT,"
    "  amount_cents BIGINT NOT NULL,"
    "  purchased_at BIGINT NOT NULL);"
    "CREATE INDEX invoice_lines_invoice ON invoice_lines (invoice_id, purchased_at, order_id);";

const struct db_migration invoice_migrations[] = {
    {1, "projection", projection_sqlite, projection_postgres},
    {2, "inbox", inbox_schema_sqlite, inbox_schema_postgres},
    {3, "inbox positions", inbox_positions_sqlite, inbox_positions_postgres},
    {4, "delivery attempts", inbox_attempts_schema_sqlite, inbox_attempts_schema_postgres},
    {5, "dead letters", deadletter_schema_sqlite, deadletter_schema_postgres},
};
const size_t invoice_migration_count = sizeof(invoice_migrations) / sizeof(invoice_migrations[0]);
