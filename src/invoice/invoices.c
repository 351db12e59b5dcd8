/*
 * Invoice queries (docs/api.md "Invoice Service"). An invoice is assembled at
 * read time from its row, the customer's latest name/email/address, and
 * its lines sorted by purchase time then order id.
 */
#include <stdlib.h>
#include <string.h>

#include "ctoken.h"
#include "invoice_service.h"
#include "readwait.h"
#include "rows.h"
#include "service.h"
#include "timeutil.h"
#include "util.h"

#define INVOICE_SELECT                                                                             \
    "SELECT i.id, i.user_id, i.year, i.month, c.name, c.email, c.account_id,"                      \
    " c.address1, c.address2, c.city, c.state, c.zip, i.order_count, i.total_cents,"               \
    " i.updated_at FROM invoices i LEFT JOIN customers c ON c.user_id = i.user_id"

/* The columns of INVOICE_SELECT, then those of its lines (rows.h). */
enum {
    COL_ID,
    COL_USER_ID,
    COL_YEAR,
    COL_MONTH,
    COL_NAME,
    COL_EMAIL,
    COL_ACCOUNT_ID,
    COL_ADDRESS1,
    COL_ADDRESS2,
    COL_CITY,
    COL_STATE,
    COL_ZIP,
    COL_ORDER_COUNT,
    COL_TOTAL,
    COL_UPDATED_AT,
    COL_LINE_ORDER_ID,
    COL_LINE_DESCRIPTION,
    COL_LINE_AMOUNT,
    COL_LINE_PURCHASED,
};

/* Writes the lines of the invoice whose first row st is on, stepping past
 * them; returns what the step after the last one returned. */
static int write_lines(db_stmt *st, int64_t invoice_id, struct jsonw *w)
{
    int rc;

    jsonw_array_begin(w);
    do {
        if (!db_col_is_null(st, COL_LINE_ORDER_ID)) { /* NULL: an invoice without lines */
            jsonw_object_begin(w);
            jsonw_key(w, "order_id");
            jsonw_int(w, db_col_int64(st, COL_LINE_ORDER_ID));
            jsonw_key(w, "description");
            jsonw_string_or_null(w, db_col_text(st, COL_LINE_DESCRIPTION));
            jsonw_key(w, "amount");
            jsonw_money(w, db_col_int64(st, COL_LINE_AMOUNT));
            jsonw_key(w, "purchase_dt");
            jsonw_time(w, db_col_int64(st, COL_LINE_PURCHASED));
            jsonw_object_end(w);
        }
        rc = db_step(st);
    } while (rc == DB_ROW && db_col_int64(st, COL_ID) == invoice_id);
    jsonw_array_end(w);
    return rc;
}

/* Writes the invoice whose first row st is on, with its lines (rows.h). */
static int write_invoice(db *conn, db_stmt *st, struct jsonw *w)
{
    char date[TIMEUTIL_TEXT_MAX];
    int year = (int)db_col_int64(st, COL_YEAR), month = (int)db_col_int64(st, COL_MONTH);
    int64_t id = db_col_int64(st, COL_ID), order_count = db_col_int64(st, COL_ORDER_COUNT),
            total = db_col_int64(st, COL_TOTAL), updated_at = db_col_int64(st, COL_UPDATED_AT);

    (void)conn;
    timeutil_format_date(timeutil_month_start(year, month), date);
    jsonw_object_begin(w);
    jsonw_key(w, "id");
    jsonw_int(w, id);
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
    int rc = write_lines(st, id, w); /* the row's values are gone after this */
    jsonw_key(w, "order_count");
    jsonw_int(w, order_count);
    jsonw_key(w, "total");
    jsonw_money(w, total);
    jsonw_key(w, "updated_at");
    jsonw_time(w, updated_at);
    jsonw_object_end(w);
    return rc;
}

static const char *const invoice_columns[] = {"id",    "user_id",    "year", "month",
                                              "total", "updated_at", NULL};
static const char *const invoice_exprs[] = {"i.id",    "i.user_id",     "i.year",
                                            "i.month", "i.total_cents", "i.updated_at"};
static const char *const invoice_outer_exprs[] = {"b.id",    "b.user_id",     "b.year",
                                                  "b.month", "b.total_cents", "b.updated_at"};
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
    .child_columns = "l.order_id, l.description, l.amount_cents, l.purchased_at",
    .child_join = "LEFT JOIN invoice_lines l ON l.invoice_id = b.id",
    .child_order = "l.purchased_at, l.order_id",
    .outer_exprs = invoice_outer_exprs,
    .outer_default_order = "b.year, b.month, b.user_id",
};

/* ---- consistent reads (docs/api.md "Read your writes") ---- */

