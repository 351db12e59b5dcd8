/*
 * mq: one RabbitMQ connection with one channel, for publishing with
 * confirms or consuming with manual acks (see mq.h).
 *
 * rabbitmq-c 0.11 has no call that waits for publisher confirms, so this
 * module reads the frames itself: basic.ack / basic.nack settle the
 * delivery tags of the confirm window, basic.return marks the window as
 * rejected (its content frames are drained), basic.deliver is queued for
 * mq_next_delivery(), and channel.close / connection.close are answered
 * and make the connection unusable.
 */
#include "mq.h"

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "trace.h"
#include "util.h"
#include "worker.h"

#define MQ_CHANNEL 1
#define MQ_CONNECT_TIMEOUT_MS 5000
#define MQ_HANDSHAKE_TIMEOUT_MS 10000
/* A blocking RPC (declare, consume, close) gives up after this and closes
 * the socket, so a broker that stops answering cannot hang a thread. */
#define MQ_RPC_TIMEOUT_MS 30000
/* Closing a healthy connection should not hold up a shutdown for long. */
#define MQ_CLOSE_TIMEOUT_MS 2000
/* Content frames follow their method at once; waiting longer than this
 * for them means the connection is gone. */
#define MQ_CONTENT_TIMEOUT_MS 10000
#define MQ_BACKOFF_BASE_MS 100
#define MQ_BACKOFF_MAX_MS 5000
#define MQ_BACKOFF_JITTER_PCT 20

struct pending_delivery {
    struct mq_delivery d;
    struct pending_delivery *next;
};

struct mq {
    amqp_connection_state_t conn;
    int socket_ok;  /* connection usable at the AMQP level */
    int channel_ok; /* channel 1 open */
    int confirm;    /* confirm.select done */

    /* Confirm window: the tags published since the last completed
     * mq_wait_confirms(), [win_first, next_tag). win_done[i] says whether
     * tag win_first + i was settled; every tag below win_scan is. A
     * publisher that waits with mq_wait_confirmed() keeps one window open
     * for good: it slides forward over the settled tags as it grows. */
    uint64_t next_tag;
    uint64_t win_first;
    uint64_t win_scan;
    uint8_t *win_done;
    size_t win_cap;
    size_t win_pending;
    /* The lowest tag that may have been nacked or returned; 0 for none. */
    uint64_t win_rejected_from;

    /* Deliveries read while waiting for something else. */
    struct pending_delivery *queue_head;
    struct pending_delivery *queue_tail;

    char error[UTIL_ERR_MAX];
};

__attribute__((format(printf, 2, 3))) static void set_error(mq *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->error, sizeof(m->error), fmt, ap);
    va_end(ap);
}

static int usable(mq *m)
{
    if (m->socket_ok && m->channel_ok)
        return 1;
    if (!m->error[0])
        set_error(m, "connection closed");
    return 0;
}

static struct timeval ms_to_tv(int64_t ms)
{
    struct timeval tv;
    if (ms < 0)
        ms = 0;
    tv.tv_sec = (time_t)(ms / 1000);
    tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
    return tv;
}

static int64_t deadline_after_ms(int64_t ms)
{
    return util_monotonic_ns() + ms * 1000000;
}

static struct timeval remaining_tv(int64_t deadline_ns)
{
    int64_t left = deadline_ns - util_monotonic_ns();
    struct timeval tv;
    if (left < 0)
        left = 0;
    tv.tv_sec = (time_t)(left / 1000000000);
    tv.tv_usec = (suseconds_t)((left % 1000000000) / 1000);
    return tv;
}

static char *bytes_dup(amqp_bytes_t b)
{
    return xstrndup(b.bytes ? (const char *)b.bytes : "", b.len);
}

/* Marks the connection dead after a library (socket, timeout) error. */
static int lost(mq *m, const char *what, int status)
{
    set_error(m, "%s: %s", what, amqp_error_string2(status));
    m->socket_ok = 0;
    return MQ_ERR_CONNECTION;
}

/* The broker closed our channel: confirm it, so the connection could
 * still be closed politely, and remember why. */
static void on_channel_close(mq *m, const amqp_channel_close_t *c)
{
    amqp_channel_close_ok_t ok = {0};
    set_error(m, "channel closed by broker: %u %.*s", c->reply_code, (int)c->reply_text.len,
              (const char *)c->reply_text.bytes);
    amqp_send_method(m->conn, MQ_CHANNEL, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
    m->channel_ok = 0;
}

static void on_connection_close(mq *m, const amqp_connection_close_t *c)
{
    amqp_connection_close_ok_t ok = {0};
    set_error(m, "connection closed by broker: %u %.*s", c->reply_code, (int)c->reply_text.len,
              (const char *)c->reply_text.bytes);
    amqp_send_method(m->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
    m->socket_ok = 0;
}

/* Turns an RPC reply into an mq_result. A refused request closes only
 * the channel (MQ_ERR_PROTOCOL); a closed connection or a socket error
 * is MQ_ERR_CONNECTION. */
static int rpc_result(mq *m, const char *what)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(m->conn);

    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return MQ_OK;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        return lost(m, what, r.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            on_channel_close(m, r.reply.decoded);
            return MQ_ERR_PROTOCOL;
        }
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            on_connection_close(m, r.reply.decoded);
            return MQ_ERR_CONNECTION;
        }
        set_error(m, "%s: unexpected method 0x%08x", what, r.reply.id);
        m->socket_ok = 0;
        return MQ_ERR_PROTOCOL;
    case AMQP_RESPONSE_NONE:
    default:
        set_error(m, "%s: no reply from broker", what);
        m->socket_ok = 0;
        return MQ_ERR_CONNECTION;
    }
}

