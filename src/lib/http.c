#include "http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "body.h"
#include "deadline.h"
#include "log.h"
#include "metrics.h"
#include "route.h"
#include "trace.h"
#include "util.h"

#define REQUEST_ID_MAX 128
#define MAX_EXTRA_HEADERS 8
#define INITIAL_BODY_CAP 1024
#define DISCARD_MAX_FACTOR 16 /* bytes read and dropped, in body limits */
#define DRAIN_POLL_US 10000
#define CONTENT_TYPE_JSON "application/json; charset=utf-8"
#define CONTENT_TYPE_METRICS "text/plain; version=0.0.4; charset=utf-8"
#define CORS_ALLOW_HEADERS "Content-Type, X-Request-Id, Idempotency-Key, Authorization, traceparent"
#define CORS_EXPOSE_HEADERS                                                                        \
    "Location, X-Request-Id, X-Consistency-Token, Idempotent-Replayed, Retry-After"
#define CORS_MAX_AGE "86400"

struct http_server {
    struct MHD_Daemon *daemon;
    const struct config *cfg;
    const struct http_route *routes;
    size_t route_count;
    http_ready_fn ready;
    void *app;
    /* Shutdown: while draining, answers carry Connection: close so
     * keep-alive clients stop sending; once closed (decided under lock
     * together with in_flight reaching 0) no request may begin, so none
     * is suspended when MHD_stop_daemon runs. */
    pthread_mutex_t flight_lock;
    int in_flight; /* requests begun and not yet completed */
    atomic_int draining;
    int closed;

    /* Connection deadlines (deadline.h): every open connection, and the
     * thread that shuts down those whose client keeps its request from
     * arriving. */
    deadline_list *deadlines;
};

struct extra_header {
    char name[32];
    char *value; /* owned; a consistency token may be long */
};

struct http_request {
    http_server *srv;
    struct MHD_Connection *conn;
    deadline_conn *link;            /* its connection's deadline record, or NULL */
    const struct http_route *route; /* NULL until matched */
    const char *route_label;        /* for metrics: a pattern, never raw input */
    const char *method_label;
    char *path; /* as requested (decoded), for handlers */
    int64_t path_id;
    int64_t start_ns;
    char request_id[REQUEST_ID_MAX + 1];
    struct trace_context trace; /* this request's span (trace.h) */

    /* What to do at the end of the upload: run the handler, or answer
     * with an error or a preflight decided from the headers alone. */
    enum { NEXT_HANDLER, NEXT_ERROR, NEXT_PREFLIGHT } next;
    struct api_error error;
    char allow[ROUTE_ALLOW_MAX]; /* methods allowed on the matched path */

    int wants_body;
    char *body;
    size_t body_len, body_cap;
    json_t *json;

    struct query_param *params;
    size_t param_count, param_cap;

    struct extra_header headers[MAX_EXTRA_HEADERS];
    int header_count;
    int status;         /* answered status, 0 while unanswered */
    int queued;         /* a response went to MHD */
    int answered_raw;   /* the early 413 was written to the socket */
    int suspended;      /* waiting for another thread's answer */
    atomic_int resumed; /* that answer is ready */
    char *reply_body;
    size_t reply_len;
    const char *reply_type;
    struct http_stream *stream; /* a streamed answer, until queued */
};

/* A streamed answer: MHD owns it from queue_reply to stream_free. */
struct http_stream {
    http_server *srv;
    struct MHD_Connection *conn;
    http_stream_read_fn read;
    http_stream_done_fn done;
    void *cls;
};

/* MHD asks a streamed answer for blocks of at most this many bytes. */
#define STREAM_BLOCK 4096

/* ---------------------------------------------------------------- util */

static int valid_request_id(const char *id)
{
    size_t n = 0;
    if (!id)
        return 0;
    for (; id[n]; n++)
        if ((unsigned char)id[n] < 0x20 || (unsigned char)id[n] > 0x7e || n >= REQUEST_ID_MAX)
            return 0;
    return n > 0;
}

