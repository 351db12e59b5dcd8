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
#include "log.h"
#include "readwait.h"
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

static int apply_user(db *conn, const struct event *ev)
{
    db_stmt *st = db_prepare(conn, "INSERT INTO customers (user_id, name, email)"
                                   " VALUES ($1, $2, $3) ON CONFLICT (user_id)"
                                   " DO UPDATE SET name = excluded.name, email = excluded.email");
    if (!st)
        return DB_ERROR;
    db_bind_int64(st, 1, ev->u.user.id);
    bind_text(st, 2, ev->u.user.name);
    bind_text(st, 3, ev->u.user.email);
    return run(st);
}

static int apply_account(db *conn, const struct event *ev)
{
    db_stmt *st = db_prepare(
        conn, "INSERT INTO customers (user_id, account_id, address1, address2, city, state, zip)"
              " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (user_id) DO UPDATE SET"
              " account_id = excluded.account_id, address1 = excluded.address1,"
              " address2 = excluded.address2, city = excluded.city, state = excluded.state,"
              " zip = excluded.zip"
              " WHERE customers.account_id IS NULL OR customers.account_id < excluded.account_id");
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
static int order_known(db *conn, int64_t order_id)
{
    db_stmt *st = db_prepare(conn, "SELECT 1 FROM invoice_lines WHERE order_id = $1");
    if (!st)
        return DB_ERROR;
    db_bind_int64(st, 1, order_id);
    int rc = db_step(st);
    db_stmt_reset(st);
    return rc == DB_ROW ? 1 : rc == DB_DONE ? 0 : rc;
}

static int apply_order(db *conn, const struct event *ev, int *added)
{
    int year, month, rc;
    int64_t now = util_now_ms(), invoice_id = 0;

    *added = 0;
    rc = order_known(conn, ev->u.order.id);
    if (rc != 0)
        return rc < 0 ? rc : DB_OK;

    timeutil_year_month(ev->u.order.created_at_ms, &year, &month);
    db_stmt *st = db_prepare(conn, "INSERT INTO invoices (user_id, year, month, updated_at)"
                                   " VALUES ($1, $2, $3, $4)"
                                   " ON CONFLICT (user_id, year, month) DO NOTHING");
    if (!st)
        return DB_ERROR;
    db_bind_int64(st, 1, ev->u.order.user_id);
    db_bind_int64(st, 2, year);
    db_bind_int64(st, 3, month);
    db_bind_int64(st, 4, now);
    if ((rc = run(st)) != DB_OK)
        return rc;

    st = db_prepare(conn, "UPDATE invoices SET total_cents = total_cents + $1,"
                          " order_count = order_count + 1, updated_at = $2"
                          " WHERE user_id = $3 AND year = $4 AND month = $5 RETURNING id");
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

    st = db_prepare(conn, "INSERT INTO invoice_lines (order_id, invoice_id, description,"
                          " amount_cents, purchased_at) VALUES ($1, $2, $3, $4, $5)");
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

int projection_apply(db *conn, const struct mq_delivery *d, struct consumer_result *res,
                     void *ctx)
{
    readwait *waits = ctx;
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
    if (ev.id[0]) {
        rc = inbox_record_at(conn, ev.id, ev.type_name, source, d->outbox_seq);
        if (rc == 0) {
            event_free(&ev);
            return CONSUMER_DUPLICATE;
        }
        if (rc < 0)
            goto out;
        readwait_note(waits, source, d->outbox_seq);
    }
    switch (ev.type) {
    case EVENT_USER_CREATED:
        rc = apply_user(conn, &ev);
        break;
    case EVENT_ACCOUNT_CREATED:
        rc = apply_account(conn, &ev);
        break;
    case EVENT_ORDER_CREATED:
        rc = apply_order(conn, &ev, &added);
        break;
    default:
        rc = DB_ERROR;
    }
out:
    event_free(&ev);
    if (rc < 0)
        return rc;
    return added ? CONSUMER_APPLIED : CONSUMER_DUPLICATE;
}

void projection_committed(void *ctx)
{
    readwait_committed(ctx);
}
