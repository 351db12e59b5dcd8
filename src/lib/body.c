#include "body.h"

#include <math.h>
#include <string.h>

#define INT64_LIMIT 9223372036854775808.0 /* 2^63 */

int body_depth(const char *buf, size_t len, int limit)
{
    int depth = 0, max = 0, in_string = 0, escaped = 0;

    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (in_string) {
            if (escaped)
                escaped = 0;
            else if (c == '\\')
                escaped = 1;
            else if (c == '"')
                in_string = 0;
            continue;
        }
        if (c == '"') {
            in_string = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max) {
                max = depth;
                if (max > limit)
                    return max;
            }
        } else if (c == ']' || c == '}') {
            if (depth > 0)
                depth--;
        }
    }
    return max;
}

/* Looks through one object for a number that only parsed as a real
 * because it does not fit in 64 bits. */
static const char *find_huge_field(json_t *obj)
{
    const char *key;
    json_t *v;

    if (!json_is_object(obj))
        return NULL;
    json_object_foreach(obj, key, v) {
        if (json_is_real(v) && fabs(json_real_value(v)) >= INT64_LIMIT)
            return key;
    }
    return NULL;
}

/* The document had an integer beyond 64 bits. Parse it again with every
 * integer as a real to find which field held it, so the client hears
 * about the field (422) rather than a vague syntax error. */
static int report_huge_integer(const char *buf, size_t len, struct api_error *err)
{
    json_error_t jerr;
    json_t *doc = json_loadb(buf, len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &jerr);
    const char *field = NULL;
    long index = -1;

    if (doc && json_is_object(doc)) {
        field = find_huge_field(doc);
    } else if (doc && json_is_array(doc)) {
        size_t i;
        json_t *item;
        json_array_foreach(doc, i, item) {
            if ((field = find_huge_field(item)) != NULL) {
                index = (long)i;
                break;
            }
        }
    }
    if (field) {
        api_error_set(err, 422, "invalid_field", field, "%s is out of range (integers are 64-bit)",
                      field);
        err->index = index;
    } else {
        api_error_set(err, 422, "invalid_body", NULL, "body holds an integer beyond 64 bits");
    }
    json_decref(doc);
    return -1;
}

int body_parse(const char *buf, size_t len, json_t **out, struct api_error *err)
{
    json_error_t jerr;
    json_t *doc;

    *out = NULL;
    if (len == 0)
        return api_error_set(err, 400, "malformed_json", NULL, "request body is empty");
    if (body_depth(buf, len, BODY_MAX_DEPTH) > BODY_MAX_DEPTH)
        return api_error_set(err, 400, "malformed_json", NULL,
                             "JSON nesting is deeper than %d levels", BODY_MAX_DEPTH);

    doc = json_loadb(buf, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        switch (json_error_code(&jerr)) {
        case json_error_numeric_overflow:
            if (strstr(jerr.text, "integer"))
                return report_huge_integer(buf, len, err);
            break;
        case json_error_invalid_utf8:
            return api_error_set(err, 400, "malformed_json", NULL, "body is not valid UTF-8");
        default:
            break;
        }
        /* jerr.text quotes the input; the position alone is safer to echo. */
        return api_error_set(err, 400, "malformed_json", NULL,
                             "body is not valid JSON (line %d, column %d)", jerr.line,
                             jerr.column);
    }
    *out = doc;
    return 0;
}

int body_items(json_t *body, size_t max_items, size_t *count, int *is_batch,
               struct api_error *err)
{
    if (json_is_object(body)) {
        *count = 1;
        *is_batch = 0;
        return 0;
    }
    if (json_is_array(body)) {
        size_t n = json_array_size(body), i;
        json_t *item;
        if (n < 1 || n > max_items)
            return api_error_set(err, 422, "invalid_body", NULL,
                                 "a batch must hold 1 to %zu objects, not %zu", max_items, n);
        json_array_foreach(body, i, item) {
            if (!json_is_object(item)) {
                api_error_set(err, 422, "invalid_body", NULL, "batch item %zu is not an object", i);
                err->index = (long)i;
                return -1;
            }
        }
        *count = n;
        *is_batch = 1;
        return 0;
    }
    return api_error_set(err, 422, "invalid_body", NULL,
                         "body must be an object or an array of 1 to %zu objects", max_items);
}

json_t *body_item(json_t *body, size_t i)
{
    return json_is_array(body) ? json_array_get(body, i) : body;
}