/* Same as rpc_result, with the operation's name prefixed on failure. */
static int rpc_check(mq *m, const char *what)
{
    int rc = rpc_result(m, what);
    if (rc != MQ_OK && strncmp(m->error, what, strlen(what)) != 0) {
        char tmp[UTIL_ERR_MAX];
        util_strlcpy(tmp, m->error, sizeof(tmp));
        set_error(m, "%s: %s", what, tmp);
    }
    return rc;
}

/* ---- connection ---- */

/* Parses one AMQP URL into ci, whose strings point into copy (which
 * amqp_parse_url writes into, hence a copy of the caller's URL). Only
 * plain amqp:// is supported; an empty vhost means the default "/". */
static int parse_url(char *copy, struct amqp_connection_info *ci, char *err, size_t errlen)
{
    if (amqp_parse_url(copy, ci) != AMQP_STATUS_OK) {
        snprintf(err, errlen, "invalid AMQP URL");
        return MQ_ERR_PROTOCOL;
    }
    if (ci->ssl) {
        snprintf(err, errlen, "amqps:// URLs are not supported");
        return MQ_ERR_PROTOCOL;
    }
    if (!ci->vhost || !ci->vhost[0])
        ci->vhost = "/";
    return MQ_OK;
}

/* Opens the TCP socket with a bounded connect, and sets the handshake and
 * RPC timeouts before anything waits on the broker, so that a node that
 * accepts but never answers cannot hang the caller. */
static int connect_socket(mq *m, const struct amqp_connection_info *ci, char *err, size_t errlen)
{
    amqp_socket_t *sock;
    struct timeval tv;
    int rc;

    m->conn = amqp_new_connection();
    if (!m->conn) {
        snprintf(err, errlen, "out of memory creating AMQP connection");
        return MQ_ERR_CONNECTION;
    }
    sock = amqp_tcp_socket_new(m->conn);
    if (!sock) {
        snprintf(err, errlen, "cannot create AMQP socket");
        return MQ_ERR_CONNECTION;
    }
    tv = ms_to_tv(MQ_CONNECT_TIMEOUT_MS);
    rc = amqp_socket_open_noblock(sock, ci->host, ci->port, &tv);
    if (rc != AMQP_STATUS_OK) {
        snprintf(err, errlen, "cannot connect to %s:%d: %s", ci->host, ci->port,
                 amqp_error_string2(rc));
        return MQ_ERR_CONNECTION;
    }
    tv = ms_to_tv(MQ_HANDSHAKE_TIMEOUT_MS);
    amqp_set_handshake_timeout(m->conn, &tv);
    tv = ms_to_tv(MQ_RPC_TIMEOUT_MS);
    amqp_set_rpc_timeout(m->conn, &tv);
    return MQ_OK;
}

/* Logs in with the client properties we rely on. consumer_cancel_notify:
 * a deleted queue cancels our consumer with a basic.cancel we can see,
 * instead of silence. connection_name (when given) names the connection
 * in the broker's management view. A refusal is reported with the
 * broker's own reason when it sent one. */
static int login(mq *m, const struct amqp_connection_info *ci, const char *name, int heartbeat_s,
                 char *err, size_t errlen)
{
    amqp_table_entry_t caps[1];
    amqp_table_entry_t props[2];
    amqp_table_t table = {0, props};
    amqp_rpc_reply_t r;
    const char *why = "refused";
    int why_len = (int)strlen(why);

    caps[0].key = amqp_cstring_bytes("consumer_cancel_notify");
    caps[0].value.kind = AMQP_FIELD_KIND_BOOLEAN;
    caps[0].value.value.boolean = 1;
    props[table.num_entries].key = amqp_cstring_bytes("capabilities");
    props[table.num_entries].value.kind = AMQP_FIELD_KIND_TABLE;
    props[table.num_entries].value.value.table.num_entries = 1;
    props[table.num_entries].value.value.table.entries = caps;
    table.num_entries++;
    if (name) {
        props[table.num_entries].key = amqp_cstring_bytes("connection_name");
        props[table.num_entries].value.kind = AMQP_FIELD_KIND_UTF8;
        props[table.num_entries].value.value.bytes = amqp_cstring_bytes(name);
        table.num_entries++;
    }
    r = amqp_login_with_properties(m->conn, ci->vhost, 0, AMQP_DEFAULT_FRAME_SIZE, heartbeat_s,
                                   &table, AMQP_SASL_METHOD_PLAIN, ci->user, ci->password);
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return MQ_OK;
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
        snprintf(err, errlen, "AMQP login to %s:%d failed: %s", ci->host, ci->port,
                 amqp_error_string2(r.library_error));
        return MQ_ERR_CONNECTION;
    }
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
        r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        const amqp_connection_close_t *c = r.reply.decoded;
        why = c->reply_text.bytes;
        why_len = (int)c->reply_text.len;
    }
    snprintf(err, errlen, "AMQP login to %s:%d vhost %s failed: %.*s", ci->host, ci->port,
             ci->vhost, why_len, why);
    return MQ_ERR_CONNECTION;
}

