/*
 * listq: the query string of a list endpoint (docs/api.md "Lists"): limit,
 * offset, order_by and the collection's filters, validated strictly.
 * Anything unknown, empty, repeated or malformed is 400 invalid_query,
 * and order_by can only name a column from the caller's fixed list, so
 * the caller builds ORDER BY from its own constants, never from input.
 */
#ifndef LIB_LISTQ_H
#define LIB_LISTQ_H

#include <stddef.h>
#include <stdint.h>

#include "api_error.h"

#define LISTQ_DEFAULT_LIMIT 100
#define LISTQ_MAX_LIMIT 1000
#define LISTQ_MAX_FILTERS 8

struct query_param {
    const char *key;
    const char *value; /* NULL when the parameter had no "=" */
};

enum listq_kind {
    LISTQ_ID,        /* positive integer */
    LISTQ_INT_RANGE, /* integer in [min, max] */
    LISTQ_TEXT,      /* any non-empty text */
    LISTQ_ENUM,      /* one of values (NULL-terminated) */
};

struct listq_filter {
    const char *name;
    enum listq_kind kind;
    int64_t min, max;
    const char *const *values;
};

struct listq_value {
    int present;
    int64_t num;      /* LISTQ_ID, LISTQ_INT_RANGE */
    const char *text; /* borrowed from the params */
};

struct listq {
    int64_t limit;
    int64_t offset;
    int order_index; /* into the caller's columns; -1 = default order */
    int descending;
    struct listq_value filters[LISTQ_MAX_FILTERS]; /* same order as defs */
};

/* columns: the sortable column names, NULL-terminated. */
int listq_parse(const struct query_param *params, size_t count, const char *const *columns,
                const struct listq_filter *defs, size_t ndefs, struct listq *out,
                struct api_error *err);

/* Writes "<expr> [DESC], id" for ORDER BY: exprs[] are the caller's SQL
 * expressions, parallel to its column names; default_order is used when
 * the query names none. Ties always break by id ascending. */
void listq_order_sql(const struct listq *q, const char *const *exprs, const char *default_order,
                     char *buf, size_t size);

/* Plain decimal digits, no sign, no leading zero (but "0"), fits int64. */
int listq_parse_uint(const char *text, int64_t *out);

#endif
