/*
 * field: reads and validates the fields of one JSON object (an HTTP body
 * item or an event's data) by the rules of docs/api.md, producing the 422
 * errors it describes:
 *
 *   - absent or null required field        -> missing_field
 *   - wrong JSON type, or a value breaking its rule -> invalid_field
 *   - a key not in the allowed list        -> unknown_field
 *
 * Strings returned are borrowed from the JSON object. Lengths count
 * Unicode code points (the parser has already checked UTF-8). A required
 * string must contain a non-space character; an optional one may be "".
 */
#ifndef LIB_FIELD_H
#define LIB_FIELD_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "api_error.h"

int field_reject_unknown(json_t *obj, const char *const *allowed, size_t count,
                         struct api_error *err);

/* Required (1..max code points, not blank) or optional (0..max, *out NULL
 * when absent or null). */
int field_string(json_t *obj, const char *name, int required, size_t max_chars, const char **out,
                 struct api_error *err);

/* A required email (docs/api.md "User Service"): a string by field_string's
 * rules with one '@' that has text on both sides, and no white space or
 * control character. A writer's input and the events the read side
 * receives both check it here. */
int field_email(json_t *obj, const char *name, size_t max_chars, const char **out,
                struct api_error *err);

/* A positive 64-bit JSON integer. Optional fields set *present. */
int field_id(json_t *obj, const char *name, int required, int64_t *out, int *present,
             struct api_error *err);

/* A required amount (money.h rules), in cents. */
int field_money(json_t *obj, const char *name, int64_t *cents, struct api_error *err);

/* An optional RFC 3339 time; *present is 0 when absent or null. */
int field_time(json_t *obj, const char *name, int64_t *ms, int *present, struct api_error *err);

/* An optional string out of a fixed set; *out NULL when absent or null. */
int field_enum(json_t *obj, const char *name, const char *const *values, size_t count,
               const char **out, struct api_error *err);

/* Whether a valid UTF-8 string is empty or only white space (Unicode
 * White_Space, zero-width space, BOM). */
int field_is_blank(const char *s, size_t len);

/* Whether it holds any white space or control character. */
int field_has_space(const char *s, size_t len);

/* Code points in a valid UTF-8 string. */
size_t field_utf8_length(const char *s, size_t len);

#endif