/* Opens our one channel. It is a step of its own because its failure is
 * an RPC failure: the reason is in m->error, which is passed on in err. */
static int open_channel(mq *m, char *err, size_t errlen)
{
    amqp_channel_open(m->conn, MQ_CHANNEL);
    if (rpc_check(m, "channel.open") != MQ_OK) {
        snprintf(err, errlen, "%s", m->error);
        return MQ_ERR_CONNECTION;
    }
    m->channel_ok = 1;
    return MQ_OK;
}

/* Connects to one node: parse, connect, log in, open the channel. Each
 * step writes its own reason into err on failure. */
static mq *open_one(const char *url, const char *name, int heartbeat_s, char *err, size_t errlen)
{
    char *copy = xstrdup(url ? url : "");
    struct amqp_connection_info ci;
    mq *m = NULL;

    if (errlen)
        err[0] = '\0';
    if (parse_url(copy, &ci, err, errlen) != MQ_OK)
        goto fail;
    m = xcalloc(1, sizeof(*m));
    if (connect_socket(m, &ci, err, errlen) != MQ_OK)
        goto fail;
    if (login(m, &ci, name, heartbeat_s, err, errlen) != MQ_OK)
        goto fail;
    m->socket_ok = 1;
    if (open_channel(m, err, errlen) != MQ_OK)
        goto fail;
    free(copy);
    return m;

fail:
    free(copy);
    mq_close(m);
    return NULL;
}

/* A cluster is given as a comma-separated list of URLs: each is tried in
 * turn, so a service fails over to the next node when one goes away. */
mq *mq_open(const char *urls, const char *name, int heartbeat_s, char *err, size_t errlen)
{
    const char *p = urls ? urls : "";
    mq *m = NULL;

    do {
        size_t n = strcspn(p, ",");
        char *one = xstrndup(p, n);
        m = open_one(one, name, heartbeat_s, err, errlen);
        free(one);
        p += n;
        if (*p == ',')
            p++;
    } while (!m && *p);
    return m;
}

static void free_queued(mq *m)
{
    while (m->queue_head) {
        struct pending_delivery *p = m->queue_head;
        m->queue_head = p->next;
        mq_delivery_free(&p->d);
        free(p);
    }
    m->queue_tail = NULL;
}

void mq_close(mq *m)
{
    if (!m)
        return;
    if (m->conn) {
        if (m->socket_ok) {
            struct timeval tv = ms_to_tv(MQ_CLOSE_TIMEOUT_MS);
            amqp_set_rpc_timeout(m->conn, &tv);
            /* Closing the channel first returns unacked deliveries to
             * their queues at once. */
            if (m->channel_ok)
                amqp_channel_close(m->conn, MQ_CHANNEL, AMQP_REPLY_SUCCESS);
            amqp_connection_close(m->conn, AMQP_REPLY_SUCCESS);
        }
        amqp_destroy_connection(m->conn);
    }
    free_queued(m);
    free(m->win_done);
    free(m);
}

const char *mq_last_error(const mq *m)
{
    return m ? m->error : "no connection";
}

/* ---- topology ---- */

/* Fills args with x-queue-type for non-classic queue types. Classic
 * queues are declared without the argument, so a queue declared by an
 * older release (without it) still matches. */
static int queue_args(mq *m, const char *queue_type, amqp_table_entry_t *entry, amqp_table_t *args)
{
    args->num_entries = 0;
    args->entries = entry;
    if (!queue_type || !queue_type[0] || strcmp(queue_type, "classic") == 0)
        return MQ_OK;
    if (strcmp(queue_type, "quorum") != 0) {
        set_error(m, "unknown queue type \"%s\" (classic or quorum)", queue_type);
        return MQ_ERR_PROTOCOL;
    }
    entry->key = amqp_cstring_bytes("x-queue-type");
    entry->value.kind = AMQP_FIELD_KIND_UTF8;
    entry->value.value.bytes = amqp_cstring_bytes(queue_type);
    args->num_entries = 1;
    return MQ_OK;
}

