#include "idempotency.h"
#include "outbox.h"
#include "user_service.h"

/* Emails are unique regardless of case; they are stored as given. */
static const char users_sqlite[] =
    "CREATE TABLE users ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name TEXT NOT NULL,"
    "  email TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL);"
    "CREATE UNIQUE INDEX users_email_ci ON users (lower(email));";

static const char users_postgres[] =
    "CREATE TABLE users ("
    "  id BIGSERIAL PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  email TEXT NOT NULL,"
    "  created_at BIGINT NOT NULL);"
    "CREATE UNIQUE INDEX users_email_ci ON users (lower(email));";

static const char accounts_sqlite[] =
    "CREATE TABLE accounts ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  user_id INTEGER NOT NULL REFERENCES users (id),"
    "  address1 TEXT NOT NULL,"
    "  address2 TEXT,"
    "  city TEXT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  zip TEXT NOT NULL,"
    "  status TEXT NOT NULL CHECK (status IN ('open', 'closed')),"
    "  created_at INTEGER NOT NULL);"
    "CREATE INDEX accounts_user ON accounts (user_id);";

static const char accounts_postgres[] =
    "CREATE TABLE accounts ("
    "  id BIGSERIAL PRIMARY KEY,"
    "  user_id BIGINT NOT NULL REFERENCES users (id),"
    "  address1 TEXT NOT NULL,"
    "  address2 TEXT,"
    "  city TEXT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  zip TEXT NOT NULL,"
    "  status TEXT NOT NULL CHECK (status IN ('open', 'closed')),"
    "  created_at BIGINT NOT NULL);"
    "CREATE INDEX accounts_user ON accounts (user_id);";

const struct db_migration user_migrations[] = {
    {1, "users", users_sqlite, users_postgres},
    {2, "accounts", accounts_sqlite, accounts_postgres},
    {3, "outbox", outbox_schema_sqlite, outbox_schema_postgres},
    {4, "idempotency_keys", idempotency_schema_sqlite, idempotency_schema_postgres},
    {5, "outbox traceparent", outbox_trace_schema, outbox_trace_schema},
    {6, "event_log", outbox_positions_schema_sqlite, outbox_positions_schema_postgres},
};
const size_t user_migration_count = sizeof(user_migrations) / sizeof(user_migrations[0]);
