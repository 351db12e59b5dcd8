/*
 * Invoice queries (docs/api.md "Invoice Service"). An invoice is assembled at
 * read time from its row, the customer's latest name/email/address, and
 * its lines sorted by purchase time then order id.
 */
#include "invoice_service.h"
#include "rows.h"
#include "timeutil.h"
#include "util.h"

#define INVOICE_SELECT                                                                 \
    "SELECT i.id, i.user_id, i.year, i.month, c.name, c.email, c.account_id,"         \
    " c.address1, c.address2, c.city, c.state, c.zip, i.order_count, i.total_cents," \
    " i.updated_at FROM invoices i LEFT JOIN customers c ON c.user_id = i.user_id"

enum {
    COL_ID, COL_USER_ID, COL_YEAR, COL_MONTH, COL_NAME, COL_EMAIL, COL_ACCOUNT_ID,
    COL_ADDRESS1, COL_ADDRESS2, COL_CITY, COL_STATE, COL_ZIP, COL_ORDER_COUNT, COL_TOTAL,
    COL_UPDATED_AT,
};

static int write_lines(db *conn, int64_t invoice_id, struct jsonw *w)
{
    db_stmt *st = db_prepare(conn, "SELECT order_id, description, amount_cents, purchased_at"
                                   " FROM invoice_lines WHERE invoice_id = $1"
                                   " ORDER BY purchased_at, order_id");
    int rc;

    if (!st)
        return DB_ERROR;
    db_bind_int64(st, 1, invoice_id);
    jsonw_array_begin(w);
    while ((rc = db_step(st)) == DB_ROW) {
        jsonw_object_begin(w);
        jsonw_key(w, "order_id");
        jsonw_int(w, db_col_int64(st, 0));
        jsonw_key(w, "description");
        jsonw_string_or_null(w, db_col_text(st, 1));
        jsonw_key(w, "amount");
        jsonw_money(w, db_col_int64(st, 2));
        jsonw_key(w, "purchase_dt");
        jsonw_time(w, db_col_int64(st, 3));
        jsonw_object_end(w);
    }
    jsonw_array_end(w);
    db_stmt_reset(st);
    return rc == DB_DONE ? DB_OK : rc;
}

/* Writes the invoice of the current row of st, with its lines. */
static int write_invoice(db *conn, db_stmt *st, struct jsonw *w)
{
    char date[TIMEUTIL_TEXT_MAX];
    int year = (int)db_col_int64(st, COL_YEAR), month = (int)db_col_int64(st, COL_MONTH);

    timeutil_format_date(timeutil_month_start(year, month), date);
    jsonw_object_begin(w);
    jsonw_key(w, "id");
    jsonw_int(w, db_col_int64(st, COL_ID));
    jsonw_key(w, "user_id");
    jsonw_int(w, db_col_int64(st, COL_USER_ID));
    jsonw_key(w, "year");
    jsonw_int(w, year);
    jsonw_key(w, "month");
    jsonw_int(w, month);
    jsonw_key(w, "invoice_dt");
    jsonw_string(w, date);
    jsonw_key(w, "name");
    jsonw_string_or_null(w, db_col_text(st, COL_NAME));
    jsonw_key(w, "email");
    jsonw_string_or_null(w, db_col_text(st, COL_EMAIL));
    jsonw_key(w, "shipping_address");
    if (db_col_is_null(st, COL_ACCOUNT_ID)) {
        jsonw_null(w);
    } else {
        static const char *const keys[] = {"address1", "address2", "city", "state", "zip"};
        jsonw_object_begin(w);
        for (int i = 0; i < (int)ARRAY_LEN(keys); i++) {
            jsonw_key(w, keys[i]);
            jsonw_string_or_null(w, db_col_text(st, COL_ADDRESS1 + i));
        }
        jsonw_object_end(w);
    }
    jsonw_key(w, "orders");
    int rc = write_lines(conn, db_col_int64(st, COL_ID), w);
    jsonw_key(w, "order_count");
    jsonw_int(w, db_col_int64(st, COL_ORDER_COUNT));
    jsonw_key(w, "total");
    jsonw_money(w, db_col_int64(st, COL_TOTAL));
    jsonw_key(w, "updated_at");
    jsonw_time(w, db_col_int64(st, COL_UPDATED_AT));
    jsonw_object_end(w);
    return rc;
}

static const char *const invoice_columns[] = {"id",    "user_id",    "year", "month",
                                              "total", "updated_at", NULL};
static const char *const invoice_exprs[] = {"i.id",          "i.user_id",   "i.year", "i.month",
                                            "i.total_cents", "i.updated_at"};
static const struct listq_filter invoice_filters[] = {
    {.name = "user_id", .kind = LISTQ_ID},
    {.name = "month", .kind = LISTQ_INT_RANGE, .min = 1, .max = 12},
    {.name = "year", .kind = LISTQ_INT_RANGE, .min = 1970, .max = 9999},
};

static const char *const invoice_filter_sql[] = {"i.user_id = $%d", "i.month = $%d",
                                                 "i.year = $%d"};

const struct rows_list invoice_rows = {
    .select = INVOICE_SELECT,
    .id_expr = "i.id",
    .columns = invoice_columns,
    .column_exprs = invoice_exprs,
    .default_order = "i.year, i.month, i.user_id",
    .filters = invoice_filters,
    .filter_sql = invoice_filter_sql,
    .filter_count = ARRAY_LEN(invoice_filters),
    .write = write_invoice,
};