int mq_declare_queue(mq *m, const char *queue, const char *queue_type)
{
    amqp_table_entry_t entry;
    amqp_table_t args;
    int rc;

    if (!usable(m))
        return MQ_ERR_CONNECTION;
    rc = queue_args(m, queue_type, &entry, &args);
    if (rc != MQ_OK)
        return rc;
    amqp_maybe_release_buffers(m->conn);
    amqp_queue_declare(m->conn, MQ_CHANNEL, amqp_cstring_bytes(queue), 0, 1, 0, 0, args);
    return rpc_check(m, "queue.declare");
}

int mq_bind_queue(mq *m, const char *queue, const char *exchange, const char *routing_key)
{
    if (!usable(m))
        return MQ_ERR_CONNECTION;
    amqp_maybe_release_buffers(m->conn);
    amqp_queue_bind(m->conn, MQ_CHANNEL, amqp_cstring_bytes(queue), amqp_cstring_bytes(exchange),
                    amqp_cstring_bytes(routing_key), amqp_empty_table);
    return rpc_check(m, "queue.bind");
}

int mq_delete_queue(mq *m, const char *queue)
{
    if (!usable(m))
        return MQ_ERR_CONNECTION;
    amqp_maybe_release_buffers(m->conn);
    amqp_queue_delete(m->conn, MQ_CHANNEL, amqp_cstring_bytes(queue), 0, 0);
    return rpc_check(m, "queue.delete");
}

int mq_declare_topology(mq *m, const struct mq_topology *t, const char *queue_type)
{
    int rc;

    if (!usable(m))
        return MQ_ERR_CONNECTION;
    amqp_maybe_release_buffers(m->conn);
    amqp_exchange_declare(m->conn, MQ_CHANNEL, amqp_cstring_bytes(t->exchange),
                          amqp_cstring_bytes("topic"), 0, 1, 0, 0, amqp_empty_table);
    rc = rpc_check(m, "exchange.declare");
    for (size_t i = 0; rc == MQ_OK && i < t->queue_count; i++) {
        rc = mq_declare_queue(m, t->queues[i].queue, queue_type);
        if (rc == MQ_OK)
            rc = mq_bind_queue(m, t->queues[i].queue, t->exchange, t->queues[i].routing_key);
    }
    return rc;
}

/* ---- frames outside RPCs ---- */

/* deadline_ns < 0 waits without limit (heartbeats still apply). */
static int wait_frame(mq *m, amqp_frame_t *f, int64_t deadline_ns)
{
    struct timeval tv;
    if (deadline_ns < 0)
        return amqp_simple_wait_frame_noblock(m->conn, f, NULL);
    tv = remaining_tv(deadline_ns);
    return amqp_simple_wait_frame_noblock(m->conn, f, &tv);
}

/* A positive integer from a header value: decimal text, or an integer. */
static int64_t header_int(const amqp_field_value_t *v)
{
    char buf[24];
    int64_t n = 0;

    switch (v->kind) {
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
        if (v->value.bytes.len == 0 || v->value.bytes.len >= sizeof(buf))
            return 0;
        memcpy(buf, v->value.bytes.bytes, v->value.bytes.len);
        buf[v->value.bytes.len] = '\0';
        for (size_t i = 0; buf[i]; i++) {
            if (buf[i] < '0' || buf[i] > '9' || n > (INT64_MAX - 9) / 10)
                return 0;
            n = n * 10 + (buf[i] - '0');
        }
        return n;
    case AMQP_FIELD_KIND_I64:
        return v->value.i64 > 0 ? v->value.i64 : 0;
    case AMQP_FIELD_KIND_U32:
        return v->value.u32;
    case AMQP_FIELD_KIND_I32:
        return v->value.i32 > 0 ? v->value.i32 : 0;
    default:
        return 0;
    }
}

static void copy_properties(struct mq_delivery *d, const amqp_basic_properties_t *p)
{
    amqp_flags_t fl = p->_flags;
    if (fl & AMQP_BASIC_MESSAGE_ID_FLAG)
        d->message_id = bytes_dup(p->message_id);
    if (fl & AMQP_BASIC_TYPE_FLAG)
        d->type = bytes_dup(p->type);
    if (fl & AMQP_BASIC_TIMESTAMP_FLAG)
        d->timestamp_s = (int64_t)p->timestamp;
    if (fl & AMQP_BASIC_CORRELATION_ID_FLAG)
        d->correlation_id = bytes_dup(p->correlation_id);
    if (fl & AMQP_BASIC_APP_ID_FLAG)
        d->app_id = bytes_dup(p->app_id);
    if (fl & AMQP_BASIC_CONTENT_TYPE_FLAG)
        d->content_type = bytes_dup(p->content_type);
    if (fl & AMQP_BASIC_DELIVERY_MODE_FLAG)
        d->delivery_mode = p->delivery_mode;
    if (fl & AMQP_BASIC_HEADERS_FLAG) {
        for (int i = 0; i < p->headers.num_entries; i++) {
            const amqp_table_entry_t *e = &p->headers.entries[i];
            if (e->key.len == strlen(MQ_SEQ_HEADER) &&
                memcmp(e->key.bytes, MQ_SEQ_HEADER, e->key.len) == 0)
                d->outbox_seq = header_int(&e->value);
            else if (e->key.len == strlen(TRACE_HEADER) &&
                     memcmp(e->key.bytes, TRACE_HEADER, e->key.len) == 0 &&
                     (e->value.kind == AMQP_FIELD_KIND_UTF8 ||
                      e->value.kind == AMQP_FIELD_KIND_BYTES) &&
                     !d->traceparent)
                d->traceparent = bytes_dup(e->value.value.bytes);
        }
    }
}

