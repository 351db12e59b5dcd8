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

/* Rebuilds (rebuild.h): their rows, and the shadow model they fill, which
 * is the projection's schema again under other names, with its own ids
 * (never shown: the swap keeps or draws the live ones). At most one
 * rebuild runs: the partial unique index refuses a second running row,
 * whoever inserts it. customers.name_event: the id of the event that gave
 * the name, so that a rebuild keeps a name no log holds. */
static const char rebuild_sqlite[] =
    "CREATE TABLE rebuilds ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  status TEXT NOT NULL,"
    "  events_applied INTEGER NOT NULL DEFAULT 0,"
    "  started_at INTEGER NOT NULL,"
    "  finished_at INTEGER,"
    "  error TEXT);"
    "CREATE UNIQUE INDEX rebuilds_one_running ON rebuilds (status) WHERE status = 'running';"
    "ALTER TABLE customers ADD COLUMN name_event TEXT;"
    "CREATE TABLE rebuild_customers ("
    "  user_id INTEGER PRIMARY KEY,"
    "  name TEXT,"
    "  email TEXT,"
    "  account_id INTEGER,"
    "  address1 TEXT, address2 TEXT, city TEXT, state TEXT, zip TEXT,"
    "  name_event TEXT);"
    "CREATE TABLE rebuild_invoices ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  user_id INTEGER NOT NULL,"
    "  year INTEGER NOT NULL,"
    "  month INTEGER NOT NULL,"
    "  total_cents INTEGER NOT NULL DEFAULT 0,"
    "  order_count INTEGER NOT NULL DEFAULT 0,"
    "  updated_at INTEGER NOT NULL,"
    "  UNIQUE (user_id, year, month));"
    "CREATE TABLE rebuild_invoice_lines ("
    "  order_id INTEGER PRIMARY KEY,"
    "  invoice_id INTEGER NOT NULL REFERENCES rebuild_invoices (id),"
    "  description TEXT,"
    "  amount_cents INTEGER NOT NULL,"
    "  purchased_at INTEGER NOT NULL);"
    "CREATE INDEX rebuild_invoice_lines_invoice ON rebuild_invoice_lines (invoice_id);"
    "CREATE TABLE rebuild_inbox ("
    "  event_id TEXT PRIMARY KEY,"
    "  type TEXT NOT NULL,"
    "  applied_at INTEGER NOT NULL,"
    "  source TEXT,"
    "  source_seq INTEGER);";

static const char rebuild_postgres[] =
    "CREATE TABLE rebuilds ("
    "  id BIGSERIAL PRIMARY KEY,"
    "  status TEXT NOT NULL,"
    "  events_applied BIGINT NOT NULL DEFAULT 0,"
    "  started_at BIGINT NOT NULL,"
    "  finished_at BIGINT,"
    "  error TEXT);"
    "CREATE UNIQUE INDEX rebuilds_one_running ON rebuilds (status) WHERE status = 'running';"
    "ALTER TABLE customers ADD COLUMN name_event TEXT;"
    "CREATE TABLE rebuild_customers ("
    "  user_id BIGINT PRIMARY KEY,"
    "  name TEXT,"
    "  email TEXT,"
    "  account_id BIGINT,"
    "  address1 TEXT, address2 TEXT, city TEXT, state TEXT, zip TEXT,"
    "  name_event TEXT);"
    "CREATE TABLE rebuild_invoices ("
    "  id BIGSERIAL PRIMARY KEY,"
    "  user_id BIGINT NOT NULL,"
    "  year INTEGER NOT NULL,"
    "  month INTEGER NOT NULL,"
    "  total_cents BIGINT NOT NULL DEFAULT 0,"
    "  order_count INTEGER NOT NULL DEFAULT 0,"
    "  updated_at BIGINT NOT NULL,"
    "  UNIQUE (user_id, year, month));"
    "CREATE TABLE rebuild_invoice_lines ("
    "  order_id BIGINT PRIMARY KEY,"
    "  invoice_id BIGINT NOT NULL REFERENCES rebuild_invoices (id),"
    "  description TEXT,"
    "  amount_cents BIGINT NOT NULL,"
    "  purchased_at BIGINT NOT NULL);"
    "CREATE INDEX rebuild_invoice_lines_invoice ON rebuild_invoice_lines (invoice_id);"
    "CREATE TABLE rebuild_inbox ("
    "  event_id TEXT PRIMARY KEY,"
    "  type TEXT NOT NULL,"
    "  applied_at BIGINT NOT NULL,"
    "  source TEXT,"
    "  source_seq BIGINT);";

const struct db_migration invoice_migrations[] = {
    {1, "projection", projection_sqlite, projection_postgres},
    {2, "inbox", inbox_schema_sqlite, inbox_schema_postgres},
    {3, "inbox positions", inbox_positions_sqlite, inbox_positions_postgres},
    {4, "delivery attempts", inbox_attempts_schema_sqlite, inbox_attempts_schema_postgres},
    {5, "dead letters", deadletter_schema_sqlite, deadletter_schema_postgres},
    {6, "rebuilds", rebuild_sqlite, rebuild_postgres},
};
const size_t invoice_migration_count = sizeof(invoice_migrations) / sizeof(invoice_migrations[0]);
