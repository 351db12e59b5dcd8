#include "jsonw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "money.h"
#include "timeutil.h"
#include "util.h"

#define JSONW_INITIAL_CAP 256

void jsonw_init(struct jsonw *w)
{
    memset(w, 0, sizeof(*w));
    w->cap = JSONW_INITIAL_CAP;
    w->buf = xmalloc(w->cap);
    w->buf[0] = '\0';
}

void jsonw_free(struct jsonw *w)
{
    free(w->buf);
    memset(w, 0, sizeof(*w));
}

char *jsonw_steal(struct jsonw *w, size_t *len)
{
    char *out = w->buf;
    if (len)
        *len = w->len;
    jsonw_init(w);
    return out;
}

void jsonw_reset(struct jsonw *w)
{
    w->len = 0;
    w->depth = 0;
    w->failed = 0;
    w->buf[0] = '\0';
    memset(w->levels, 0, sizeof(w->levels));
}

int jsonw_failed(const struct jsonw *w)
{
    return w->failed;
}

/* Makes room for extra more bytes and the NUL; 0, or -1 when the writer
 * has failed (now or before), its output emptied. */
static int reserve(struct jsonw *w, size_t extra)
{
    if (w->failed)
        return -1;
    if (w->len + extra + 1 <= w->cap)
        return 0;
    if (extra >= JSONW_MAX_BYTES || w->len + extra + 1 > JSONW_MAX_BYTES) {
        w->failed = 1;
        w->len = 0;
        w->buf[0] = '\0';
        return -1;
    }
    size_t cap = w->cap;
    while (w->len + extra + 1 > cap)
        cap *= 2;
    if (cap > JSONW_MAX_BYTES)
        cap = JSONW_MAX_BYTES;
    w->buf = xrealloc(w->buf, cap);
    w->cap = cap;
    return 0;
}

static void put(struct jsonw *w, const char *s, size_t n)
{
    if (reserve(w, n) != 0)
        return;
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

static void putc_(struct jsonw *w, char c)
{
    if (reserve(w, 1) != 0)
        return;
    w->buf[w->len++] = c;
    w->buf[w->len] = '\0';
}

/* Per nesting level: nothing written yet, a value written (the next one
 * needs a comma), or a key written (its value follows the colon). */
enum { LEVEL_EMPTY = 0, LEVEL_HAS_VALUE = 1, LEVEL_AFTER_KEY = 2 };

static unsigned char *level_state(struct jsonw *w)
{
    int i = w->depth <= JSONW_MAX_DEPTH ? w->depth - 1 : JSONW_MAX_DEPTH - 1;
    return &w->levels[i];
}

static void before_value(struct jsonw *w)
{
    if (w->depth == 0)
        return;
    unsigned char *state = level_state(w);
    if (*state == LEVEL_HAS_VALUE)
        putc_(w, ',');
    *state = LEVEL_HAS_VALUE;
}

static void open_(struct jsonw *w, char c)
{
    before_value(w);
    putc_(w, c);
    w->depth++;
    *level_state(w) = LEVEL_EMPTY;
}

static void close_(struct jsonw *w, char c)
{
    if (w->depth > 0)
        w->depth--;
    putc_(w, c);
}

void jsonw_object_begin(struct jsonw *w)
{
    open_(w, '{');
}
void jsonw_object_end(struct jsonw *w)
{
    close_(w, '}');
}
void jsonw_array_begin(struct jsonw *w)
{
    open_(w, '[');
}
void jsonw_array_end(struct jsonw *w)
{
    close_(w, ']');
}

static void escaped(struct jsonw *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (reserve(w, n + 2) != 0) /* the common case, grown once */
        return;
    putc_(w, '"');
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        put(w, s + start, i - start);
        start = i + 1;
        switch (c) {
        case '"':
            put(w, "\\\"", 2);
            break;
        case '\\':
            put(w, "\\\\", 2);
            break;
        case '\n':
            put(w, "\\n", 2);
            break;
        case '\r':
            put(w, "\\r", 2);
            break;
        case '\t':
            put(w, "\\t", 2);
            break;
        case '\b':
            put(w, "\\b", 2);
            break;
        case '\f':
            put(w, "\\f", 2);
            break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(w, u, sizeof(u));
        }
        }
    }
    put(w, s + start, n - start);
    putc_(w, '"');
}

void jsonw_key(struct jsonw *w, const char *key)
{
    before_value(w);
    escaped(w, key, strlen(key));
    putc_(w, ':');
    if (w->depth > 0)
        *level_state(w) = LEVEL_AFTER_KEY;
}

void jsonw_string_len(struct jsonw *w, const char *s, size_t len)
{
    before_value(w);
    escaped(w, s, len);
}

void jsonw_string(struct jsonw *w, const char *s)
{
    jsonw_string_len(w, s, strlen(s));
}

void jsonw_string_or_null(struct jsonw *w, const char *s)
{
    if (s)
        jsonw_string(w, s);
    else
        jsonw_null(w);
}

void jsonw_int(struct jsonw *w, int64_t v)
{
    char tmp[UTIL_INT_TEXT_MAX];
    size_t n = util_format_i64(v, tmp);
    before_value(w);
    put(w, tmp, n);
}

void jsonw_money(struct jsonw *w, int64_t cents)
{
    char tmp[MONEY_TEXT_MAX];
    size_t n = money_format(cents, tmp);
    before_value(w);
    put(w, tmp, n);
}

void jsonw_time(struct jsonw *w, int64_t ms)
{
    char tmp[TIMEUTIL_TEXT_MAX];
    size_t n = timeutil_format_rfc3339(ms, tmp);
    before_value(w);
    escaped(w, tmp, n);
}

void jsonw_bool(struct jsonw *w, int v)
{
    before_value(w);
    if (v)
        put(w, "true", 4);
    else
        put(w, "false", 5);
}

void jsonw_null(struct jsonw *w)
{
    before_value(w);
    put(w, "null", 4);
}

void jsonw_raw(struct jsonw *w, const char *json, size_t len)
{
    before_value(w);
    put(w, json, len);
}