#define GENERATED_ID_BYTES 16 /* 32 hex digits */

static void generate_request_id(char *out)
{
    util_random_hex(out, GENERATED_ID_BYTES);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes the %HH escapes of a URL path or of a query key or value, as
 * libmicrohttpd would, except %00: a NUL would end the C string that
 * routing and handlers see, silently cutting "1%00x" down to "1". It stays
 * the three characters "%00", which no id, number or fixed value matches,
 * so the request gets the 404 or 400 the rest of it deserves. */
static size_t unescape_url(void *cls, struct MHD_Connection *conn, char *s)
{
    char *out = s;
    const char *in = s;
    int hi, lo;
    (void)cls;
    (void)conn;

    while (*in) {
        if (in[0] == '%' && (hi = hex_value(in[1])) >= 0 && (lo = hex_value(in[2])) >= 0 &&
            (hi | lo) != 0) {
            *out++ = (char)(hi * 16 + lo);
            in += 3;
        } else {
            *out++ = *in++;
        }
    }
    *out = '\0';
    return (size_t)(out - s);
}

static const char *method_label(const char *method)
{
    static const char *const known[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
    for (size_t i = 0; i < ARRAY_LEN(known); i++)
        if (strcmp(method, known[i]) == 0)
            return known[i];
    return "OTHER";
}

/* The method as a message may name it: a short HTTP token, or else a
 * placeholder (the metrics label folds every unknown one into "OTHER"). */
static const char *shown_method(const char *method)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    size_t n = 0;

    for (; method[n]; n++) {
        unsigned char c = (unsigned char)method[n];
        if (n == 16 || !(isalnum(c) || (c && strchr(tchar, c))))
            return "this method";
    }
    return n ? method : "this method";
}

/* ------------------------------------------------------------- routing */

static const struct http_route builtin_routes[];
static const size_t builtin_route_count;

/* Finds the route for method and path (route.h), the built-in probes
 * first; on failure sets req->next and req->error (404, or 405 with
 * req->allow). */
static void route_request(http_request *req, const char *method, const char *path)
{
    const struct route_table tables[] = {
        {builtin_routes, builtin_route_count},
        {req->srv->routes, req->srv->route_count},
    };
    struct route_match m;

    route_find(tables, ARRAY_LEN(tables), method, path, &m);
    util_strlcpy(req->allow, m.allow, sizeof(req->allow));
    if (m.route) {
        req->route = m.route;
        req->route_label = m.route->pattern;
        req->path_id = m.id;
        return;
    }
    req->next = NEXT_ERROR;
    if (!m.path_known) {
        api_error_set(&req->error, 404, "not_found", NULL,
                      m.bad_id ? "no such resource (ids are positive integers)"
                               : "no such resource");
        return;
    }
    route_allow_add(req->allow, sizeof(req->allow), "OPTIONS");
    if (strcmp(method, "OPTIONS") == 0) {
        req->next = NEXT_PREFLIGHT;
        return;
    }
    req->route_label = "method_not_allowed";
    api_error_set(&req->error, 405, "method_not_allowed", NULL,
                  "%s is not allowed here; allowed: %s", shown_method(method), req->allow);
}

/* ------------------------------------------------------------ answering */

void http_add_header(http_request *req, const char *name, const char *value)
{
    if (req->header_count == MAX_EXTRA_HEADERS)
        return;
    struct extra_header *h = &req->headers[req->header_count++];
    util_strlcpy(h->name, name, sizeof(h->name));
    h->value = xstrdup(value);
}

static void set_reply(http_request *req, int status, char *body, size_t len, const char *type)
{
    free(req->reply_body);
    req->status = status;
    req->reply_body = body;
    req->reply_len = len;
    req->reply_type = type;
}

void http_reply(http_request *req, int status, struct jsonw *w)
{
    size_t len;

    if (jsonw_failed(w)) { /* an answer past JSONW_MAX_BYTES: our fault */
        struct api_error err;
        jsonw_reset(w);
        api_error_set(&err, 500, "internal", NULL, "the answer would be too large");
        http_reply_error(req, &err);
        return;
    }
    char *body = jsonw_steal(w, &len);
    set_reply(req, status, body, len, CONTENT_TYPE_JSON);
}

void http_reply_json(http_request *req, int status, char *body, size_t len)
{
    set_reply(req, status, body, len, CONTENT_TYPE_JSON);
}

void http_reply_error(http_request *req, const struct api_error *err)
{
    struct jsonw w;
    jsonw_init(&w);
    api_error_write(err, &w);
    if (err->status >= 500)
        log_warn(req->request_id, "%s %s -> %d %s: %s", req->method_label, req->route_label,
                 err->status, err->code, err->message);
    if (err->status == 405)
        http_add_header(req, "Allow", req->allow);
    http_reply(req, err->status, &w);
    jsonw_free(&w);
}

void http_reply_data(http_request *req, int status, const char *content_type, char *body,
                     size_t len)
{
    set_reply(req, status, body, len, content_type);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct http_stream *st = cls;
    (void)pos;
    long n = st->read(st->cls, buf, max);
    if (n == HTTP_STREAM_END)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (n < 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    struct http_stream *st = cls;
    st->done(st->cls);
    free(st);
}

http_stream *http_reply_stream(http_request *req, const char *content_type,
                               http_stream_read_fn read, http_stream_done_fn done, void *cls)
{
    struct http_stream *st = xcalloc(1, sizeof(*st));

    st->srv = req->srv;
    st->conn = req->conn;
    st->read = read;
    st->done = done;
    st->cls = cls;
    set_reply(req, 200, NULL, 0, content_type);
    req->stream = st;
    return st;
}

void http_stream_suspend(http_stream *st)
{
    MHD_suspend_connection(st->conn);
}
void http_stream_resume(http_stream *st)
{
    MHD_resume_connection(st->conn);
}

/* The socket is closed only after done() has run (libmicrohttpd frees the
 * answer, and so calls done, before it closes the socket), so before then
 * the descriptor is still this connection's. */
void http_stream_close(http_stream *st)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(st->conn, MHD_CONNECTION_INFO_CONNECTION_FD);

    if (ci)
        shutdown(ci->connect_fd, SHUT_RDWR);
}
int http_stream_draining(const http_stream *st)
{
    return atomic_load(&st->srv->draining);
}

/* Hands the prepared answer to MHD. */
static enum MHD_Result queue_reply(http_request *req)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    if (!req->status) {
        struct api_error e;
        api_error_set(&e, 500, "internal", NULL, "the handler gave no answer");
        http_reply_error(req, &e);
    }
    if (req->stream) {
        struct http_stream *st = req->stream;
        req->stream = NULL;
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_read, st,
                                                 stream_free);
        if (!resp) {
            stream_free(st);
            return MHD_NO;
        }
    } else {
        resp =
            MHD_create_response_from_buffer(req->reply_len, req->reply_body, MHD_RESPMEM_MUST_FREE);
        if (!resp)
            return MHD_NO;
        req->reply_body = NULL; /* MHD owns it now */
    }
    if (req->reply_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, req->reply_type);
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
    MHD_add_response_header(resp, "Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS);
    MHD_add_response_header(resp, "X-Request-Id", req->request_id);
    if (atomic_load(&req->srv->draining))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    for (int i = 0; i < req->header_count; i++)
        MHD_add_response_header(resp, req->headers[i].name, req->headers[i].value);
    ret = MHD_queue_response(req->conn, (unsigned int)req->status, resp);
    MHD_destroy_response(resp);
    req->queued = 1;
    return ret;
}

