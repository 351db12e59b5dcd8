/*
 * fuzz_create: the validation path of a create endpoint, for the
 * fuzz_create_* harnesses, up to the point where the database would be
 * touched: body_parse as http.c calls it, then body_items and
 * create_parse_all (src/lib/create.c, what create_handle runs) with the
 * service's own create_spec.
 */
#ifndef TESTS_FUZZ_CREATE_H
#define TESTS_FUZZ_CREATE_H

#include "body.h"
#include "create.h"
#include "fuzz.h"
#include "util.h"

/* Checks one item that spec->parse accepted, against its JSON object. */
typedef void (*fuzz_item_check)(json_t *obj, const void *item);

/* Every key of obj is one of names. */
static inline void fuzz_check_keys(json_t *obj, const char *const *names, size_t count)
{
    const char *key;
    json_t *v;

    json_object_foreach(obj, key, v) {
        size_t i = 0;
        while (i < count && strcmp(key, names[i]) != 0)
            i++;
        FUZZ_CHECK(i < count);
    }
}

static inline void fuzz_create_body(const uint8_t *data, size_t size,
                                    const struct create_spec *spec, fuzz_item_check check)
{
    json_t *body = NULL;
    struct api_error err;
    size_t count = 0;
    int is_batch = 0;

    api_error_clear(&err);
    if (body_parse((const char *)data, size, &body, &err) != 0) {
        fuzz_check_error(&err);
        return;
    }
    if (body_items(body, BODY_MAX_ITEMS, &count, &is_batch, &err) != 0) {
        fuzz_check_error(&err);
        json_decref(body);
        return;
    }

    char *items = xcalloc(count, spec->item_size);
    size_t parsed = count;
    if (create_parse_all(body, spec, count, is_batch, items, &err) != 0) {
        fuzz_check_error(&err);
        FUZZ_CHECK(err.status == 422);
        FUZZ_CHECK(strcmp(err.code, "invalid_field") == 0 ||
                   strcmp(err.code, "missing_field") == 0 ||
                   strcmp(err.code, "unknown_field") == 0);
        /* One field is at fault; only a key unfit to echo goes unnamed. */
        FUZZ_CHECK(err.field[0] != '\0' || strcmp(err.code, "unknown_field") == 0);
        if (is_batch) {
            FUZZ_CHECK(err.index >= 0 && (size_t)err.index < count);
            parsed = (size_t)err.index;
        } else {
            FUZZ_CHECK(err.index == -1);
            parsed = 0;
        }
    }
    /* The items before a failing one were accepted: check those too. */
    for (size_t i = 0; i < parsed; i++)
        check(body_item(body, i), items + i * spec->item_size);
    free(items);
    json_decref(body);
}

#endif
