/*
 * fuzz_listq: the query string of every list endpoint (users, accounts,
 * orders, invoices). The input is split as libmicrohttpd splits a query
 * (pairs on '&', key and value on the first '='; no '=' gives a NULL
 * value; no %-decoding, which only changes the bytes) and handled as
 * rows_handle_list handles it, with each endpoint's own struct rows_list:
 * listq_parse, then ORDER BY and the values bound for text filters.
 *
 * The four tables are the services' own (their objects are linked), not
 * copies: a change there that breaks this harness fails its build
 * instead of drifting.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "invoice/invoice_service.h"
#include "order/order_service.h"
#include "user/user_service.h"
#include "util.h"

#define MAX_PARAMS 64
/* The buffer rows.c builds ORDER BY in. */
#define ORDER_MAX 128

static const struct rows_list *const lists[] = {&user_rows, &account_rows, &order_rows,
                                                &invoice_rows};

/* The LIKE pattern of a substring filter: the text lower-cased between
 * two '%', with every '%', '_' and '\\' in it escaped. */
static void check_like_pattern(const char *text, const char *p)
{
    FUZZ_CHECK(p != NULL);
    size_t n = strlen(p), j = 1;

    FUZZ_CHECK(n >= 2 && p[0] == '%' && p[n - 1] == '%');
    for (const char *t = text; *t; t++) {
        char c = *t;
        FUZZ_CHECK(j < n - 1);
        if (c == '%' || c == '_' || c == '\\') {
            FUZZ_CHECK(p[j] == '\\');
            j++;
        } else {
            FUZZ_CHECK(p[j] != '%' && p[j] != '_' && p[j] != '\\');
        }
        FUZZ_CHECK(p[j] == (c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
        j++;
    }
    FUZZ_CHECK(j == n - 1);
}

/* The parameter named name, or NULL. */
static const struct query_param *find(const struct query_param *params, size_t count,
                                      const char *name)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(params[i].key, name) == 0)
            return &params[i];
    return NULL;
}

static void check_accepted(const struct rows_list *e, const struct query_param *params,
                           size_t count, const struct listq *q)
{
    size_t ncolumns = 0;
    while (e->columns[ncolumns])
        ncolumns++;

    FUZZ_CHECK(q->limit >= 1 && q->limit <= LISTQ_MAX_LIMIT);
    FUZZ_CHECK(q->offset >= 0);
    FUZZ_CHECK(q->order_index >= -1 && q->order_index < (int)ncolumns);
    FUZZ_CHECK(q->descending == 0 || q->descending == 1);
    FUZZ_CHECK(find(params, count, "limit") || q->limit == LISTQ_DEFAULT_LIMIT);
    FUZZ_CHECK(find(params, count, "order_by") || q->order_index == -1);

    /* Every parameter is known, given once and not empty. */
    for (size_t i = 0; i < count; i++) {
        size_t f = 0;
        while (f < e->filter_count && strcmp(params[i].key, e->filters[f].name) != 0)
            f++;
        FUZZ_CHECK(f < e->filter_count || strcmp(params[i].key, "limit") == 0 ||
                   strcmp(params[i].key, "offset") == 0 || strcmp(params[i].key, "order_by") == 0);
        FUZZ_CHECK(params[i].value && params[i].value[0]);
        FUZZ_CHECK(find(params, count, params[i].key) == &params[i]);
    }

    for (size_t f = 0; f < e->filter_count; f++) {
        const struct listq_filter *def = &e->filters[f];
        const struct listq_value *v = &q->filters[f];
        const struct query_param *p = find(params, count, def->name);
        FUZZ_CHECK(v->present == (p != NULL));
        if (!v->present)
            continue;
        FUZZ_CHECK(v->text == p->value);
        switch (def->kind) {
        case LISTQ_ID:
            FUZZ_CHECK(v->num >= 1);
            break;
        case LISTQ_INT_RANGE:
            FUZZ_CHECK(v->num >= def->min && v->num <= def->max);
            break;
        case LISTQ_TEXT:
            FUZZ_CHECK(v->text[0] != '\0');
            break;
        case LISTQ_ENUM: {
            size_t k = 0;
            while (def->values[k] && strcmp(def->values[k], v->text) != 0)
                k++;
            FUZZ_CHECK(def->values[k] != NULL);
            break;
        }
        }
    }

    /* ORDER BY comes from the list's own expressions only, and fits the
     * buffer rows.c builds it in. */
    char order[ORDER_MAX], expected[ORDER_MAX];
    listq_order_sql(q, e->column_exprs, e->default_order, order, sizeof(order));
    if (q->order_index < 0)
        snprintf(expected, sizeof(expected), "%s, id ASC", e->default_order);
    else
        snprintf(expected, sizeof(expected), "%s %s, id ASC", e->column_exprs[q->order_index],
                 q->descending ? "DESC" : "ASC");
    FUZZ_CHECK(strcmp(order, expected) == 0);
    FUZZ_CHECK(strlen(order) + 1 < sizeof(order));

    /* The values bound for text filters (users' name: a LIKE pattern). */
    for (size_t f = 0; f < e->filter_count; f++) {
        if (!q->filters[f].present || !e->text_value || e->filters[f].kind == LISTQ_ID ||
            e->filters[f].kind == LISTQ_INT_RANGE)
            continue;
        char *value = e->text_value(f, q->filters[f].text);
        if (e == &user_rows && strcmp(e->filters[f].name, "name") == 0)
            check_like_pattern(q->filters[f].text, value);
        free(value);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct query_param params[MAX_PARAMS];
    size_t count = 0;
    char *text = malloc(size + 1);

    FUZZ_CHECK(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';

    /* An empty query has no parameters; otherwise every '&' separates
     * one (which may be empty, and is then an unknown name). */
    if (size > 0) {
        char *p = text;
        for (;;) {
            char *amp = strchr(p, '&');
            if (amp)
                *amp = '\0';
            if (count < MAX_PARAMS) {
                char *eq = strchr(p, '=');
                if (eq)
                    *eq = '\0';
                params[count].key = p;
                params[count].value = eq ? eq + 1 : NULL;
                count++;
            }
            if (!amp)
                break;
            p = amp + 1;
        }
    }

    for (size_t i = 0; i < ARRAY_LEN(lists); i++) {
        const struct rows_list *e = lists[i];
        struct listq q;
        struct api_error err;

        /* GET .../{id} (rows_handle_get) matches on the column that
         * order_by=id sorts by. */
        FUZZ_CHECK(strcmp(e->columns[0], "id") == 0 && strcmp(e->id_expr, e->column_exprs[0]) == 0);
        api_error_clear(&err);
        if (listq_parse(params, count, e->columns, e->filters, e->filter_count, &q, &err) != 0) {
            fuzz_check_error(&err);
            FUZZ_CHECK(err.status == 400 && strcmp(err.code, "invalid_query") == 0);
            FUZZ_CHECK(err.index == -1);
            continue;
        }
        check_accepted(e, params, count, &q);
    }
    free(text);
    return 0;
}