static enum MHD_Result answer_error(http_request *req)
{
    http_reply_error(req, &req->error);
    return queue_reply(req);
}

static enum MHD_Result answer_preflight(http_request *req)
{
    http_add_header(req, "Access-Control-Allow-Methods", req->allow);
    http_add_header(req, "Access-Control-Allow-Headers", CORS_ALLOW_HEADERS);
    http_add_header(req, "Access-Control-Max-Age", CORS_MAX_AGE);
    http_add_header(req, "Allow", req->allow);
    set_reply(req, 204, NULL, 0, NULL);
    return queue_reply(req);
}

/* ------------------------------------------------------ built-in routes */

static void handle_healthz(http_request *req, void *app)
{
    (void)app;
    struct jsonw w;
    jsonw_init(&w);
    jsonw_object_begin(&w);
    jsonw_key(&w, "status");
    jsonw_string(&w, "ok");
    jsonw_object_end(&w);
    http_reply(req, 200, &w);
    jsonw_free(&w);
}

static void handle_readyz(http_request *req, void *app)
{
    struct http_readiness r;
    struct jsonw w;
    char message[HTTP_READY_PROBLEM_MAX + 64];

    memset(&r, 0, sizeof(r));
    req->srv->ready(app, &r);
    int extra_ok = !r.extra_name || !r.extra_problem[0];
    int ok = r.database_ok && r.broker_ok && extra_ok;
    jsonw_init(&w);
    jsonw_object_begin(&w);
    if (!ok) {
        /* The error object of docs/api.md, plus which dependency is down. */
        if (!r.database_ok || !r.broker_ok)
            snprintf(message, sizeof(message), "%s",
                     !r.database_ok && !r.broker_ok ? "database and broker are not usable"
                     : !r.database_ok               ? "database is not usable"
                                                    : "broker is not usable");
        else
            snprintf(message, sizeof(message), "%s: %s", r.extra_name, r.extra_problem);
        jsonw_key(&w, "error");
        jsonw_object_begin(&w);
        jsonw_key(&w, "status");
        jsonw_int(&w, 503);
        jsonw_key(&w, "code");
        jsonw_string(&w, "unavailable");
        jsonw_key(&w, "message");
        jsonw_string(&w, message);
        jsonw_object_end(&w);
    }
    jsonw_key(&w, "status");
    jsonw_string(&w, ok ? "ok" : "unavailable");
    jsonw_key(&w, "checks");
    jsonw_object_begin(&w);
    jsonw_key(&w, "database");
    jsonw_string(&w, r.database_ok ? "ok" : "down");
    jsonw_key(&w, "broker");
    jsonw_string(&w, r.broker_ok ? "ok" : "down");
    if (r.extra_name) {
        jsonw_key(&w, r.extra_name);
        jsonw_string(&w, extra_ok ? "ok" : r.extra_problem);
    }
    jsonw_object_end(&w);
    jsonw_object_end(&w);
    http_reply(req, ok ? 200 : 503, &w);
    jsonw_free(&w);
}

