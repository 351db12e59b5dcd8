/*
 * jsonw: a streaming JSON writer into a growable buffer.
 *
 * Responses and event bodies are written straight into one buffer, with
 * money as exact two-decimal numbers (50.00) that a generic JSON library
 * cannot produce. The writer inserts commas itself; keys and strings are
 * escaped (input strings are valid UTF-8, checked by the parser).
 *
 *   struct jsonw w; jsonw_init(&w);
 *   jsonw_object_begin(&w);
 *   jsonw_key(&w, "id"); jsonw_int(&w, 1);
 *   jsonw_key(&w, "amount"); jsonw_money(&w, 5000);
 *   jsonw_object_end(&w);
 *   ... w.buf, w.len ...; jsonw_free(&w)   (or jsonw_steal)
 */
#ifndef LIB_JSONW_H
#define LIB_JSONW_H

#include <stddef.h>
#include <stdint.h>

#define JSONW_MAX_DEPTH 32 /* deepest nesting written; ours is about 4 */

struct jsonw {
    char *buf; /* NUL-terminated output, owned */
    size_t len;
    size_t cap;
    int depth;
    unsigned char levels[JSONW_MAX_DEPTH]; /* per-level comma state */
};

void jsonw_init(struct jsonw *w);
void jsonw_free(struct jsonw *w);
/* Hands the buffer to the caller (free() it); the writer is reset. */
char *jsonw_steal(struct jsonw *w, size_t *len);
void jsonw_reset(struct jsonw *w);

void jsonw_object_begin(struct jsonw *w);
void jsonw_object_end(struct jsonw *w);
void jsonw_array_begin(struct jsonw *w);
void jsonw_array_end(struct jsonw *w);
void jsonw_key(struct jsonw *w, const char *key);

void jsonw_string(struct jsonw *w, const char *s);
void jsonw_string_len(struct jsonw *w, const char *s, size_t len);
void jsonw_string_or_null(struct jsonw *w, const char *s);
void jsonw_int(struct jsonw *w, int64_t v);
void jsonw_money(struct jsonw *w, int64_t cents);
void jsonw_time(struct jsonw *w, int64_t ms); /* RFC 3339 string */
void jsonw_bool(struct jsonw *w, int v);
void jsonw_null(struct jsonw *w);
/* Inserts already-serialized JSON (an object, say) as one value. */
void jsonw_raw(struct jsonw *w, const char *json, size_t len);

#endif
