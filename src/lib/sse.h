/*
 * sse: a hub of Server-Sent Events streams (text/event-stream). Clients
 * connect with sse_hub_handle() from a GET handler; whoever produces events
 * (the invoice consumer, after each commit) hands them to sse_publish(),
 * which copies each into the buffer of every client and wakes the clients
 * that were waiting.
 *
 * No HTTP worker thread waits for a client: a stream with nothing to send
 * is suspended (http_stream_suspend) and resumed when an event, a
 * keep-alive comment or the end comes. Everything is bounded:
 *   - at most SSE_MAX_CLIENTS streams at once; one more is 503 unavailable
 *     with Retry-After;
 *   - a client's unsent bytes are capped at SSE_CLIENT_BUFFER: a client
 *     that reads too slowly to keep up is disconnected at once (its socket
 *     closed, even while it reads nothing), never buffered for;
 *   - a comment line every SSE_KEEPALIVE_MS keeps proxies from closing an
 *     idle stream and finds clients that went away;
 *   - when the server begins to drain for shutdown every stream ends.
 * Events are not stored: a client sees what is published while it is
 * connected (Last-Event-ID is not replayed).
 */
#ifndef LIB_SSE_H
#define LIB_SSE_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"

#define SSE_MAX_CLIENTS 64
#define SSE_CLIENT_BUFFER (64 * 1024)
#define SSE_KEEPALIVE_MS 15000
/* How often the hub's thread looks for due keep-alives and for a drain. */
#define SSE_TICK_MS 100
/* The reconnection delay sent to clients (the "retry:" field). */
#define SSE_RETRY_MS 2000

typedef struct sse_hub sse_hub;

/* Starts the hub's thread; NULL and err filled on failure. */
sse_hub *sse_hub_start(char *err, size_t errlen);

/* Answers req with a stream of the hub's events (or 503 past the cap, or
 * 400 when the request has query parameters). */
void sse_hub_handle(http_request *req, sse_hub *hub);

/* Sends one event to every client: an "id:" line (the hub's own counter)
 * and data, one line of JSON (len bytes, no newline in it). Any thread. */
void sse_publish(sse_hub *hub, const char *data, size_t len);

/* Streams open now. */
size_t sse_client_count(sse_hub *hub);

/* Stops the thread and frees. Call after the HTTP server stopped (every
 * stream is finished then). */
void sse_hub_stop(sse_hub *hub);

/* ---- one client's queue ----
 * The hub's queueing and drop rule, apart from any connection so that it
 * can be tested on its own. What waits for a client is kept in one buffer
 * of SSE_CLIENT_BUFFER bytes. A piece (an event, a comment) goes in whole
 * or not at all: one that would take the unsent bytes past the buffer is
 * refused, and from then on the queue refuses everything, since a client
 * that missed an event must not be sent the ones after it as if it had
 * not (the hub disconnects it; a browser reconnects and re-reads). */
struct sse_queue {
    char *buf; /* SSE_CLIENT_BUFFER bytes; unsent: buf[off, len) */
    size_t off, len;
    int overflowed; /* a piece was refused: everything is, from then on */
};

void sse_queue_init(struct sse_queue *q);
void sse_queue_free(struct sse_queue *q);
/* Appends len bytes of text: 0, or -1 when refused (nothing appended). */
int sse_queue_put(struct sse_queue *q, const char *text, size_t len);
/* Appends the event "id: <id>\ndata: <data>\n\n" (data: len bytes, one
 * line): 0, or -1 when refused (nothing appended). */
int sse_queue_put_event(struct sse_queue *q, uint64_t id, const char *data, size_t len);
/* Moves up to max of the oldest unsent bytes into out; returns how many. */
size_t sse_queue_take(struct sse_queue *q, char *out, size_t max);
/* Bytes waiting to be sent. */
size_t sse_queue_unsent(const struct sse_queue *q);
/* Whether a stream last given something at last_ns is due a keep-alive
 * comment at now_ns (util_monotonic_ns() times): after SSE_KEEPALIVE_MS. */
int sse_keepalive_due(int64_t last_ns, int64_t now_ns);

#endif