static void handle_metrics(http_request *req, void *app)
{
    (void)app;
    size_t len;
    char *text = metrics_render(&len);
    set_reply(req, 200, text, len, CONTENT_TYPE_METRICS);
}

void http_handle_document(http_request *req, void *app)
{
    const http_handle_document_data *doc = http_route_data(req);
    size_t len = (size_t)(doc->end - doc->start);
    char *copy;
    (void)app;

    if (http_refuse_query(req))
        return;
    copy = xmalloc(len ? len : 1); /* MHD frees the answer it sends */
    memcpy(copy, doc->start, len);
    set_reply(req, 200, copy, len, CONTENT_TYPE_JSON);
}

/* The probes read no route data (route.h). */
typedef void handle_healthz_data;
typedef void handle_readyz_data;
typedef void handle_metrics_data;

static const struct http_route builtin_routes[] = {
    ROUTE("GET", "/healthz", handle_healthz, NULL, 0),
    ROUTE("GET", "/readyz", handle_readyz, NULL, 0),
    ROUTE("GET", "/metrics", handle_metrics, NULL, 0),
};
static const size_t builtin_route_count = ARRAY_LEN(builtin_routes);

/* ------------------------------------------------- connection deadlines */

/* Each connection has a deadline record (deadline.h) from MHD's "started"
 * notification to its "closed" one, which MHD sends before it closes the
 * descriptor: so the record leaves the list before its descriptor can be
 * reused. MHD has no call to close a connection from outside its threads,
 * so the reaper shuts the socket down; MHD then reads end-of-file and
 * closes and forgets the connection in its own thread. */

