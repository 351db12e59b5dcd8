/*
 * http: the HTTP server every service runs, on libmicrohttpd (epoll with
 * an internal thread pool). Services never touch MHD: they give a table of
 * routes and write handlers against the small request API below. A route
 * may carry data for its handler, so that one handler serves every route
 * of the same shape (rows.h, create.h) with each route's own table.
 *
 * What this layer does for every request, before a handler runs:
 *   - routing by method and path ("{id}" matches a positive integer id,
 *     anything else there is 404), 405 with Allow, OPTIONS preflight 204;
 *   - bodies: Content-Type must be application/json (415), the size limit
 *     is enforced from Content-Length or while a chunked body arrives (413,
 *     never buffered past the limit), then body_parse() (400 / 422);
 *   - X-Request-Id echoed when valid, generated otherwise; CORS headers on
 *     every answer; request count and latency recorded in metrics;
 *   - GET /healthz, /readyz and /metrics at the root;
 *   - deadlines: a connection silent for cfg->idle_timeout_s is closed, and
 *     so is one whose request head or body is trickled in too slowly.
 *
 * A handler runs on an HTTP worker thread and must answer exactly once,
 * with http_reply() or http_reply_error(). Everything reachable from an
 * http_request is borrowed and valid only during the handler.
 */
#ifndef LIB_HTTP_H
#define LIB_HTTP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "api_error.h"
#include "config.h"
#include "jsonw.h"
#include "listq.h"
#include "util.h"

typedef struct http_server http_server;
typedef struct http_request http_request;

typedef void (*http_handler)(http_request *req, void *app);

struct http_route {
    const char *method;  /* "GET" or "POST" (GET also answers HEAD) */
    const char *pattern; /* "/order-service/orders/{id}" */
    http_handler handler;
    const void *data; /* for the handler: http_route_data(); may be NULL */
    /* POST only: an empty body is accepted (http_body() is then NULL), as
     * for an action that takes no input; a body sent is still checked. */
    int body_optional;
};

/* A fixed JSON document served as is (a service's openapi.json): the
 * bytes from start to end, static and never freed. */
struct http_document {
    const char *start;
    const char *end;
};

#define HTTP_READY_PROBLEM_MAX UTIL_ERR_MAX

/* What /readyz reports: the database and the broker, and optionally one
 * more check of the service's own (its consumer, say) with, when it
 * fails, why. */
struct http_readiness {
    int database_ok;
    int broker_ok;
    const char *extra_name;                     /* NULL: no third check */
    char extra_problem[HTTP_READY_PROBLEM_MAX]; /* "" when it is fine */
};

/* Fills r (zeroed by the caller). */
typedef void (*http_ready_fn)(void *app, struct http_readiness *r);

struct http_server_config {
    const struct config *cfg;
    const struct http_route *routes;
    size_t route_count;
    http_ready_fn ready;
    void *app; /* passed to handlers and ready() */
};

/* Starts listening; NULL and err filled on failure. */
http_server *http_server_start(const struct http_server_config *conf, char *err, size_t errlen);

/* Graceful stop: stops accepting, lets in-flight requests finish (at most
 * cfg->shutdown_timeout_s), then closes every connection and frees. */
void http_server_stop(http_server *srv);

/* The handler of a route whose data is a struct http_document: answers
 * 200 with the document (400 invalid_query to any query parameter). */
void http_handle_document(http_request *req, void *app);
typedef struct http_document http_handle_document_data; /* route data (route.h) */

/* ---- for handlers ---- */

const char *http_request_id(const http_request *req);
/* The request's span of its trace (trace.h): the caller's trace from its
 * traceparent header, or a new one. */
struct trace_context;
const struct trace_context *http_trace(const http_request *req);
/* "GET", "POST", ... and the path as requested, %-escapes decoded. */
const char *http_method(const http_request *req);
const char *http_path(const http_request *req);
/* The body of a POST as it arrived (de-chunked), *len bytes; "" when
 * there was none. */
const char *http_raw_body(const http_request *req, size_t *len);
/* A request header (name case-insensitive): returns how many times it
 * came (0 when absent), with the first one's value and its length in
 * bytes (a value may hold bytes a C string would cut short). */
