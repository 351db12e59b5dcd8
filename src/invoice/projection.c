/*
 * The projection: user, account and order events into monthly invoices.
 * Each step commutes with the others, so events of different queues may
 * arrive in any order: an order for an unknown user makes an invoice
 * whose name and address are filled in by the user's events later (they
 * are joined at read time); the newest account by id wins whenever it
 * arrives; an order id becomes at most one line, ever; totals are sums of
 * integer cents.
 */
#include <stdio.h>
#include <string.h>

#include "event.h"
#include "inbox.h"
#include "invoice_service.h"
#include "jsonw.h"
#include "log.h"
#include "metrics.h"
#include "readwait.h"
#include "rebuild.h"
#include "timeutil.h"
#include "util.h"

static void bind_text(db_stmt *st, int index, const char *s)
{
    if (s)
        db_bind_text(st, index, s, strlen(s));
    else
        db_bind_null(st, index);
}

/* Runs a statement that returns no rows. */
static int run(db_stmt *st)
{
    int rc = db_step(st);
    db_stmt_reset(st);
    return rc == DB_DONE || rc == DB_ROW ? DB_OK : rc;
}

/* Where one model lives: the live tables, or the rebuild's shadow of
 * them (rebuild.h). The same statements write both, with the names
 * pasted in (never anything a client sent). */
struct projection_tables {
    const char *customers, *invoices, *lines;
};

static const struct projection_tables live_tables = {"customers", "invoices", "invoice_lines"};
static const struct projection_tables shadow_tables = {"rebuild_customers", "rebuild_invoices",
                                                       "rebuild_invoice_lines"};

/* The longest statement below with the longest table names pasted in. */
#define PROJECTION_SQL_MAX 640

/* name_event remembers which event gave the name, so that a rebuild
 * keeps a name given by an event no log holds (rebuild.c). replay: the
 * event comes from a writer's log during a rebuild, and yields to a name
 * that a delivery already gave the shadow (a later user.created, sent
 * straight to the queue, is then the one the live model shows too). */
static int apply_user(db *conn, const struct projection_tables *t, const struct event *ev,
                      int replay)
{
    char sql[PROJECTION_SQL_MAX];

    snprintf(sql, sizeof(sql),
             "INSERT INTO %s (user_id, name, email, name_event)"
             " VALUES ($1, $2, $3, $4) ON CONFLICT (user_id)"
             " DO UPDATE SET name = excluded.name, email = excluded.email,"
             " name_event = excluded.name_event%s%s%s",
             t->customers, replay ? " WHERE " : "", replay ? t->customers : "",
             replay ? ".name IS NULL" : "");
    db_stmt *st = db_prepare(conn, sql);
    if (!st)
        return DB_ERROR;
    db_bind_int64(st, 1, ev->u.user.id);
    bind_text(st, 2, ev->u.user.name);
    bind_text(st, 3, ev->u.user.email);
    bind_text(st, 4, ev->id[0] ? ev->id : NULL);
    return run(st);
}

static int apply_account(db *conn, const struct projection_tables *t, const struct event *ev)
{
    char sql[PROJECTION_SQL_MAX];

    snprintf(sql, sizeof(sql),
             "INSERT INTO %s (user_id, account_id, address1, address2, city, state, zip)"
             " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (user_id) DO UPDATE SET"
             " account_id = excluded.account_id, address1 = excluded.address1,"
             " address2 = excluded.address2, city = excluded.city, state = excluded.state,"
             " zip = excluded.zip"
             " WHERE %s.account_id IS NULL OR %s.account_id < excluded.account_id",
             t->customers, t->customers, t->customers);
    db_stmt *st = db_prepare(conn, sql);
    if (!st)
        return DB_ERROR;
    db_bind_int64(st, 1, ev->u.account.user_id);
    db_bind_int64(st, 2, ev->u.account.id);
    bind_text(st, 3, ev->u.account.address1);
    bind_text(st, 4, ev->u.account.address2);
    bind_text(st, 5, ev->u.account.city);
    bind_text(st, 6, ev->u.account.state);
    bind_text(st, 7, ev->u.account.zip);
    return run(st);
}

/* Returns 1 when the order is already on some invoice. */
static int order_known(db *conn, const struct projection_tables *t, int64_t order_id)
{
    char sql[PROJECTION_SQL_MAX];

    snprintf(sql, sizeof(sql), "SELECT 1 FROM %s WHERE order_id = $1", t->lines);
    db_stmt *st = db_prepare(conn, sql);
    if (!st)
        return DB_ERROR;
    db_bind_int64(st, 1, order_id);
    int rc = db_step(st);
    db_stmt_reset(st);
    return rc == DB_ROW ? 1 : rc == DB_DONE ? 0 : rc;
}

