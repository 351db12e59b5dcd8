#include "body.h"

#include <string.h>

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

/* Finds the top-level field (and, for an array body, the item index) in
 * which byte pos of a JSON text lies, by a linear scan that follows
 * strings, nesting and commas. key is left empty when the field's name is
 * not plain printable ASCII (it is echoed to the client). */
static void locate_field(const char *buf, size_t len, size_t pos, char *key, size_t key_size,
                         long *index)
{
    int depth = 0, top_is_array = 0, in_string = 0, escaped = 0;
    size_t str_start = 0, str_end = 0;
    long item = 0;

    key[0] = '\0';
    for (size_t i = 0; i < pos && i < len; i++) {
        char c = buf[i];
        if (in_string) {
            if (escaped)
                escaped = 0;
            else if (c == '\\')
                escaped = 1;
            else if (c == '"') {
                in_string = 0;
                str_end = i;
            }
            continue;
        }
        if (c == '"') {
            in_string = 1;
            str_start = i + 1;
        } else if (c == '{' || c == '[') {
            if (++depth == 1)
                top_is_array = c == '[';
        } else if (c == '}' || c == ']') {
            depth--;
        } else if (c == ',' && depth == 1 && top_is_array) {
            item++;
        } else if (c == ':' && depth == (top_is_array ? 2 : 1)) {
            size_t n = str_end - str_start;
            int plain = n > 0 && n < key_size;
            for (size_t k = 0; plain && k < n; k++)
                plain = buf[str_start + k] > 0x20 && buf[str_start + k] < 0x7f &&
                        buf[str_start + k] != '\\';
            if (plain) {
                memcpy(key, buf + str_start, n);
                key[n] = '\0';
            } else {
                key[0] = '\0';
            }
        }
    }
    *index = top_is_array ? item : -1;
}

/* A number the parser could not hold (an integer beyond 64 bits, a real
 * beyond a double's range) is reported on the field that holds it, so
 * the client hears 422 about that field rather than a vague syntax error. */
static int report_number_overflow(const char *buf, size_t len, size_t pos, struct api_error *err)
{
    char key[API_ERROR_FIELD_MAX];
    long index;

    locate_field(buf, len, pos, key, sizeof(key), &index);
    if (key[0])
        api_error_set(err, 422, "invalid_field", key, "%s is out of range", key);
    else
        api_error_set(err, 422, "invalid_body", NULL, "body holds a number out of range");
    err->index = index;
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

    doc = json_loadb(buf, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!doc) {
        switch (json_error_code(&jerr)) {
        case json_error_numeric_overflow:
            return report_number_overflow(buf, len, (size_t)jerr.position, err);
        case json_error_invalid_utf8:
            return api_error_set(err, 400, "malformed_json", NULL, "body is not valid UTF-8");
        default:
            break;
        }
        /* jerr.text quotes the input; the position alone is safer to echo. */
        return api_error_set(err, 400, "malformed_json", NULL,
                             "body is not valid JSON (line %d, column %d)", jerr.line, jerr.column);
    }
    *out = doc;
    return 0;
}

int body_items(json_t *body, size_t max_items, size_t *count, int *is_batch, struct api_error *err)
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
