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
 *
 * The buffer never grows past JSONW_MAX_BYTES. A write that would take it
 * further fails the writer, and the failure sticks like a failed bind
 * (db.h): the output is emptied, later writes do nothing, and
 * jsonw_failed() says so until jsonw_reset(). Whoever hands the output on
 * checks it once at the end (http_reply answers 500 instead), so a bug
 * that writes without end costs an error, never the process's memory.
 */
#ifndef LIB_JSONW_H
#define LIB_JSONW_H

#include <stddef.h>
#include <stdint.h>

#define JSONW_MAX_DEPTH 32 /* deepest nesting written; ours is about 4 */
/* The largest output of one writer, its NUL included. Our largest is a
 * batch create's answer or a list page, well under a megabyte; the bound
 * is the largest request body we accept (--body-limit's maximum). */
#define JSONW_MAX_BYTES ((size_t)64 * 1024 * 1024)

struct jsonw {
    char *buf; /* NUL-terminated output, owned */
    size_t len;
    size_t cap;
    int depth;
    unsigned char levels[JSONW_MAX_DEPTH]; /* per-level comma state */
    int failed;                            /* 1: a write passed JSONW_MAX_BYTES */
};

void jsonw_init(struct jsonw *w);
void jsonw_free(struct jsonw *w);
/* Hands the buffer to the caller (free() it); the writer is reset. The
 * output of a failed writer is "" (check jsonw_failed first). */
char *jsonw_steal(struct jsonw *w, size_t *len);
/* Empties the writer and clears its failure. */
void jsonw_reset(struct jsonw *w);
/* 1 when a write would have passed JSONW_MAX_BYTES (the output is then
 * empty and stays so until jsonw_reset), else 0. */
int jsonw_failed(const struct jsonw *w);

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