/* Enters phase now (c may be NULL: no deadline). */
static void conn_enter(deadline_conn *c, enum deadline_phase phase)
{
    deadline_enter(c, phase, util_monotonic_ns());
}

static deadline_conn *conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info ? info->socket_context : NULL;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    http_server *srv = cls;

    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!info)
            return; /* no deadline then; MHD's idle timeout still applies */
        *socket_context = deadline_open(srv->deadlines, info->connect_fd, util_monotonic_ns());
        return;
    }
    if (!*socket_context)
        return;
    deadline_close(srv->deadlines, *socket_context);
    *socket_context = NULL;
}

/* ----------------------------------------------------------- MHD glue */

static enum MHD_Result collect_param(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    http_request *req = cls;
    (void)kind;
    if (req->param_count == req->param_cap) {
        req->param_cap = req->param_cap ? req->param_cap * 2 : 8;
        req->params = xrealloc(req->params, req->param_cap * sizeof(*req->params));
    }
    req->params[req->param_count].key = key;
    req->params[req->param_count].value = value;
    req->param_count++;
    return MHD_YES;
}

static int is_json_content_type(const char *ct)
{
    static const char json[] = "application/json";
    if (!ct)
        return 0;
    while (*ct == ' ')
        ct++;
    if (strncasecmp(ct, json, sizeof(json) - 1) != 0)
        return 0;
    ct += sizeof(json) - 1;
    while (*ct == ' ')
        ct++;
    return *ct == '\0' || *ct == ';';
}

/* Decides everything that the headers alone can decide. */
static void begin_request(http_request *req, const char *url, const char *method)
{
    const char *rid = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "X-Request-Id");
    if (valid_request_id(rid))
        util_strlcpy(req->request_id, rid, sizeof(req->request_id));
    else
        generate_request_id(req->request_id);
    /* The request is a span of the caller's trace, or starts one. */
    const char *parent = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, TRACE_HEADER);
    if (trace_parse(parent, &req->trace) == 0)
        trace_child(&req->trace, &req->trace);
    else
        trace_start(&req->trace);

    req->method_label = method_label(method);
    req->path = xstrdup(url);
    req->route_label = "not_found";
    req->next = NEXT_HANDLER;
    api_error_clear(&req->error);

    route_request(req, method, url);
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, collect_param, req);

    if (strcmp(method, "POST") != 0)
        return;
    req->wants_body = 1;

    const char *cl =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    int has_body = (cl && strcmp(cl, "0") != 0) || te;
    if (cl) {
        char *end;
        unsigned long long n = strtoull(cl, &end, 10);
        if (*end == '\0' && n > req->srv->cfg->body_limit) {
            req->next = NEXT_ERROR;
            api_error_set(&req->error, 413, "payload_too_large", NULL,
                          "request body is larger than %zu bytes", req->srv->cfg->body_limit);
            return;
        }
    }
    if (req->next != NEXT_HANDLER)
        return;
    const char *ct =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (has_body && !is_json_content_type(ct)) {
        req->next = NEXT_ERROR;
        api_error_set(&req->error, 415, "unsupported_media_type", NULL,
                      "request body must be sent as Content-Type: application/json");
    }
}

/* MHD 0.9.75 can queue an answer only before the body or after all of
 * it, but docs/api.md wants 413 as soon as a chunked body passes the limit. So
 * the answer is written straight to the socket (a few hundred bytes, which
 * a fresh connection's send buffer always takes), marked Connection:
 * close; the rest of the body is then read and dropped until the client
 * stops, and the connection closed. */