int http_header(const http_request *req, const char *name, const char **value, size_t *len);
/* The data of the route that matched (struct http_route). */
const void *http_route_data(const http_request *req);
/* A request header's value (borrowed), or NULL when absent. */
const char *http_request_header(const http_request *req, const char *name);
/* The {id} of the path (0 when the route has none). */
int64_t http_path_id(const http_request *req);
/* The parsed JSON body of a POST (borrowed); NULL for other methods. */
json_t *http_body(const http_request *req);
/* The query parameters in order of appearance (borrowed). */
void http_query(const http_request *req, const struct query_param **params, size_t *count);

/* Removes every query parameter named key, for a handler that consumed
 * them before passing the request to a stricter one. */
void http_query_drop(http_request *req, const char *key);

/* For an endpoint that takes no query parameters: answers 400
 * invalid_query and returns 1 when the request has any, else returns 0. */
int http_refuse_query(http_request *req);

/* Adds a header to the answer (copied); call before replying. */
void http_add_header(http_request *req, const char *name, const char *value);
/* Answers with w's JSON (the buffer is taken over; w is left empty); a
 * writer that failed (jsonw_failed: past JSONW_MAX_BYTES) answers 500
 * internal instead. */
void http_reply(http_request *req, int status, struct jsonw *w);
/* Answers with serialized JSON; body (malloc'd, or NULL when len is 0) is
 * taken over. */
void http_reply_json(http_request *req, int status, char *body, size_t len);
void http_reply_error(http_request *req, const struct api_error *err);
/* Answers with body (malloc'd, or NULL when len is 0; taken over) of
 * content_type (a string that outlives the request: a literal). */
void http_reply_data(http_request *req, int status, const char *content_type, char *body,
                     size_t len);

/* ---- streamed answers (Server-Sent Events, sse.h) ----
 *
 * http_reply_stream() answers 200 with a body of unknown length (chunked)
 * produced by read(cls, buf, max) on an HTTP worker thread whenever the
 * connection can take more: it returns the bytes written into buf, or
 * HTTP_STREAM_END to end the answer, HTTP_STREAM_ABORT to close the
 * connection, or 0 when it has nothing yet, after calling
 * http_stream_suspend(): the connection then leaves the event loop, no
 * worker thread waits for it, and read is called again once someone calls
 * http_stream_resume() (exactly once per suspension). done(cls) runs once
 * when the connection is finished with, whatever the reason; the stream
 * handle is invalid from then on. A suspended stream is never finished:
 * its owner must resume it (at the latest when http_stream_draining()
 * says the server is stopping).
 *
 * http_stream_close() closes a stream that is not suspended from any
 * thread, at once: it shuts its socket down, so that libmicrohttpd
 * finishes the connection (and calls done) even when the client no longer
 * reads, when read would not be called again. Only before done has run:
 * the owner orders the two (sse.c does with its lock). */
typedef struct http_stream http_stream;
#define HTTP_STREAM_END (-1)
#define HTTP_STREAM_ABORT (-2)
typedef long (*http_stream_read_fn)(void *cls, char *buf, size_t max);
typedef void (*http_stream_done_fn)(void *cls);
http_stream *http_reply_stream(http_request *req, const char *content_type,
                               http_stream_read_fn read, http_stream_done_fn done, void *cls);
void http_stream_suspend(http_stream *st);
void http_stream_resume(http_stream *st);
void http_stream_close(http_stream *st);
int http_stream_draining(const http_stream *st);

/* For a handler whose work finishes on another thread (the group-commit
 * thread, say): call http_suspend() before handing the work off and
 * return; that thread answers with http_reply()/http_reply_error() and
 * then calls http_resume(). The request, its body included, stays valid
 * until then; the HTTP worker thread is free meanwhile. */
void http_suspend(http_request *req);
void http_resume(http_request *req);

/* Whether the server is draining for shutdown: a request kept suspended
 * by choice (waiting for the read model) should be answered now. */
int http_draining(const http_request *req);

#endif
