/*
 * event: decoding one message of the user, account and order queues into
 * a checked event (docs/api.md "Events on RabbitMQ"). The body must be a JSON
 * object with "type" and "data"; "id" falls back to the AMQP message_id;
 * "data" follows the same rules as HTTP input. Anything else is a reason
 * to dead-letter the message, written into the caller's buffer.
 */
#ifndef INVOICE_EVENT_H
#define INVOICE_EVENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define EVENT_ID_MAX 200

enum event_type { EVENT_USER_CREATED, EVENT_ACCOUNT_CREATED, EVENT_ORDER_CREATED };

struct event {
    enum event_type type;
    const char *type_name;
    char id[EVENT_ID_MAX + 1]; /* "" when neither body nor message_id has one */
    int64_t occurred_at_ms;    /* 0 when absent */
    union {
        struct {
            int64_t id;
            const char *name, *email;
        } user;
        struct {
            int64_t id, user_id;
            const char *address1, *address2, *city, *state, *zip;
            const char *status; /* checked, not projected; NULL when absent */
        } account;
        struct {
            int64_t id, user_id, amount_cents, created_at_ms;
            const char *description;
        } order;
    } u;
    json_t *doc; /* owns the strings above */
};

/* Returns 0 and fills ev (release with event_free), or -1 with reason.
 * message_id may be NULL. now_ms is the fallback time of an order. */
int event_decode(const void *body, size_t len, const char *message_id, int64_t now_ms,
                 struct event *ev, char *reason, size_t reason_size);
void event_free(struct event *ev);

#endif