/* Reads the content header and body frames that follow a basic.deliver
 * or basic.return. With d NULL the content is only drained. A failure
 * leaves the frame stream out of step, so the connection is dropped. */
static int read_content(mq *m, struct mq_delivery *d)
{
    int64_t deadline = deadline_after_ms(MQ_CONTENT_TIMEOUT_MS);
    amqp_frame_t f;
    uint64_t size, got = 0;
    int rc;

    rc = wait_frame(m, &f, deadline);
    if (rc != AMQP_STATUS_OK)
        return lost(m, "reading message header", rc);
    if (f.frame_type != AMQP_FRAME_HEADER) {
        set_error(m, "expected a content header, got frame type %u", f.frame_type);
        m->socket_ok = 0;
        return MQ_ERR_CONNECTION;
    }
    size = f.payload.properties.body_size;
    if (d) {
        copy_properties(d, f.payload.properties.decoded);
        d->body = xmalloc((size_t)size + 1);
        d->body_len = (size_t)size;
    }
    while (got < size) {
        rc = wait_frame(m, &f, deadline);
        if (rc != AMQP_STATUS_OK)
            return lost(m, "reading message body", rc);
        if (f.frame_type != AMQP_FRAME_BODY || f.payload.body_fragment.len > size - got) {
            set_error(m, "malformed message body");
            m->socket_ok = 0;
            return MQ_ERR_CONNECTION;
        }
        if (d)
            memcpy((char *)d->body + got, f.payload.body_fragment.bytes,
                   f.payload.body_fragment.len);
        got += f.payload.body_fragment.len;
    }
    if (d)
        ((char *)d->body)[size] = '\0';
    return MQ_OK;
}

static void window_reset(mq *m)
{
    m->win_first = m->next_tag;
    m->win_scan = m->next_tag;
    m->win_pending = 0;
    m->win_rejected_from = 0;
}

static void window_reject(mq *m, uint64_t tag)
{
    if (!m->win_rejected_from || tag < m->win_rejected_from)
        m->win_rejected_from = tag;
}

static void window_add(mq *m)
{
    size_t idx = (size_t)(m->next_tag - m->win_first);
    if (idx >= m->win_cap && m->win_scan > m->win_first) {
        /* Slide over the settled head instead of growing. */
        size_t settled = (size_t)(m->win_scan - m->win_first);
        memmove(m->win_done, m->win_done + settled, idx - settled);
        m->win_first = m->win_scan;
        idx -= settled;
    }
    if (idx >= m->win_cap) {
        size_t cap = m->win_cap ? m->win_cap * 2 : 64;
        m->win_done = xrealloc(m->win_done, cap);
        m->win_cap = cap;
    }
    m->win_done[idx] = 0;
    m->next_tag++;
    m->win_pending++;
}

/* Settles one tag, or every tag up to it when multiple is set. Tags
 * outside the window (already settled, or never sent) are ignored. */
static void window_settle(mq *m, uint64_t tag, int multiple, int nack)
{
    uint64_t lo, t;

    if (tag >= m->next_tag)
        tag = m->next_tag - 1;
    if (tag < m->win_first)
        return;
    lo = multiple ? m->win_scan : tag;
    for (t = lo; t <= tag; t++) {
        uint8_t *done = &m->win_done[t - m->win_first];
        if (!*done) {
            *done = 1;
            m->win_pending--;
            if (nack)
                window_reject(m, t);
        }
    }
    while (m->win_scan < m->next_tag && m->win_done[m->win_scan - m->win_first])
        m->win_scan++;
}

static void enqueue_delivery(mq *m, struct pending_delivery *p)
{
    p->next = NULL;
    if (m->queue_tail)
        m->queue_tail->next = p;
    else
        m->queue_head = p;
    m->queue_tail = p;
}

static int dequeue_delivery(mq *m, struct mq_delivery *out)
{
    struct pending_delivery *p = m->queue_head;
    if (!p)
        return 0;
    m->queue_head = p->next;
    if (!m->queue_head)
        m->queue_tail = NULL;
    *out = p->d;
    free(p);
    return 1;
}

