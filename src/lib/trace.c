#include "trace.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

#define TRACE_FLAG_SAMPLED 0x01u
#define TRACE_VERSION_INVALID "ff"

/* n lower-case hex digits, not all of them zero when nonzero is set. */
static int is_hex(const char *s, size_t n, int nonzero)
{
    int any = 0;

    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
        any |= c != '0';
    }
    return !nonzero || any;
}

static unsigned hex_value(char c)
{
    return c <= '9' ? (unsigned)(c - '0') : (unsigned)(c - 'a' + 10);
}

int trace_parse(const char *text, struct trace_context *out)
{
    if (!text)
        return -1;
    size_t len = strlen(text);
    /* version "-" trace-id "-" parent-id "-" flags */
    if (len < TRACE_PARENT_LEN || !is_hex(text, 2, 0) ||
        memcmp(text, TRACE_VERSION_INVALID, 2) == 0 || text[2] != '-' ||
        !is_hex(text + 3, TRACE_ID_HEX, 1) || text[35] != '-' ||
        !is_hex(text + 36, TRACE_SPAN_HEX, 1) || text[52] != '-' || !is_hex(text + 53, 2, 0))
        return -1;
    /* Version 00 is exactly 55 characters; a later version may add fields
     * after another "-". */
    if (len > TRACE_PARENT_LEN && (memcmp(text, "00", 2) == 0 || text[TRACE_PARENT_LEN] != '-'))
        return -1;
    memcpy(out->trace_id, text + 3, TRACE_ID_HEX);
    out->trace_id[TRACE_ID_HEX] = '\0';
    memcpy(out->span_id, text + 36, TRACE_SPAN_HEX);
    out->span_id[TRACE_SPAN_HEX] = '\0';
    out->flags = hex_value(text[53]) << 4 | hex_value(text[54]);
    return 0;
}

/* Random hex digits, never all zeros (an all-zero id is invalid). */
static void random_id(char *out, size_t hex_digits)
{
    do
        util_random_hex(out, hex_digits / 2);
    while (!is_hex(out, hex_digits, 1));
}

void trace_start(struct trace_context *out)
{
    random_id(out->trace_id, TRACE_ID_HEX);
    random_id(out->span_id, TRACE_SPAN_HEX);
    out->flags = TRACE_FLAG_SAMPLED;
}

void trace_child(const struct trace_context *parent, struct trace_context *out)
{
    if (out != parent) {
        memcpy(out->trace_id, parent->trace_id, sizeof(out->trace_id));
        out->flags = parent->flags;
    }
    random_id(out->span_id, TRACE_SPAN_HEX);
}

void trace_format(const struct trace_context *ctx, char *buf, size_t size)
{
    /* Only the bits version 00 defines are passed on. */
    snprintf(buf, size, "00-%s-%s-%02x", ctx->trace_id, ctx->span_id, ctx->flags & 0xffu);
}
