/*
 * user-service: users and accounts (API.md "User Service"). Each create
 * writes its rows and its events (user.created, account.created) in one
 * transaction through the outbox. Handlers receive a struct service
 * (service.h).
 */
#ifndef USER_SERVICE_H
#define USER_SERVICE_H

#include "db.h"
#include "http.h"

#define SERVICE_NAME "user-service"

extern const struct db_migration user_migrations[];
extern const size_t user_migration_count;

void users_create(http_request *req, void *app);
void users_list(http_request *req, void *app);
void users_get(http_request *req, void *app);

void accounts_create(http_request *req, void *app);
void accounts_list(http_request *req, void *app);
void accounts_get(http_request *req, void *app);

#endif
