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
 *     that reads too slowly to keep up is disconnected, never buffered for;
 *   - a comment line every SSE_KEEPALIVE_MS keeps proxies from closing an
 *     idle stream and finds clients that went away;
 *   - when the server begins to drain for shutdown every stream ends.
 * Events are not stored: a client sees what is published while it is
 * connected (Last-Event-ID is not replayed).
 */
#ifndef LIB_SSE_H
#define LIB_SSE_H

#include <stddef.h>

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

#endif