static void answer_413_now(http_request *req)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct jsonw body;
    char head[512];

    jsonw_init(&body);
    api_error_write(&req->error, &body);
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 413 Content Too Large\r\n"
                     "Content-Type: " CONTENT_TYPE_JSON
                     "\r\n"
                     "Content-Length: %zu\r\n"
                     "Connection: close\r\n"
                     "Access-Control-Allow-Origin: *\r\n"
                     "Access-Control-Expose-Headers: " CORS_EXPOSE_HEADERS
                     "\r\n"
                     "X-Request-Id: %s\r\n\r\n",
                     body.len, req->request_id);
    if (info && n > 0 && (size_t)n < sizeof(head)) {
        struct iovec iov[2] = {{head, (size_t)n}, {body.buf, body.len}};
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
        if (sendmsg(info->connect_fd, &msg, MSG_NOSIGNAL) < 0)
            log_debug(req->request_id, "could not send the early 413");
    }
    req->status = 413;
    req->answered_raw = 1;
    jsonw_free(&body);
}

/* Stores a chunk of the body. Past the limit, or when the request is
 * already doomed to an error, the rest is read and dropped, never kept; a
 * client that keeps sending past DISCARD_MAX_FACTOR times the limit is
 * disconnected. */
static enum MHD_Result receive_body(http_request *req, const char *data, size_t size)
{
    size_t limit = req->srv->cfg->body_limit;

    deadline_received(req->link, size);
    req->body_len += size;
    if (req->body_len > limit && req->next == NEXT_HANDLER) {
        req->next = NEXT_ERROR;
        api_error_set(&req->error, 413, "payload_too_large", NULL,
                      "request body is larger than %zu bytes", limit);
        free(req->body);
        req->body = NULL;
        req->body_cap = 0;
        answer_413_now(req);
    }
    if (req->next != NEXT_HANDLER || !req->wants_body)
        return req->body_len / DISCARD_MAX_FACTOR > limit ? MHD_NO : MHD_YES;
    if (req->body_len > req->body_cap) {
        size_t cap = req->body_cap ? req->body_cap : INITIAL_BODY_CAP;
        while (cap < req->body_len)
            cap *= 2;
        if (cap > limit)
            cap = limit;
        req->body = xrealloc(req->body, cap);
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len - size, data, size);
    return MHD_YES;
}

static enum MHD_Result finish_request(http_request *req)
{
    if (req->answered_raw)
        return MHD_NO;  /* the early 413 went out: close the connection */
    if (req->suspended) /* called again once resumed, with the answer set */
        return atomic_load(&req->resumed) ? queue_reply(req) : MHD_YES;
    if (req->next == NEXT_ERROR)
        return answer_error(req);
    if (req->next == NEXT_PREFLIGHT)
        return answer_preflight(req);
    if (req->wants_body && !(req->body_len == 0 && req->route->body_optional)) {
        if (body_parse(req->body ? req->body : "", req->body_len, &req->json, &req->error) != 0)
            return answer_error(req);
    }
    req->route->handler(req, req->srv->app);
    if (req->suspended)
        return MHD_YES; /* answered from another thread, then resumed */
    return queue_reply(req);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    http_server *srv = cls;
    http_request *req = *con_cls;
    (void)version;

