/*
 * trace: W3C Trace Context (the `traceparent` header) across the system
 * (docs/api.md 8.6).
 *
 *   traceparent: 00-<trace id: 32 hex>-<span id: 16 hex>-<flags: 2 hex>
 *
 * A request's traceparent (or a new trace, when it is absent or invalid)
 * travels with every event the request causes: each event is a span of
 * its own, a child of the request's, and the relay publishes it as the
 * AMQP header `traceparent`. The consumer makes its own span for each
 * delivery and writes the trace id into its log lines.
 *
 * Parsing follows the recommendation's version 00: lower-case hex only,
 * neither id all zeros, version ff invalid. A later version is read by
 * its version-00 prefix, as the recommendation asks of a version-00
 * reader. Everything here works on caller-owned buffers.
 */
#ifndef LIB_TRACE_H
#define LIB_TRACE_H

#include <stddef.h>

#define TRACE_HEADER "traceparent"
#define TRACE_ID_HEX 32
#define TRACE_SPAN_HEX 16
#define TRACE_PARENT_LEN 55 /* 2 + 1 + 32 + 1 + 16 + 1 + 2 */

struct trace_context {
    char trace_id[TRACE_ID_HEX + 1];
    char span_id[TRACE_SPAN_HEX + 1];
    unsigned flags; /* trace-flags; bit 0: sampled */
};

/* Reads a traceparent header value into *out. Returns 0, or -1 when text
 * is NULL or not a valid traceparent (then *out is untouched). */
int trace_parse(const char *text, struct trace_context *out);

/* A new trace: random ids, sampled. */
void trace_start(struct trace_context *out);

/* A child span of parent: the same trace id and flags, a new span id.
 * parent may be out. */
void trace_child(const struct trace_context *parent, struct trace_context *out);

/* Formats ctx as a version-00 traceparent into buf (at least
 * TRACE_PARENT_LEN + 1 bytes). */
void trace_format(const struct trace_context *ctx, char *buf, size_t size);

#endif