#define WAIT_MS_DEFAULT 5000
#define WAIT_MS_MAX 30000
#define MAX_TOKENS 16 /* consistent_with parameters of one request */

static const char allowed_consistency[] = "consistent_with (repeatable) and wait_ms (0..30000)";

/* Takes consistent_with and wait_ms out of the query. Returns the number
 * of tokens (0 when none: the read need not wait), or -1 with err. *tokens
 * is malloc()ed when the count is positive. */
static int take_consistency(http_request *req, const char *key, struct ctoken **tokens,
                            int64_t *wait_ms, struct api_error *err)
{
    const struct query_param *params;
    size_t count, n = 0;
    int has_wait = 0;

    *tokens = NULL;
    *wait_ms = WAIT_MS_DEFAULT;
    http_query(req, &params, &count);
    for (size_t i = 0; i < count; i++) {
        if (strcmp(params[i].key, "wait_ms") == 0) {
            if (has_wait || !params[i].value || listq_parse_uint(params[i].value, wait_ms) != 0 ||
                *wait_ms > WAIT_MS_MAX)
                goto bad_wait;
            has_wait = 1;
        } else if (strcmp(params[i].key, "consistent_with") == 0) {
            if (n == MAX_TOKENS) {
                api_error_set(err, 400, "invalid_query", NULL, "at most %d consistent_with tokens",
                              MAX_TOKENS);
                goto fail;
            }
            if (!*tokens)
                *tokens = xcalloc(MAX_TOKENS, sizeof(**tokens));
            if (!params[i].value || ctoken_decode(params[i].value, key, &(*tokens)[n]) != 0) {
                api_error_set(err, 400, "invalid_query", NULL,
                              "consistent_with is not a token this system issued; allowed: %s",
                              allowed_consistency);
                goto fail;
            }
            n++;
        }
    }
    if (has_wait && n == 0) {
        api_error_set(err, 400, "invalid_query", NULL,
                      "wait_ms is only allowed together with consistent_with");
        goto fail;
    }
    http_query_drop(req, "consistent_with");
    http_query_drop(req, "wait_ms");
    return (int)n;
bad_wait:
    api_error_set(err, 400, "invalid_query", NULL, "wait_ms must be an integer 0..%d", WAIT_MS_MAX);
fail:
    for (size_t i = 0; i < n; i++)
        ctoken_free(&(*tokens)[i]);
    free(*tokens);
    *tokens = NULL;
    return -1;
}

static void free_tokens(struct ctoken *tokens, int n)
{
    for (int i = 0; i < n; i++)
        ctoken_free(&tokens[i]);
    free(tokens);
}

/* Answers with plain at once when the query has no tokens, or they are
 * satisfied already; otherwise the request waits, suspended, in the
 * service's readwait, which answers it. */
static void handle_consistent(http_request *req, void *app, http_handler plain, int is_list)
{
    const struct service *s = app;
    const invoices_handle_list_data *list = http_route_data(req); /* get's too */
    struct api_error err;
    struct ctoken *tokens = NULL;
    int64_t wait_ms;
    int n, rc;

    api_error_clear(&err);
    n = take_consistency(req, s->cfg->consistency_key, &tokens, &wait_ms, &err);
    if (n < 0)
        goto refuse;
    if (n == 0) {
        plain(req, app);
        return;
    }
    /* The rest of the query is judged before the wait, not after it. */
    if (is_list) {
        const struct query_param *params;
        size_t count;
        struct listq q;
        http_query(req, &params, &count);
        if (listq_parse(params, count, list->columns, list->filters, list->filter_count, &q,
                        &err) != 0)
            goto refuse;
    } else if (http_refuse_query(req)) {
        free_tokens(tokens, n);
        return;
    }

    db *conn = db_pool_acquire(s->pool);
    rc = readwait_check(conn, tokens, (size_t)n);
    db_pool_release(s->pool, conn);
    if (rc == 1) {
        free_tokens(tokens, n);
        plain(req, app);
        return;
    }
    if (rc < 0) {
        service_db_error(rc, &err);
        goto refuse;
    }
    if (wait_ms == 0) {
        free_tokens(tokens, n);
        readwait_answer_not_yet(req);
        return;
    }
    http_suspend(req);
    readwait_add(s->readwait, req, tokens, (size_t)n, util_monotonic_ns() + wait_ms * 1000000,
                 plain, app);
    return;
refuse:
    free_tokens(tokens, n > 0 ? n : 0);
    http_reply_error(req, &err);
}

void invoices_handle_list(http_request *req, void *app)
{
    handle_consistent(req, app, rows_handle_list, 1);
}

void invoices_handle_get(http_request *req, void *app)
{
    handle_consistent(req, app, rows_handle_get, 0);
}