    if (!req) {
        pthread_mutex_lock(&srv->flight_lock);
        int closed = srv->closed;
        if (!closed)
            srv->in_flight++;
        pthread_mutex_unlock(&srv->flight_lock);
        if (closed)
            return MHD_NO; /* shutting down: close without beginning it */
        req = xcalloc(1, sizeof(*req));
        req->srv = srv;
        req->conn = conn;
        req->start_ns = util_monotonic_ns();
        req->link = conn_of(conn);
        *con_cls = req;
        begin_request(req, url, method);
        /* A 413 known from Content-Length is answered at once (the
         * connection then closes rather than reading the body). Anything
         * else waits for a later call: answering on the first one would
         * make MHD 0.9.75 drop keep-alive. */
        if (req->next == NEXT_ERROR && req->error.status == 413) {
            conn_enter(req->link, DEADLINE_SERVING);
            return answer_error(req);
        }
        conn_enter(req->link, DEADLINE_BODY); /* the head is complete */
        return MHD_YES;
    }
    if (req->queued) {
        *upload_data_size = 0; /* answered already (413): ignore the rest */
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t size = *upload_data_size;
        *upload_data_size = 0;
        return receive_body(req, upload_data, size);
    }
    conn_enter(req->link, DEADLINE_SERVING);
    return finish_request(req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    http_server *srv = cls;
    http_request *req = *con_cls;

    if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
        conn_enter(conn_of(conn), DEADLINE_HEAD); /* keep-alive: the next head is due */
    if (!req)
        return;
    double seconds = (double)(util_monotonic_ns() - req->start_ns) / 1e9;
    if (req->status)
        metrics_observe_request(req->route_label, req->method_label, req->status, seconds);
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        log_debug(req->request_id, "%s %s ended early (code %d)", req->method_label,
                  req->route_label, (int)toe);
    else
        log_debug(req->request_id, "%s %s -> %d in %.3f ms trace_id=%s span_id=%s",
                  req->method_label, req->route_label, req->status, seconds * 1e3,
                  req->trace.trace_id, req->trace.span_id);
    json_decref(req->json);
    free(req->body);
    free(req->params);
    for (int i = 0; i < req->header_count; i++)
        free(req->headers[i].value);
    free(req->reply_body);
    if (req->stream) /* never queued */
        stream_free(req->stream);
    free(req->path);
    free(req);
    *con_cls = NULL;
    pthread_mutex_lock(&srv->flight_lock);
    srv->in_flight--;
    pthread_mutex_unlock(&srv->flight_lock);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[UTIL_ERR_MAX];
    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    log_debug(NULL, "http: %s", msg);
}

static void server_free(http_server *srv)
{
    deadline_list_free(srv->deadlines);
    pthread_mutex_destroy(&srv->flight_lock);
    free(srv);
}

http_server *http_server_start(const struct http_server_config *conf, char *err, size_t errlen)
{
    const struct config *cfg = conf->cfg;
    http_server *srv = xcalloc(1, sizeof(*srv));
    struct sockaddr_in addr4;
    struct sockaddr_in6 addr6;
    const struct sockaddr *addr;
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
                         MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;

    srv->cfg = cfg;
    pthread_mutex_init(&srv->flight_lock, NULL);
    srv->routes = conf->routes;
    srv->route_count = conf->route_count;
    srv->ready = conf->ready;
    srv->app = conf->app;

    memset(&addr4, 0, sizeof(addr4));
    memset(&addr6, 0, sizeof(addr6));
    if (inet_pton(AF_INET, cfg->bind, &addr4.sin_addr) == 1) {
        addr4.sin_family = AF_INET;
        addr4.sin_port = htons((uint16_t)cfg->port);
        addr = (const struct sockaddr *)&addr4;
    } else if (inet_pton(AF_INET6, cfg->bind, &addr6.sin6_addr) == 1) {
        addr6.sin6_family = AF_INET6;
        addr6.sin6_port = htons((uint16_t)cfg->port);
        addr = (const struct sockaddr *)&addr6;
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(err, errlen, "bind address '%s' is not an IPv4 or IPv6 address", cfg->bind);
        server_free(srv);
        return NULL;
    }
    /* Before the daemon: its connection notifications use the list. */
    srv->deadlines = deadline_list_new((int64_t)cfg->idle_timeout_s * 1000000000);
    if (deadline_reaper_start(srv->deadlines) != 0) {
        snprintf(err, errlen, "cannot start the connection deadline thread");
        server_free(srv);
        return NULL;
    }

    srv->daemon = MHD_start_daemon(
        flags, (uint16_t)cfg->port, NULL, NULL, on_access, srv, MHD_OPTION_EXTERNAL_LOGGER,
        on_mhd_log, NULL, /* first, so it sees everything */
        MHD_OPTION_SOCK_ADDR, addr, MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)cfg->http_threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)cfg->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)cfg->idle_timeout_s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
        srv, MHD_OPTION_UNESCAPE_CALLBACK, unescape_url, NULL, MHD_OPTION_END);
    if (!srv->daemon) {
        snprintf(err, errlen, "cannot listen on %s:%d (in use, or not allowed)", cfg->bind,
                 cfg->port);
        deadline_reaper_stop(srv->deadlines);
        server_free(srv);
        return NULL;
    }
    return srv;
}

