/*
 * user-service: users and accounts (docs/api.md "User Service"). Each create
 * writes its rows and its events (user.created, account.created) in one
 * transaction through the outbox. The tables below describe the
 * endpoints; main.c routes them.
 */
#ifndef USER_SERVICE_H
#define USER_SERVICE_H

#include "create.h"
#include "db.h"
#include "rows.h"

extern const struct db_migration user_migrations[];
extern const size_t user_migration_count;

extern const struct create_spec user_create, account_create; /* POST */
extern const struct rows_list user_rows, account_rows;       /* GET list and GET {id} */

#endif
