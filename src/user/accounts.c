/* Accounts: shipping addresses of users (docs/api.md "User Service"). */
#include <stdio.h>
#include <string.h>

#include "contract.h"
#include "create.h"
#include "field.h"
#include "rows.h"
#include "service.h"
#include "user_service.h"
#include "util.h"

#define ACCOUNT_COLUMNS "id, user_id, address1, address2, city, state, zip, status, created_at"

const char *const account_fields[] = {"user_id", "address1", "address2", "city",
                                      "state",   "zip",      "status"};
const size_t account_field_count = ARRAY_LEN(account_fields);

static int parse_account(json_t *obj, void *item, struct api_error *err)
{
    struct new_account *a = item;

    if (field_reject_unknown(obj, account_fields, ARRAY_LEN(account_fields), err) != 0 ||
        field_id(obj, "user_id", 1, &a->user_id, NULL, err) != 0 ||
        field_string(obj, "address1", 1, CONTRACT_ADDRESS_MAX_CHARS, &a->address1, err) != 0 ||
        field_string(obj, "address2", 0, CONTRACT_ADDRESS_MAX_CHARS, &a->address2, err) != 0 ||
        field_string(obj, "city", 1, CONTRACT_ADDRESS_MAX_CHARS, &a->city, err) != 0 ||
        field_string(obj, "state", 1, CONTRACT_ADDRESS_MAX_CHARS, &a->state, err) != 0 ||
        field_string(obj, "zip", 1, CONTRACT_ADDRESS_MAX_CHARS, &a->zip, err) != 0 ||
        field_enum(obj, "status", contract_account_statuses, CONTRACT_ACCOUNT_STATUS_COUNT,
                   &a->status, err) != 0)
        return -1;
    if (!a->status)
        a->status = contract_account_statuses[0]; /* "open" */
    return 0;
}

static int write_account(db *conn, db_stmt *st, struct jsonw *w)
{
    static const char *const text_keys[] = {"address1", "address2", "city",
                                            "state",    "zip",      "status"};
    (void)conn;
    jsonw_object_begin(w);
    jsonw_key(w, "id");
    jsonw_int(w, db_col_int64(st, 0));
    jsonw_key(w, "user_id");
    jsonw_int(w, db_col_int64(st, 1));
    for (size_t i = 0; i < ARRAY_LEN(text_keys); i++) {
        jsonw_key(w, text_keys[i]);
        jsonw_string_or_null(w, db_col_text(st, (int)i + 2));
    }
    jsonw_key(w, "created_at");
    jsonw_time(w, db_col_int64(st, 8));
    jsonw_object_end(w);
    return DB_OK;
}

static int user_exists(db *conn, int64_t user_id, int *exists)
{
    db_stmt *st = db_prepare(conn, "SELECT 1 FROM users WHERE id = $1");
    int rc;

    if (!st)
        return DB_ERROR;
    db_bind_int64(st, 1, user_id);
    rc = db_step(st);
    db_stmt_reset(st);
    if (rc != DB_ROW && rc != DB_DONE)
        return rc;
    *exists = rc == DB_ROW;
    return DB_OK;
}

static int insert_account(db *conn, const void *item, struct jsonw *out, int64_t *id,
                          struct api_error *err)
{
    const struct new_account *a = item;
    int exists = 0;
    int rc = user_exists(conn, a->user_id, &exists);

    if (rc != DB_OK) {
        service_db_error(rc, err);
        return rc;
    }
    if (!exists) {
        api_error_set(err, 422, "unknown_user", "user_id", "user %lld does not exist",
                      (long long)a->user_id);
        return DB_CONSTRAINT;
    }
    db_stmt *st = db_prepare(conn,
                             "INSERT INTO accounts (user_id, address1, address2, city,"
                             " state, zip, status, created_at)"
                             " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                             " RETURNING " ACCOUNT_COLUMNS);
    if (!st)
        return DB_ERROR;
    db_bind_int64(st, 1, a->user_id);
    db_bind_str(st, 2, a->address1);
    db_bind_str(st, 3, a->address2);
    db_bind_str(st, 4, a->city);
    db_bind_str(st, 5, a->state);
    db_bind_str(st, 6, a->zip);
    db_bind_str(st, 7, a->status);
    db_bind_int64(st, 8, util_now_ms());
    return create_returning(conn, st, write_account, out, id, err);
}

const struct create_spec account_create = {
    .item_size = sizeof(struct new_account),
    .parse = parse_account,
    .insert = insert_account,
    .event_type = CONTRACT_ACCOUNT_CREATED,
    .location_prefix = "/system-api/accounts/",
};

static const char *const account_columns[] = {"id",  "user_id", "city",       "state",
                                              "zip", "status",  "created_at", NULL};
static const struct listq_filter account_filters[] = {
    {.name = "user_id", .kind = LISTQ_ID},
    {.name = "status", .kind = LISTQ_ENUM, .values = contract_account_statuses},
};

static const char *const account_filter_sql[] = {"user_id = $%d", "status = $%d"};

const struct rows_list account_rows = {
    .select = "SELECT " ACCOUNT_COLUMNS " FROM accounts",
    .id_expr = "id",
    .columns = account_columns,
    .column_exprs = account_columns,
    .default_order = "id",
    .filters = account_filters,
    .filter_sql = account_filter_sql,
    .filter_count = ARRAY_LEN(account_filters),
    .write = write_account,
};
