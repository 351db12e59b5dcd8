#include "field.h"

#include <string.h>

#include "money.h"
#include "timeutil.h"

size_t field_utf8_length(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            n++;
    return n;
}

/* Decodes the code point at s[*i] (valid UTF-8) and advances *i. */
static uint32_t next_code_point(const char *s, size_t *i)
{
    const unsigned char *u = (const unsigned char *)s + *i;
    if (u[0] < 0x80) {
        *i += 1;
        return u[0];
    }
    if (u[0] < 0xE0) {
        *i += 2;
        return (uint32_t)(u[0] & 0x1F) << 6 | (u[1] & 0x3F);
    }
    if (u[0] < 0xF0) {
        *i += 3;
        return (uint32_t)(u[0] & 0x0F) << 12 | (uint32_t)(u[1] & 0x3F) << 6 | (u[2] & 0x3F);
    }
    *i += 4;
    return (uint32_t)(u[0] & 0x07) << 18 | (uint32_t)(u[1] & 0x3F) << 12 |
           (uint32_t)(u[2] & 0x3F) << 6 | (u[3] & 0x3F);
}

/* Unicode White_Space, plus the invisible zero-width space and BOM. */
static int is_space_code_point(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200B) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000 || c == 0xFEFF;
}

int field_is_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len;)
        if (!is_space_code_point(next_code_point(s, &i)))
            return 0;
    return 1;
}

int field_has_space(const char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        uint32_t c = next_code_point(s, &i);
        if (is_space_code_point(c) || c < 0x20 || (c >= 0x7F && c <= 0x9F))
            return 1;
    }
    return 0;
}

static int missing(const char *name, struct api_error *err)
{
    return api_error_set(err, 422, "missing_field", name, "%s is required", name);
}

int field_reject_unknown(json_t *obj, const char *const *allowed, size_t count,
                         struct api_error *err)
{
    const char *key;
    json_t *v;

    json_object_foreach(obj, key, v) {
        size_t i;
        for (i = 0; i < count; i++)
            if (strcmp(key, allowed[i]) == 0)
                break;
        if (i == count) {
            /* Echo only a bounded, printable name; the key is client text. */
            char shown[API_ERROR_FIELD_MAX];
            size_t n = strlen(key);
            int printable = n > 0 && n < sizeof(shown);
            for (size_t k = 0; printable && k < n; k++)
                printable = key[k] >= 0x20 && key[k] < 0x7f;
            if (!printable)
                return api_error_set(err, 422, "unknown_field", NULL,
                                     "body has a field that is not allowed");
            memcpy(shown, key, n + 1);
            return api_error_set(err, 422, "unknown_field", shown, "unknown field %s", shown);
        }
    }
    return 0;
}

int field_string(json_t *obj, const char *name, int required, size_t max_chars, const char **out,
                 struct api_error *err)
{
    json_t *v = json_object_get(obj, name);
    size_t len, chars;

    *out = NULL;
    if (!v || json_is_null(v))
        return required ? missing(name, err) : 0;
    if (!json_is_string(v))
        return api_error_set(err, 422, "invalid_field", name, "%s must be a string", name);
    len = json_string_length(v);
    /* Valid JSON ("\u0000"), but stored text is a C string: refused. */
    if (memchr(json_string_value(v), '\0', len))
        return api_error_set(err, 422, "invalid_field", name, "%s must not contain NUL characters",
                             name);
    chars = field_utf8_length(json_string_value(v), len);
    if (required && (len == 0 || field_is_blank(json_string_value(v), len)))
        return api_error_set(err, 422, "invalid_field", name, "%s must not be empty", name);
    if (chars > max_chars)
        return api_error_set(err, 422, "invalid_field", name, "%s must be at most %zu characters",
                             name, max_chars);
    *out = json_string_value(v);
    return 0;
}

/* One '@' with something on each side; no white space or control
 * characters anywhere. */
static int valid_email(const char *s)
{
    const char *at = strchr(s, '@');
    if (!at || at == s || at[1] == '\0' || strchr(at + 1, '@'))
        return 0;
    return !field_has_space(s, strlen(s));
}

int field_email(json_t *obj, const char *name, size_t max_chars, const char **out,
                struct api_error *err)
{
    if (field_string(obj, name, 1, max_chars, out, err) != 0)
        return -1;
    if (!valid_email(*out)) {
        *out = NULL;
        return api_error_set(err, 422, "invalid_field", name,
                             "%s must have one @ with text on both sides and no spaces", name);
    }
    return 0;
}

int field_id(json_t *obj, const char *name, int required, int64_t *out, int *present,
             struct api_error *err)
{
    json_t *v = json_object_get(obj, name);

    if (present)
        *present = 0;
    *out = 0;
    if (!v || json_is_null(v))
        return required ? missing(name, err) : 0;
    if (!json_is_integer(v) || json_integer_value(v) <= 0)
        return api_error_set(err, 422, "invalid_field", name, "%s must be a positive integer",
                             name);
    *out = json_integer_value(v);
    if (present)
        *present = 1;
    return 0;
}

int field_money(json_t *obj, const char *name, int64_t *cents, struct api_error *err)
{
    json_t *v = json_object_get(obj, name);

    if (!v || json_is_null(v))
        return missing(name, err);
    if (money_from_json(v, cents) != MONEY_OK)
        return api_error_set(err, 422, "invalid_field", name,
                             "%s must be a positive number with at most 2 decimal places, "
                             "up to 1000000000",
                             name);
    return 0;
}

int field_time(json_t *obj, const char *name, int64_t *ms, int *present, struct api_error *err)
{
    json_t *v = json_object_get(obj, name);

    *present = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v) ||
        timeutil_parse_rfc3339(json_string_value(v), json_string_length(v), ms) != 0)
        return api_error_set(err, 422, "invalid_field", name,
                             "%s must be an RFC 3339 time between years 1970 and 9999, "
                             "e.g. 2025-04-03T10:15:00Z",
                             name);
    *present = 1;
    return 0;
}

int field_enum(json_t *obj, const char *name, const char *const *values, size_t count,
               const char **out, struct api_error *err)
{
    json_t *v = json_object_get(obj, name);

    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_string(v)) {
        for (size_t i = 0; i < count; i++) {
            if (json_string_length(v) == strlen(values[i]) &&
                strcmp(json_string_value(v), values[i]) == 0) {
                *out = values[i];
                return 0;
            }
        }
    }
    if (count == 2)
        return api_error_set(err, 422, "invalid_field", name, "%s must be \"%s\" or \"%s\"", name,
                             values[0], values[1]);
    return api_error_set(err, 422, "invalid_field", name, "%s has a value that is not allowed",
                         name);
}
