/* Orders: validation, insert, lists (docs/api.md "Order Service"). */
#include "contract.h"
#include "create.h"
#include "field.h"
#include "order_service.h"
#include "rows.h"
#include "service.h"
#include "util.h"

#define ORDER_COLUMNS "id, user_id, amount_cents, description, created_at"

const char *const order_fields[] = {"user_id", "amount", "description", "created_at"};
const size_t order_field_count = ARRAY_LEN(order_fields);

static int parse_order(json_t *obj, void *item, struct api_error *err)
{
    struct new_order *o = item;

    if (field_reject_unknown(obj, order_fields, ARRAY_LEN(order_fields), err) != 0 ||
        field_id(obj, "user_id", 1, &o->user_id, NULL, err) != 0 ||
        field_money(obj, "amount", &o->amount_cents, err) != 0 ||
        field_string(obj, "description", 0, CONTRACT_DESCRIPTION_MAX_CHARS, &o->description, err) !=
            0 ||
        field_time(obj, "created_at", &o->created_at, &o->has_created_at, err) != 0)
        return -1;
    return 0;
}

static int write_order(db *conn, db_stmt *st, struct jsonw *w)
{
    (void)conn;
    jsonw_object_begin(w);
    jsonw_key(w, "id");
    jsonw_int(w, db_col_int64(st, 0));
    jsonw_key(w, "user_id");
    jsonw_int(w, db_col_int64(st, 1));
    jsonw_key(w, "amount");
    jsonw_money(w, db_col_int64(st, 2));
    jsonw_key(w, "description");
    jsonw_string_or_null(w, db_col_text(st, 3));
    jsonw_key(w, "created_at");
    jsonw_time(w, db_col_int64(st, 4));
    jsonw_object_end(w);
    return DB_OK;
}

static int insert_order(db *conn, const void *item, struct jsonw *out, int64_t *id,
                        struct api_error *err)
{
    const struct new_order *o = item;
    db_stmt *st = db_prepare(conn,
                             "INSERT INTO orders (user_id, amount_cents, description,"
                             " created_at) VALUES ($1, $2, $3, $4)"
                             " RETURNING " ORDER_COLUMNS);
    if (!st)
        return DB_ERROR;
    db_bind_int64(st, 1, o->user_id);
    db_bind_int64(st, 2, o->amount_cents);
    db_bind_str(st, 3, o->description);
    db_bind_int64(st, 4, o->has_created_at ? o->created_at : util_now_ms());
    return create_returning(conn, st, write_order, out, id, err);
}

const struct create_spec order_create = {
    .item_size = sizeof(struct new_order),
    .parse = parse_order,
    .insert = insert_order,
    .event_type = CONTRACT_ORDER_CREATED,
    .location_prefix = "/order-service/orders/",
};

static const char *const order_columns[] = {"id", "user_id", "amount", "created_at", NULL};
static const char *const order_exprs[] = {"id", "user_id", "amount_cents", "created_at"};
static const struct listq_filter order_filters[] = {
    {.name = "user_id", .kind = LISTQ_ID},
};

static const char *const order_filter_sql[] = {"user_id = $%d"};

const struct rows_list order_rows = {
    .select = "SELECT " ORDER_COLUMNS " FROM orders",
    .id_expr = "id",
    .columns = order_columns,
    .column_exprs = order_exprs,
    .default_order = "id",
    .filters = order_filters,
    .filter_sql = order_filter_sql,
    .filter_count = ARRAY_LEN(order_filters),
    .write = write_order,
};
