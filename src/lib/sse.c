/*
 * sse (see sse.h). The hub's thread is a worker (worker.h), and the
 * worker's lock guards the list of clients and each client's buffer and
 * flags. A client's stream is suspended only by its own read
 * callback, under the lock, when it has nothing to send; whoever gives it
 * something to send (a publish, a keep-alive, the end) clears its
 * "suspended" flag under the lock and resumes it after unlocking. Only the
 * one that cleared the flag resumes, so each suspension is resumed exactly
 * once; and a suspended connection is never finished by libmicrohttpd, so
 * the client stays valid until that resume.
 */
#include "sse.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_error.h"
#include "log.h"
#include "metrics.h"
#include "util.h"
#include "worker.h"

#define MS_NS 1000000LL
#define CONTENT_TYPE_SSE "text/event-stream; charset=utf-8"
#define KEEPALIVE_LINE ": keep-alive\n\n"
#define EVENT_HEAD_MAX 64 /* "id: <n>\ndata: " */
#define METRIC_CLIENTS "sse_clients"
#define METRIC_EVENTS "sse_events_total"
#define METRIC_DROPPED "sse_clients_dropped_total"

struct sse_client {
    sse_hub *hub;
    http_stream *st;
    struct sse_queue q;
    int suspended;   /* its read callback suspended it */
    int ending;      /* send what is left, then end the answer */
    int dropped;     /* too slow: close the connection now */
    int64_t last_ns; /* when something was last queued for it */
    struct sse_client *prev, *next;
};

struct sse_hub {
    struct worker w; /* its lock guards everything below */
    struct sse_client *head;
    size_t count;
    uint64_t next_id;
    int drained; /* every stream was told to end for shutdown */
};

void sse_queue_init(struct sse_queue *q)
{
    q->buf = xmalloc(SSE_CLIENT_BUFFER);
    q->off = q->len = 0;
    q->overflowed = 0;
}

void sse_queue_free(struct sse_queue *q)
{
    free(q->buf);
    q->buf = NULL;
}

/* Appends the n parts as one piece, whole or not at all. */
static int queue_put_parts(struct sse_queue *q, const char *const *parts, const size_t *lens,
                           size_t n)
{
    size_t need = 0;

    if (q->overflowed)
        return -1;
    for (size_t i = 0; i < n; i++)
        need += lens[i];
    if (q->off > 0) {
        memmove(q->buf, q->buf + q->off, q->len - q->off);
        q->len -= q->off;
        q->off = 0;
    }
    if (need > SSE_CLIENT_BUFFER - q->len) {
        q->overflowed = 1;
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        memcpy(q->buf + q->len, parts[i], lens[i]);
        q->len += lens[i];
    }
    return 0;
}

int sse_queue_put(struct sse_queue *q, const char *text, size_t len)
{
    return queue_put_parts(q, &text, &len, 1);
}

int sse_queue_put_event(struct sse_queue *q, uint64_t id, const char *data, size_t len)
{
    char head[EVENT_HEAD_MAX];
    int hlen = snprintf(head, sizeof(head), "id: %llu\ndata: ", (unsigned long long)id);
    const char *parts[] = {head, data, "\n\n"};
    size_t lens[] = {(size_t)hlen, len, 2};

    return queue_put_parts(q, parts, lens, ARRAY_LEN(parts));
}

size_t sse_queue_take(struct sse_queue *q, char *out, size_t max)
{
    size_t k = q->len - q->off < max ? q->len - q->off : max;

    memcpy(out, q->buf + q->off, k);
    q->off += k;
    return k;
}

size_t sse_queue_unsent(const struct sse_queue *q)
{
    return q->len - q->off;
}

int sse_keepalive_due(int64_t last_ns, int64_t now_ns)
{
    return now_ns - last_ns >= SSE_KEEPALIVE_MS * MS_NS;
}

/* After a piece was queued for c (rc 0) or refused (-1), lock held. A
 * refused client is dropped: counted, and its connection closed now, not
 * when its socket next takes bytes, which for a client that stopped
 * reading would be never (only the idle timeout would end it, its place
 * among SSE_MAX_CLIENTS taken until then). A suspended one is resumed by
 * the caller instead (wake_locked), and its read aborts. */
static void queued_locked(struct sse_client *c, int rc)
{
    if (rc == 0) {
        c->last_ns = util_monotonic_ns();
        return;
    }
    if (c->dropped)
        return;
    c->dropped = 1;
    metrics_counter_add(METRIC_DROPPED, "reason=\"slow\"", 1);
    log_info(NULL, "event stream: dropped a client that does not keep up");
    if (!c->suspended)
        http_stream_close(c->st);
}

/* Notes c for resuming after the unlock when it is suspended (lock held). */
static void wake_locked(struct sse_client *c, http_stream **wake, size_t *n)
{
    if (!c->suspended)
        return;
    c->suspended = 0;
    wake[(*n)++] = c->st;
}

static void resume_all(http_stream **wake, size_t n)
{
    for (size_t i = 0; i < n; i++)
        http_stream_resume(wake[i]);
}

static long client_read(void *cls, char *buf, size_t max)
{
    struct sse_client *c = cls;
    sse_hub *hub = c->hub;
    long n = 0;

    pthread_mutex_lock(&hub->w.lock);
    if (c->dropped) {
        n = HTTP_STREAM_ABORT;
    } else if (sse_queue_unsent(&c->q) > 0) {
        n = (long)sse_queue_take(&c->q, buf, max);
    } else if (c->ending) {
        n = HTTP_STREAM_END;
    } else {
        c->suspended = 1;
        http_stream_suspend(c->st);
    }
    pthread_mutex_unlock(&hub->w.lock);
    return n;
}