static int apply_order(db *conn, const struct projection_tables *t, const struct event *ev,
                       int *added)
{
    char sql[PROJECTION_SQL_MAX];
    int year, month, rc;
    int64_t now = util_now_ms(), invoice_id = 0;

    *added = 0;
    rc = order_known(conn, t, ev->u.order.id);
    if (rc != 0)
        return rc < 0 ? rc : DB_OK;

    timeutil_year_month(ev->u.order.created_at_ms, &year, &month);
    snprintf(sql, sizeof(sql),
             "INSERT INTO %s (user_id, year, month, updated_at)"
             " VALUES ($1, $2, $3, $4)"
             " ON CONFLICT (user_id, year, month) DO NOTHING",
             t->invoices);
    db_stmt *st = db_prepare(conn, sql);
    if (!st)
        return DB_ERROR;
    db_bind_int64(st, 1, ev->u.order.user_id);
    db_bind_int64(st, 2, year);
    db_bind_int64(st, 3, month);
    db_bind_int64(st, 4, now);
    if ((rc = run(st)) != DB_OK)
        return rc;

    snprintf(sql, sizeof(sql),
             "UPDATE %s SET total_cents = total_cents + $1,"
             " order_count = order_count + 1, updated_at = $2"
             " WHERE user_id = $3 AND year = $4 AND month = $5 RETURNING id",
             t->invoices);
    st = db_prepare(conn, sql);
    if (!st)
        return DB_ERROR;
    db_bind_int64(st, 1, ev->u.order.amount_cents);
    db_bind_int64(st, 2, now);
    db_bind_int64(st, 3, ev->u.order.user_id);
    db_bind_int64(st, 4, year);
    db_bind_int64(st, 5, month);
    rc = db_step(st);
    if (rc == DB_ROW)
        invoice_id = db_col_int64(st, 0);
    db_stmt_reset(st);
    if (rc != DB_ROW)
        return rc == DB_DONE ? DB_ERROR : rc;

    snprintf(sql, sizeof(sql),
             "INSERT INTO %s (order_id, invoice_id, description,"
             " amount_cents, purchased_at) VALUES ($1, $2, $3, $4, $5)",
             t->lines);
    st = db_prepare(conn, sql);
    if (!st)
        return DB_ERROR;
    db_bind_int64(st, 1, ev->u.order.id);
    db_bind_int64(st, 2, invoice_id);
    bind_text(st, 3, ev->u.order.description);
    db_bind_int64(st, 4, ev->u.order.amount_cents);
    db_bind_int64(st, 5, ev->u.order.created_at_ms);
    if ((rc = run(st)) != DB_OK)
        return rc;
    *added = 1;
    return DB_OK;
}

/* Applies ev to the model of t; *added is 0 when it changed nothing
 * (an order already on an invoice). DB_OK or a negative db_result. */
static int apply_event(db *conn, const struct projection_tables *t, const struct event *ev,
                       int replay, int *added)
{
    *added = 1;
    switch (ev->type) {
    case EVENT_USER_CREATED:
        return apply_user(conn, t, ev, replay);
    case EVENT_ACCOUNT_CREATED:
        return apply_account(conn, t, ev);
    case EVENT_ORDER_CREATED:
        return apply_order(conn, t, ev, added);
    }
    return DB_ERROR;
}

int projection_apply_shadow(db *conn, const struct event *ev, const char *source, int64_t seq,
                            int replay)
{
    int rc, added;

    /* An event without an id is applied without dedupe, as live. */
    if (ev->id[0]) {
        rc = inbox_record_into(conn, "rebuild_inbox", ev->id, ev->type_name, source, seq);
        if (rc <= 0)
            return rc; /* 0: the shadow has it already */
    }
    rc = apply_event(conn, &shadow_tables, ev, replay, &added);
    return rc < 0 ? rc : added;
}

#define METRIC_NOT_STREAMED "sse_events_not_streamed_total"

/* Remembers the event for the stream, as the JSON line docs/api.md
 * describes, until the batch commits. */
