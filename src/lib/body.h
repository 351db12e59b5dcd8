/*
 * body: turns a request body into a JSON document, enforcing docs/api.md's
 * rules for what counts as malformed (not JSON, not UTF-8, empty, nested
 * deeper than BODY_MAX_DEPTH, duplicate keys), and splits a create body
 * into its items (one object, or an array of 1..BODY_MAX_ITEMS objects).
 *
 * Nesting is measured by a linear scan before parsing, so hostile input
 * never reaches the recursive parser deep enough to exhaust the stack.
 */
#ifndef LIB_BODY_H
#define LIB_BODY_H

#include <jansson.h>
#include <stddef.h>

#include "api_error.h"

#define BODY_MAX_DEPTH 64
#define BODY_MAX_ITEMS 1000

/* On success *out is a new reference the caller must json_decref(). A
 * number too large to hold (an integer beyond 64 bits, a real beyond a
 * double) is reported as 422 invalid_field on the top-level field (and
 * batch index) that holds it. */
int body_parse(const char *buf, size_t len, json_t **out, struct api_error *err);

/* Nesting depth of a JSON text, counting the outermost array or object as
 * level 1, ignoring brackets inside strings. Stops counting past limit. */
int body_depth(const char *buf, size_t len, int limit);

/* A create body: an object (*is_batch = 0, *count = 1) or an array of
 * 1..max_items objects; anything else is 422 invalid_body. */
int body_items(json_t *body, size_t max_items, size_t *count, int *is_batch, struct api_error *err);

/* Item i of a body accepted by body_items (borrowed). */
json_t *body_item(json_t *body, size_t i);

#endif
