/*
 * user-service: users and accounts (docs/api.md "User Service"). Each create
 * writes its rows and its events (user.created, account.created) in one
 * transaction through the outbox. The tables below describe the
 * endpoints; main.c routes them.
 */
#ifndef USER_SERVICE_H
#define USER_SERVICE_H

#include <stdint.h>

#include "create.h"
#include "db.h"
#include "rows.h"

extern const struct db_migration user_migrations[];
extern const size_t user_migration_count;

extern const struct create_spec user_create, account_create; /* POST */
extern const struct rows_list user_rows, account_rows;       /* GET list and GET {id} */

/*
 * What the POSTs' parse callbacks make of one item: strings borrowed from
 * the request's JSON (their limits are the contract's, src/contract).
 * Declared here rather than kept in users.c and accounts.c so that the fuzz
 * harnesses (tests/fuzz) can check what the parsers accept.
 */

struct new_user {
    const char *name;
    const char *email;
};

struct new_account {
    int64_t user_id;
    const char *address1, *address2, *city, *state, *zip, *status;
};

/* The fields a body may name (any other is refused). */
extern const char *const user_fields[];
extern const size_t user_field_count;
extern const char *const account_fields[];
extern const size_t account_field_count;

#endif