/* Handles a frame that arrived outside an RPC. */
static int handle_frame(mq *m, const amqp_frame_t *f)
{
    const amqp_method_t *method = &f->payload.method;

    if (f->frame_type != AMQP_FRAME_METHOD)
        return MQ_OK; /* stray content of something already abandoned */

    switch (method->id) {
    case AMQP_BASIC_ACK_METHOD: {
        const amqp_basic_ack_t *a = method->decoded;
        if (m->confirm)
            window_settle(m, a->delivery_tag, a->multiple, 0);
        return MQ_OK;
    }
    case AMQP_BASIC_NACK_METHOD: {
        const amqp_basic_nack_t *n = method->decoded;
        if (m->confirm) {
            set_error(m, "publish nacked by broker (tag %llu)",
                      (unsigned long long)n->delivery_tag);
            window_settle(m, n->delivery_tag, n->multiple, 1);
        }
        return MQ_OK;
    }
    case AMQP_BASIC_RETURN_METHOD: {
        /* An unroutable mandatory message. Its ack follows, so the return
         * always lands in the window of the message it belongs to. */
        const amqp_basic_return_t *r = method->decoded;
        set_error(m, "message returned: %u %.*s (exchange \"%.*s\", key \"%.*s\")", r->reply_code,
                  (int)r->reply_text.len, (const char *)r->reply_text.bytes, (int)r->exchange.len,
                  (const char *)r->exchange.bytes, (int)r->routing_key.len,
                  (const char *)r->routing_key.bytes);
        if (m->confirm)
            window_reject(m, m->win_scan);
        return read_content(m, NULL);
    }
    case AMQP_BASIC_DELIVER_METHOD: {
        const amqp_basic_deliver_t *dv = method->decoded;
        struct pending_delivery *p = xcalloc(1, sizeof(*p));
        int rc;

        p->d.tag = dv->delivery_tag;
        p->d.redelivered = dv->redelivered;
        p->d.queue = bytes_dup(dv->consumer_tag);
        p->d.routing_key = bytes_dup(dv->routing_key);
        rc = read_content(m, &p->d);
        if (rc != MQ_OK) {
            mq_delivery_free(&p->d);
            free(p);
            return rc;
        }
        enqueue_delivery(m, p);
        return MQ_OK;
    }
    case AMQP_BASIC_CANCEL_METHOD: {
        const amqp_basic_cancel_t *c = method->decoded;
        /* The broker cancelled our consumer (its queue was deleted):
         * nothing more will arrive here, so start over. */
        set_error(m, "consumer %.*s cancelled by broker", (int)c->consumer_tag.len,
                  (const char *)c->consumer_tag.bytes);
        m->channel_ok = 0;
        return MQ_ERR_CONNECTION;
    }
    case AMQP_CHANNEL_CLOSE_METHOD:
        on_channel_close(m, method->decoded);
        return MQ_ERR_CONNECTION;
    case AMQP_CONNECTION_CLOSE_METHOD:
        on_connection_close(m, method->decoded);
        return MQ_ERR_CONNECTION;
    default:
        return MQ_OK;
    }
}

/* ---- publishing ---- */

int mq_confirm_select(mq *m)
{
    int rc;
    if (!usable(m))
        return MQ_ERR_CONNECTION;
    amqp_maybe_release_buffers(m->conn);
    amqp_confirm_select(m->conn, MQ_CHANNEL);
    rc = rpc_check(m, "confirm.select");
    if (rc != MQ_OK)
        return rc;
    /* The broker numbers confirms from 1 after confirm.select. */
    m->confirm = 1;
    m->next_tag = 1;
    window_reset(m);
    return MQ_OK;
}

int mq_publish(mq *m, const struct mq_message *msg)
{
    amqp_basic_properties_t p;
    amqp_table_entry_t *entries = NULL;
    amqp_bytes_t body;
    int rc, result = MQ_OK;

    if (!usable(m))
        return MQ_ERR_CONNECTION;

    memset(&p, 0, sizeof(p));
    p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
    p.content_type = amqp_cstring_bytes("application/json");
    p.delivery_mode = AMQP_DELIVERY_PERSISTENT;
    if (msg->message_id) {
        p._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
        p.message_id = amqp_cstring_bytes(msg->message_id);
    }
    if (msg->type) {
        p._flags |= AMQP_BASIC_TYPE_FLAG;
        p.type = amqp_cstring_bytes(msg->type);
    }
    if (msg->app_id) {
        p._flags |= AMQP_BASIC_APP_ID_FLAG;
        p.app_id = amqp_cstring_bytes(msg->app_id);
    }
    if (msg->correlation_id) {
        p._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
        p.correlation_id = amqp_cstring_bytes(msg->correlation_id);
    }
    if (msg->timestamp_s > 0) {
        p._flags |= AMQP_BASIC_TIMESTAMP_FLAG;
        p.timestamp = (uint64_t)msg->timestamp_s;
    }
    if (msg->header_count > 0) {
        entries = xcalloc(msg->header_count, sizeof(*entries));
        for (size_t i = 0; i < msg->header_count; i++) {
            entries[i].key = amqp_cstring_bytes(msg->headers[i].key);
            entries[i].value.kind = AMQP_FIELD_KIND_UTF8;
            entries[i].value.value.bytes =
                amqp_cstring_bytes(msg->headers[i].value ? msg->headers[i].value : "");
        }
        p._flags |= AMQP_BASIC_HEADERS_FLAG;
        p.headers.num_entries = (int)msg->header_count;
        p.headers.entries = entries;
    }
    body.len = msg->body_len;
    body.bytes = (void *)msg->body;

    amqp_maybe_release_buffers(m->conn);
    rc = amqp_basic_publish(
        m->conn, MQ_CHANNEL, amqp_cstring_bytes(msg->exchange ? msg->exchange : ""),
        amqp_cstring_bytes(msg->routing_key ? msg->routing_key : ""), 1, 0, &p, body);
    if (rc != AMQP_STATUS_OK) {
        result = lost(m, "basic.publish", rc);
        goto out;
    }
    if (m->confirm)
        window_add(m);
out:
    free(entries);
    return result;
}

