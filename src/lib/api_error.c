#include "api_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

int api_error_set(struct api_error *e, int status, const char *code, const char *field,
                  const char *fmt, ...)
{
    va_list ap;

    e->status = status;
    e->code = code;
    util_strlcpy(e->field, field ? field : "", sizeof(e->field));
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    e->index = -1;
    return -1;
}

void api_error_clear(struct api_error *e)
{
    memset(e, 0, sizeof(*e));
    e->index = -1;
}

void api_error_write(const struct api_error *e, struct jsonw *w)
{
    jsonw_object_begin(w);
    jsonw_key(w, "error");
    jsonw_object_begin(w);
    jsonw_key(w, "status");
    jsonw_int(w, e->status);
    jsonw_key(w, "code");
    jsonw_string(w, e->code);
    if (e->field[0]) {
        jsonw_key(w, "field");
        jsonw_string(w, e->field);
    }
    jsonw_key(w, "message");
    jsonw_string(w, e->message);
    if (e->index >= 0) {
        jsonw_key(w, "index");
        jsonw_int(w, e->index);
    }
    jsonw_object_end(w);
    jsonw_object_end(w);
}
