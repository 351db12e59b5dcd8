/*
 * api_error: the error answer of docs/api.md, built by validators and handlers
 * and written by the HTTP layer:
 *
 *   {"error": {"status": 422, "code": "invalid_field", "field": "amount",
 *              "message": "...", "index": 2}}
 *
 * "field" appears only when set, "index" only for a batch item (>= 0).
 * A struct api_error is plain data on the caller's stack; nothing to free.
 */
#ifndef LIB_API_ERROR_H
#define LIB_API_ERROR_H

#include <stddef.h>

#include "jsonw.h"

#define API_ERROR_FIELD_MAX 64
#define API_ERROR_MESSAGE_MAX 256

struct api_error {
    int status;       /* HTTP status, 0 = no error */
    const char *code; /* static string, e.g. "invalid_field" */
    char field[API_ERROR_FIELD_MAX];
    char message[API_ERROR_MESSAGE_MAX];
    long index; /* batch item, -1 when not a batch item */
};

/* Fills e (field may be NULL) and returns -1 so callers can write
 * `return api_error_set(...)`. */
int api_error_set(struct api_error *e, int status, const char *code, const char *field,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

void api_error_clear(struct api_error *e);

/* Writes the {"error": {...}} object. */
void api_error_write(const struct api_error *e, struct jsonw *w);

#endif