/* Reads one frame that arrives outside an RPC, by deadline_ns, and
 * handles it: the one read of the confirm waits and of mq_poll. Returns
 * MQ_TIMEOUT when none came (the caller says what that means), and drops
 * the connection on a socket error (what names the call in the error). */
static int pump_frame(mq *m, int64_t deadline_ns, const char *what)
{
    amqp_frame_t f;
    int rc;

    amqp_maybe_release_buffers(m->conn);
    rc = wait_frame(m, &f, deadline_ns);
    if (rc == AMQP_STATUS_TIMEOUT)
        return MQ_TIMEOUT;
    if (rc != AMQP_STATUS_OK)
        return lost(m, what, rc);
    return handle_frame(m, &f);
}

/* The one confirm-wait loop behind mq_wait_confirms and
 * mq_wait_confirmed: reads and handles frames until every tag up to tag is
 * settled. A window waiter (whole_window) waits out a rejected window too,
 * so the next window starts with a clean slate rather than with stray
 * confirms; a tag waiter returns MQ_ERR_REJECTED as soon as a tag up to
 * its own was rejected. caller names the public call in errors. */
static int wait_settled(mq *m, uint64_t tag, int whole_window, int timeout_ms, const char *caller)
{
    int64_t deadline = deadline_after_ms(timeout_ms < 0 ? 0 : timeout_ms);
    int rc;

    if (!usable(m))
        return MQ_ERR_CONNECTION;
    if (!m->confirm) {
        set_error(m, "%s without confirm mode", caller);
        return MQ_ERR_PROTOCOL;
    }
    if (whole_window)
        tag = m->next_tag - 1;
    for (;;) {
        if (!whole_window && m->win_rejected_from && m->win_rejected_from <= tag)
            return MQ_ERR_REJECTED;
        if (m->win_scan > tag)
            return MQ_OK;
        rc = pump_frame(m, deadline, "waiting for confirms");
        if (rc == MQ_TIMEOUT) {
            if (whole_window)
                set_error(m, "%zu publish confirms still outstanding", m->win_pending);
            else
                set_error(m, "publish confirms up to tag %llu still outstanding",
                          (unsigned long long)tag);
            return MQ_TIMEOUT;
        }
        if (rc != MQ_OK)
            return rc;
    }
}

int mq_wait_confirms(mq *m, int timeout_ms)
{
    int rc = wait_settled(m, 0, 1, timeout_ms, "mq_wait_confirms");

    if (rc != MQ_OK)
        return rc;
    rc = m->win_rejected_from ? MQ_ERR_REJECTED : MQ_OK;
    window_reset(m);
    return rc;
}

uint64_t mq_last_tag(const mq *m)
{
    return m->confirm ? m->next_tag - 1 : 0;
}

int mq_wait_confirmed(mq *m, uint64_t tag, int timeout_ms)
{
    return wait_settled(m, tag, 0, timeout_ms, "mq_wait_confirmed");
}

int mq_poll(mq *m)
{
    if (!usable(m))
        return MQ_ERR_CONNECTION;
    /* A zero timeout reads whatever is buffered; the library sends a
     * heartbeat when one is due and notices a silent broker. */
    for (;;) {
        int rc = pump_frame(m, util_monotonic_ns(), "poll");
        if (rc == MQ_TIMEOUT)
            return MQ_OK;
        if (rc != MQ_OK)
            return rc;
    }
}

/* ---- consuming ---- */

int mq_qos(mq *m, uint16_t prefetch)
{
    if (!usable(m))
        return MQ_ERR_CONNECTION;
    amqp_maybe_release_buffers(m->conn);
    amqp_basic_qos(m->conn, MQ_CHANNEL, 0, prefetch, 0);
    return rpc_check(m, "basic.qos");
}

