#include "listq.h"

#include <stdio.h>
#include <string.h>

int listq_parse_uint(const char *text, int64_t *out)
{
    int64_t v = 0;

    if (!text || !*text)
        return -1;
    if (text[0] == '0' && text[1] != '\0')
        return -1;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        int d = *p - '0';
        if (v > (INT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* "limit, offset, order_by, user_id, status" for the error message. */
static void allowed_names(const struct listq_filter *defs, size_t ndefs, char *buf, size_t size)
{
    size_t used = (size_t)snprintf(buf, size, "limit, offset, order_by");
    for (size_t i = 0; i < ndefs && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, ", %s", defs[i].name);
}

static void column_names(const char *const *columns, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; columns[i] && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "", columns[i]);
}

static int bad(struct api_error *err, const char *name, const char *fmt, const char *detail)
{
    api_error_set(err, 400, "invalid_query", NULL, fmt, name, detail);
    return -1;
}

static int parse_filter(const struct listq_filter *def, const char *value, struct listq_value *out,
                        struct api_error *err)
{
    int64_t n;

    switch (def->kind) {
    case LISTQ_ID:
        if (listq_parse_uint(value, &n) != 0 || n < 1)
            return bad(err, def->name, "%s must be a positive integer%s", "");
        out->num = n;
        break;
    case LISTQ_INT_RANGE:
        if (listq_parse_uint(value, &n) != 0 || n < def->min || n > def->max) {
            char range[64];
            snprintf(range, sizeof(range), " from %lld to %lld", (long long)def->min,
                     (long long)def->max);
            return bad(err, def->name, "%s must be an integer%s", range);
        }
        out->num = n;
        break;
    case LISTQ_TEXT:
        break;
    case LISTQ_ENUM: {
        size_t i;
        for (i = 0; def->values[i]; i++)
            if (strcmp(def->values[i], value) == 0)
                break;
        if (!def->values[i]) {
            char list[128];
            column_names(def->values, list, sizeof(list));
            return bad(err, def->name, "%s must be one of: %s", list);
        }
        break;
    }
    }
    out->present = 1;
    out->text = value;
    return 0;
}

int listq_parse(const struct query_param *params, size_t count, const char *const *columns,
                const struct listq_filter *defs, size_t ndefs, struct listq *out,
                struct api_error *err)
{
    int seen_limit = 0, seen_offset = 0, seen_order = 0;

    memset(out, 0, sizeof(*out));
    out->limit = LISTQ_DEFAULT_LIMIT;
    out->order_index = -1;
    if (ndefs > LISTQ_MAX_FILTERS)
        ndefs = LISTQ_MAX_FILTERS;

    for (size_t i = 0; i < count; i++) {
        const char *key = params[i].key, *value = params[i].value;
        int *seen = NULL;
        size_t f = ndefs;

        if (strcmp(key, "limit") == 0)
            seen = &seen_limit;
        else if (strcmp(key, "offset") == 0)
            seen = &seen_offset;
        else if (strcmp(key, "order_by") == 0)
            seen = &seen_order;
        else
            for (f = 0; f < ndefs; f++)
                if (strcmp(key, defs[f].name) == 0)
                    break;

        if (!seen && f == ndefs) {
            char names[256];
            allowed_names(defs, ndefs, names, sizeof(names));
            api_error_set(err, 400, "invalid_query", NULL, "unknown query parameter; allowed: %s",
                          names);
            return -1;
        }
        if (!value || !*value)
            return bad(err, key, "%s must not be empty%s", "");
        if (seen) {
            if (*seen)
                return bad(err, key, "%s is given more than once%s", "");
            *seen = 1;
        } else {
            if (out->filters[f].present)
                return bad(err, key, "%s is given more than once%s", "");
            if (parse_filter(&defs[f], value, &out->filters[f], err) != 0)
                return -1;
            continue;
        }

        if (seen == &seen_limit) {
            if (listq_parse_uint(value, &out->limit) != 0 || out->limit < 1 ||
                out->limit > LISTQ_MAX_LIMIT)
                return bad(err, "limit", "%s must be an integer from 1 to 1000%s", "");
        } else if (seen == &seen_offset) {
            if (listq_parse_uint(value, &out->offset) != 0)
                return bad(err, "offset", "%s must be an integer of 0 or more%s", "");
        } else {
            const char *name = value;
            int desc = 0;
            if (*name == '-') {
                desc = 1;
                name++;
            }
            int c;
            for (c = 0; columns[c]; c++)
                if (strcmp(columns[c], name) == 0)
                    break;
            if (!columns[c]) {
                char list[256];
                column_names(columns, list, sizeof(list));
                return bad(err, "order_by",
                           "%s must be one of these columns, optionally prefixed by '-': %s", list);
            }
            out->order_index = c;
            out->descending = desc;
        }
    }
    return 0;
}

void listq_order_sql(const struct listq *q, const char *const *exprs, const char *default_order,
                     char *buf, size_t size)
{
    if (q->order_index < 0)
        snprintf(buf, size, "%s, id ASC", default_order);
    else
        snprintf(buf, size, "%s %s, id ASC", exprs[q->order_index], q->descending ? "DESC" : "ASC");
}