static void client_done(void *cls)
{
    struct sse_client *c = cls;
    sse_hub *hub = c->hub;

    pthread_mutex_lock(&hub->w.lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        hub->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    hub->count--;
    metrics_gauge_set(METRIC_CLIENTS, NULL, (int64_t)hub->count);
    pthread_mutex_unlock(&hub->w.lock);
    sse_queue_free(&c->q);
    free(c);
}

void sse_hub_handle(http_request *req, sse_hub *hub)
{
    struct api_error err;
    char hello[64];

    if (http_refuse_query(req))
        return;
    pthread_mutex_lock(&hub->w.lock);
    if (hub->count >= SSE_MAX_CLIENTS || hub->drained || http_draining(req)) {
        pthread_mutex_unlock(&hub->w.lock);
        api_error_set(&err, 503, "unavailable", NULL,
                      "too many event streams are open (at most %d); retry later", SSE_MAX_CLIENTS);
        http_add_header(req, "Retry-After", "1");
        http_reply_error(req, &err);
        return;
    }
    struct sse_client *c = xcalloc(1, sizeof(*c));
    c->hub = hub;
    sse_queue_init(&c->q);
    /* Sent at once, so the client knows the stream is open (an empty
     * queue takes it: it cannot be refused). */
    int n = snprintf(hello, sizeof(hello), "retry: %d\n: connected\n\n", SSE_RETRY_MS);
    sse_queue_put(&c->q, hello, (size_t)n);
    c->last_ns = util_monotonic_ns();
    http_add_header(req, "Cache-Control", "no-store");
    http_add_header(req, "X-Accel-Buffering", "no");
    c->st = http_reply_stream(req, CONTENT_TYPE_SSE, client_read, client_done, c);
    c->next = hub->head;
    if (hub->head)
        hub->head->prev = c;
    hub->head = c;
    hub->count++;
    metrics_gauge_set(METRIC_CLIENTS, NULL, (int64_t)hub->count);
    pthread_mutex_unlock(&hub->w.lock);
}

void sse_publish(sse_hub *hub, const char *data, size_t len)
{
    http_stream *wake[SSE_MAX_CLIENTS];
    size_t n = 0;

    if (!hub)
        return;
    pthread_mutex_lock(&hub->w.lock);
    uint64_t id = ++hub->next_id;
    for (struct sse_client *c = hub->head; c; c = c->next) {
        if (c->dropped || c->ending)
            continue;
        queued_locked(c, sse_queue_put_event(&c->q, id, data, len));
        wake_locked(c, wake, &n);
    }
    metrics_counter_add(METRIC_EVENTS, NULL, 1);
    pthread_mutex_unlock(&hub->w.lock);
    resume_all(wake, n);
}

/* Keep-alives when due, and the end of every stream once the server
 * drains. */
static void *run(void *arg)
{
    sse_hub *hub = arg;
    http_stream *wake[SSE_MAX_CLIENTS];

    pthread_mutex_lock(&hub->w.lock);
    while (!worker_stopping(&hub->w)) {
        int64_t now = util_monotonic_ns();
        size_t n = 0;
        int drain = hub->head && http_stream_draining(hub->head->st);
        if (drain)
            hub->drained = 1;
        for (struct sse_client *c = hub->head; c; c = c->next) {
            if (drain && !c->ending) {
                c->ending = 1;
            } else if (!c->ending && !c->dropped && sse_keepalive_due(c->last_ns, now)) {
                queued_locked(c, sse_queue_put(&c->q, KEEPALIVE_LINE, sizeof(KEEPALIVE_LINE) - 1));
            } else {
                continue;
            }
            wake_locked(c, wake, &n);
        }
        if (n > 0) {
            pthread_mutex_unlock(&hub->w.lock);
            resume_all(wake, n);
            pthread_mutex_lock(&hub->w.lock);
            continue;
        }
        worker_wait_until(&hub->w, now + SSE_TICK_MS * MS_NS);
    }
    pthread_mutex_unlock(&hub->w.lock);
    return NULL;
}

sse_hub *sse_hub_start(char *err, size_t errlen)
{
    sse_hub *hub = xcalloc(1, sizeof(*hub));

    metrics_describe(METRIC_CLIENTS, "gauge", "Event streams open.");
    metrics_describe(METRIC_EVENTS, "counter", "Events sent to the event streams.");
    metrics_describe(METRIC_DROPPED, "counter",
                     "Event stream clients disconnected because they did not keep up.");
    metrics_gauge_set(METRIC_CLIENTS, NULL, 0);
    if (worker_start(&hub->w, run, hub) != 0) {
        snprintf(err, errlen, "cannot start the event stream thread");
        free(hub);
        return NULL;
    }
    return hub;
}

size_t sse_client_count(sse_hub *hub)
{
    pthread_mutex_lock(&hub->w.lock);
    size_t n = hub->count;
    pthread_mutex_unlock(&hub->w.lock);
    return n;
}

void sse_hub_stop(sse_hub *hub)
{
    if (!hub)
        return;
    worker_stop(&hub->w);
    /* The server stopped, which finished every stream; one left belongs
     * to a server stopped past its drain timeout and must not be touched. */
    if (hub->count)
        log_warn(NULL, "event streams: %zu still open at shutdown", hub->count);
    free(hub);
}