int mq_consume(mq *m, const char *queue)
{
    if (!usable(m))
        return MQ_ERR_CONNECTION;
    amqp_maybe_release_buffers(m->conn);
    amqp_basic_consume(m->conn, MQ_CHANNEL, amqp_cstring_bytes(queue), amqp_cstring_bytes(queue), 0,
                       0, 0, amqp_empty_table);
    return rpc_check(m, "basic.consume");
}

static void fill_from_envelope(struct mq_delivery *d, const amqp_envelope_t *e)
{
    memset(d, 0, sizeof(*d));
    d->tag = e->delivery_tag;
    d->redelivered = e->redelivered;
    d->queue = bytes_dup(e->consumer_tag);
    d->routing_key = bytes_dup(e->routing_key);
    copy_properties(d, &e->message.properties);
    d->body_len = e->message.body.len;
    d->body = xmalloc(d->body_len + 1);
    if (d->body_len)
        memcpy(d->body, e->message.body.bytes, d->body_len);
    ((char *)d->body)[d->body_len] = '\0';
}

int mq_next_delivery(mq *m, int timeout_ms, struct mq_delivery *out)
{
    int64_t deadline = deadline_after_ms(timeout_ms < 0 ? 0 : timeout_ms);

    memset(out, 0, sizeof(*out));
    if (dequeue_delivery(m, out))
        return MQ_OK;
    if (!usable(m))
        return MQ_ERR_CONNECTION;

    for (;;) {
        amqp_envelope_t env;
        amqp_rpc_reply_t r;
        struct timeval tv = remaining_tv(deadline);
        amqp_frame_t f;
        int rc;

        amqp_maybe_release_buffers(m->conn);
        r = amqp_consume_message(m->conn, &env, &tv, 0);
        if (r.reply_type == AMQP_RESPONSE_NORMAL) {
            fill_from_envelope(out, &env);
            amqp_destroy_envelope(&env);
            return MQ_OK;
        }
        if (r.reply_type != AMQP_RESPONSE_LIBRARY_EXCEPTION)
            return lost(m, "consume", AMQP_STATUS_UNEXPECTED_STATE);
        if (r.library_error == AMQP_STATUS_TIMEOUT)
            return MQ_TIMEOUT;
        if (r.library_error != AMQP_STATUS_UNEXPECTED_STATE)
            return lost(m, "consume", r.library_error);

        /* Something other than a delivery (a confirm, a return, a close)
         * is waiting in the queue of frames: take it and carry on. */
        rc = wait_frame(m, &f, deadline_after_ms(MQ_CONTENT_TIMEOUT_MS));
        if (rc != AMQP_STATUS_OK)
            return lost(m, "consume", rc);
        rc = handle_frame(m, &f);
        if (rc != MQ_OK)
            return rc;
        if (dequeue_delivery(m, out))
            return MQ_OK;
        if (util_monotonic_ns() >= deadline)
            return MQ_TIMEOUT;
    }
}

void mq_delivery_free(struct mq_delivery *d)
{
    if (!d)
        return;
    free(d->queue);
    free(d->routing_key);
    free(d->message_id);
    free(d->type);
    free(d->body);
    free(d->correlation_id);
    free(d->app_id);
    free(d->content_type);
    free(d->traceparent);
    memset(d, 0, sizeof(*d));
}

int mq_ack(mq *m, uint64_t tag, int multiple)
{
    int rc;
    if (!usable(m))
        return MQ_ERR_CONNECTION;
    rc = amqp_basic_ack(m->conn, MQ_CHANNEL, tag, multiple != 0);
    if (rc != AMQP_STATUS_OK)
        return lost(m, "basic.ack", rc);
    return MQ_OK;
}

int mq_nack(mq *m, uint64_t tag, int multiple, int requeue)
{
    int rc;
    if (!usable(m))
        return MQ_ERR_CONNECTION;
    rc = amqp_basic_nack(m->conn, MQ_CHANNEL, tag, multiple != 0, requeue != 0);
    if (rc != AMQP_STATUS_OK)
        return lost(m, "basic.nack", rc);
    return MQ_OK;
}

/* ---- backoff ---- */

/* xorshift64, one state per thread: jitter needs no quality, only to
 * keep reconnecting clients from moving in lockstep. */
static uint64_t jitter_random(void)
{
    static _Thread_local uint64_t state;
    uint64_t x = state;
    if (x == 0)
        x = (uint64_t)util_monotonic_ns() ^ (uint64_t)(uintptr_t)&state ^ 0x9e3779b97f4a7c15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    state = x;
    return x;
}

int mq_backoff_ms(int attempt)
{
    int64_t delay = worker_backoff_ms(attempt, MQ_BACKOFF_BASE_MS, MQ_BACKOFF_MAX_MS);
    int64_t jitter_max;

    /* Jitter only shortens the delay, so the cap stays a cap. */
    jitter_max = delay * MQ_BACKOFF_JITTER_PCT / 100;
    delay -= (int64_t)(jitter_random() % (uint64_t)(jitter_max + 1));
    return (int)delay;
}