void http_server_stop(http_server *srv)
{
    if (!srv)
        return;
    MHD_socket fd = MHD_quiesce_daemon(srv->daemon);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);

    /* In-flight requests finish and are answered; idle keep-alive
     * connections hold no request and are simply closed below. */
    atomic_store(&srv->draining, 1);
    int64_t deadline = util_monotonic_ns() + (int64_t)srv->cfg->shutdown_timeout_s * 1000000000;
    int left;
    for (;;) {
        pthread_mutex_lock(&srv->flight_lock);
        left = srv->in_flight;
        if (left == 0 || util_monotonic_ns() >= deadline)
            srv->closed = 1;
        pthread_mutex_unlock(&srv->flight_lock);
        if (srv->closed)
            break;
        usleep(DRAIN_POLL_US);
    }
    if (left > 0)
        log_warn(NULL, "shutdown: %d requests still in flight after %d s", left,
                 srv->cfg->shutdown_timeout_s);
    MHD_stop_daemon(srv->daemon); /* every connection is notified closed */

    deadline_reaper_stop(srv->deadlines);
    server_free(srv);
}

void http_suspend(http_request *req)
{
    req->suspended = 1;
    MHD_suspend_connection(req->conn);
}

void http_resume(http_request *req)
{
    atomic_store(&req->resumed, 1);
    MHD_resume_connection(req->conn);
}

/* ------------------------------------------------------ request access */

const char *http_request_id(const http_request *req)
{
    return req->request_id;
}
const struct trace_context *http_trace(const http_request *req)
{
    return &req->trace;
}
const char *http_method(const http_request *req)
{
    return req->method_label;
}
const char *http_path(const http_request *req)
{
    return req->path;
}

const char *http_request_header(const http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}
const void *http_route_data(const http_request *req)
{
    return req->route->data;
}
int64_t http_path_id(const http_request *req)
{
    return req->path_id;
}
json_t *http_body(const http_request *req)
{
    return req->json;
}

const char *http_raw_body(const http_request *req, size_t *len)
{
    *len = req->body_len;
    return req->body ? req->body : "";
}

struct header_count {
    const char *name;
    int count;
};

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    struct header_count *hc = cls;
    (void)kind;
    (void)value;
    if (key && strcasecmp(key, hc->name) == 0)
        hc->count++;
    return MHD_YES;
}

int http_header(const http_request *req, const char *name, const char **value, size_t *len)
{
    struct header_count hc = {name, 0};

    *value = NULL;
    *len = 0;
    if (MHD_lookup_connection_value_n(req->conn, MHD_HEADER_KIND, name, strlen(name), value, len) !=
        MHD_YES)
        return 0;
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, count_header, &hc);
    return hc.count > 0 ? hc.count : 1;
}

int http_refuse_query(http_request *req)
{
    struct api_error err;

    if (req->param_count == 0)
        return 0;
    api_error_set(&err, 400, "invalid_query", NULL,
                  "unknown query parameter; this endpoint takes none");
    http_reply_error(req, &err);
    return 1;
}

void http_query_drop(http_request *req, const char *key)
{
    size_t kept = 0;

    for (size_t i = 0; i < req->param_count; i++)
        if (strcmp(req->params[i].key, key) != 0)
            req->params[kept++] = req->params[i];
    req->param_count = kept;
}

int http_draining(const http_request *req)
{
    return atomic_load(&req->srv->draining);
}

void http_query(const http_request *req, const struct query_param **params, size_t *count)
{
    *params = req->params;
    *count = req->param_count;
}