static void note_applied(struct invoice_live *live, const struct event *ev)
{
    struct jsonw w;

    if (!live || !live->hub)
        return;
    if (ev->id[0] && strcmp(ev->id, live->last_id) == 0)
        return; /* the same delivery applied again in a savepoint */
    if (live->pending_count == LIVE_PENDING_MAX) {
        metrics_counter_add(METRIC_NOT_STREAMED, NULL, 1);
        return;
    }
    jsonw_init(&w);
    jsonw_object_begin(&w);
    jsonw_key(&w, "type");
    jsonw_string(&w, ev->type_name);
    jsonw_key(&w, "event_id");
    jsonw_string(&w, ev->id);
    switch (ev->type) {
    case EVENT_USER_CREATED:
        jsonw_key(&w, "user_id");
        jsonw_int(&w, ev->u.user.id);
        break;
    case EVENT_ACCOUNT_CREATED:
        jsonw_key(&w, "account_id");
        jsonw_int(&w, ev->u.account.id);
        jsonw_key(&w, "user_id");
        jsonw_int(&w, ev->u.account.user_id);
        break;
    case EVENT_ORDER_CREATED:
        jsonw_key(&w, "order_id");
        jsonw_int(&w, ev->u.order.id);
        jsonw_key(&w, "user_id");
        jsonw_int(&w, ev->u.order.user_id);
        jsonw_key(&w, "amount");
        jsonw_money(&w, ev->u.order.amount_cents);
        break;
    }
    jsonw_key(&w, "applied_at");
    jsonw_time(&w, util_now_ms());
    jsonw_object_end(&w);
    if (!live->pending)
        live->pending = xcalloc(LIVE_PENDING_MAX, sizeof(*live->pending));
    live->pending[live->pending_count++] = jsonw_steal(&w, NULL);
    jsonw_free(&w);
    util_strlcpy(live->last_id, ev->id, sizeof(live->last_id));
}

int projection_apply(db *conn, const struct mq_delivery *d, struct consumer_result *res, void *ctx)
{
    struct invoice_live *live = ctx;
    readwait *waits = live ? live->readwait : NULL;
    struct event ev;
    int rc, added = 1;
    const char *source;

    if (event_decode(d->body, d->body_len, d->message_id, util_now_ms(), &ev, res->reason,
                     sizeof(res->reason)) != 0) {
        event_free(&ev);
        return CONSUMER_POISON;
    }
    util_strlcpy(res->type, ev.type_name, sizeof(res->type));
    res->occurred_at_ms = ev.occurred_at_ms;
    util_strlcpy(res->key, ev.id, sizeof(res->key)); /* "" lets the consumer pick one */

    /* An event with neither a body id nor a message_id is applied
     * without dedupe (the order line is still unique by order id). */
    /* A writer's relay tells the event's outbox seq; with the envelope's
     * source it is what consistency tokens name. */
    source = json_string_value(json_object_get(ev.doc, "source"));
    /* While a rebuild runs, every delivery goes to its shadow model too
     * (docs/rebuild.md), as projection_begin found for this batch. */
    if (live && live->rebuilding) {
        rc = projection_apply_shadow(conn, &ev, source, d->outbox_seq, 0);
        if (rc < 0)
            goto out;
    }
    if (ev.id[0]) {
        rc = inbox_record_at(conn, ev.id, ev.type_name, source, d->outbox_seq);
        if (rc == 0) {
            /* Applied before, maybe by a rebuild that read it from its
             * writer's log without its seq: the seq is noted now, so
             * that the tokens naming it are satisfied. */
            rc = inbox_note_position(conn, ev.id, source, d->outbox_seq);
            if (rc > 0)
                readwait_note(waits, source, d->outbox_seq);
            event_free(&ev);
            return rc < 0 ? rc : CONSUMER_DUPLICATE;
        }
        if (rc < 0)
            goto out;
        readwait_note(waits, source, d->outbox_seq);
    }
    rc = apply_event(conn, &live_tables, &ev, 0, &added);
out:
    if (rc >= 0 && added)
        note_applied(live, &ev);
    event_free(&ev);
    if (rc < 0)
        return rc;
    return added ? CONSUMER_APPLIED : CONSUMER_DUPLICATE;
}

int projection_begin(db *conn, void *ctx)
{
    struct invoice_live *live = ctx;

    /* First in the transaction, before any write: on PostgreSQL it locks
     * the rebuild's row FOR SHARE until the commit, so the swap (which
     * takes that row first, then the live tables) waits for this batch,
     * and a batch that begins during the swap waits here, then finds the
     * rebuild done. Every delivery of the batch was received before this
     * check: if it finds no rebuild, they were all in their logs before
     * the rebuild began, and its replay reads them. */
    int rc = rebuild_running(conn);
    if (rc < 0)
        return rc;
    live->rebuilding = rc;
    return DB_OK;
}

void projection_committed(void *ctx)
{
    struct invoice_live *live = ctx;

    readwait_committed(live->readwait);
    for (size_t i = 0; i < live->pending_count; i++) {
        sse_publish(live->hub, live->pending[i], strlen(live->pending[i]));
        free(live->pending[i]);
    }
    live->pending_count = 0;
    live->last_id[0] = '\0';
}

void stream_handle(http_request *req, void *app)
{
    const stream_handle_data *live = http_route_data(req);
    (void)app;
    sse_hub_handle(req, live->hub);
}
